"""label_select: argmax per frame (lowest index on ties) against numpy; the
input is never throttled while the output is ready."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bnnforge.sim.reference import frames_to_beats, label_select
from bnnforge.sim.runner import rtl_sources
from bnnforge.sim.tb.cases import run_case, scenario

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("pe,nf,acc_bits,index_bits", [
    (2, 5, 8, 4),     # 10 classes
    (1, 10, 6, 4),    # PE=1
    (10, 1, 12, 4),   # whole frame in one beat, NF=1
    (3, 4, 5, 8),     # non-power-of-2 PE, narrow values (many ties)
])
def test_label_select(pe, nf, acc_bits, index_bits, tmp_path):
    rng = np.random.default_rng(zlib.crc32(f"ls{pe}_{nf}_{acc_bits}".encode()))
    n = pe * nf
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1

    def frames(count):
        v = rng.integers(lo, hi + 1, size=(count, n))
        # ties: copies of the max at a later index, whole-frame equal, range ends
        for f in range(0, count, 4):
            v[f, rng.integers(0, n, size=2)] = hi
        v[1::7, :] = rng.integers(lo, hi + 1)
        v[2::9, :] = lo
        small = rng.integers(-2, 3, size=(count // 3, n))  # crowded values -> ties
        v[: count // 3] = small
        return v

    fs = [frames(max(6, 300 // nf)), frames(max(4, 100 // nf)), frames(max(4, 100 // nf)),
          frames(max(6, 200 // nf))]

    def sc(name, v, p_gap, p_stall, seed):
        return scenario(name, frames_to_beats(v, pe, acc_bits), label_select(v), p_gap, p_stall, seed)

    case = {
        "scenarios": [
            sc("random", fs[0], 0.3, 0.3, 1),
            sc("backpressure", fs[1], 0.0, 0.85, 2),
            sc("sparse_input", fs[2], 0.7, 0.0, 3),
        ],
        "full_rate": sc("full_rate", fs[3], 0.0, 0.0, 4),
        "rate_checks": ["in_every_cycle", "in_never_stalled"],
    }
    run_case(rtl_sources("label_select", "stream_fifo", "credit_queue"), "label_select", "bnnforge.sim.tb.tb_streams",
             {"PE": pe, "NF": nf, "ACC_BITS": acc_bits, "INDEX_BITS": index_bits}, tmp_path, case)
