"""maxpool_bin against the numpy pooling (sim/reference_conv.py): several
back-to-back frames under random gaps and backpressure, and one input beat per
cycle (never stalled) with an always-ready output. The plain stream
testbench sim/tb/tb_streams.py drives it."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bnnforge.sim.reference import frames_to_beats
from bnnforge.sim.reference_conv import maxpool_channels_last
from bnnforge.sim.runner import rtl_sources
from bnnforge.sim.tb.cases import run_case, scenario

pytestmark = pytest.mark.rtl

# (IFM_DIM, C, P, SIMD, EB)
CONFIGS = [
    (4, 4, 2, 2, 1),       # basic 2x2, SF=2
    (6, 3, 3, 1, 8),       # P=3, SIMD=1, unsigned int8
    (4, 8, 2, 8, 1),       # whole pixel per beat
    (2, 1, 2, 1, 1),       # one window per frame, C=1
    (6, 6, 2, 3, 4),       # 4-bit elements, SF=2
    (3, 2, 1, 2, 1),       # P=1: identity
    (10, 32, 2, 16, 1),    # CNV pool2 shape in miniature (10 -> 5)
]

SLOW_CONFIGS = [
    (28, 64, 2, 16, 1),    # CNV pool1: 28 -> 14
    (10, 128, 2, 32, 1),   # CNV pool2: 10 -> 5
    (12, 5, 4, 1, 2),      # P=4, SIMD=1
]


def _id(c):
    ifm, ch, p, simd, eb = c
    return f"I{ifm}_C{ch}_P{p}_S{simd}_eb{eb}"


def _run(cfg, tmp_path):
    ifm, ch, p, simd, eb = cfg
    rng = np.random.default_rng(zlib.crc32(_id(cfg).encode()))
    hi = (1 << eb) - 1
    per_frame = ifm * ifm * ch // simd

    def sc(name, budget, p_gap, p_stall, seed):
        n = int(max(2, min(10, budget // per_frame)))
        # sparse ones (EB=1) / small values make the max depend on every element
        x = rng.integers(0, hi + 1, size=(n, ifm, ifm, ch))
        if eb == 1:
            x &= rng.integers(0, 2, size=x.shape)   # mostly zeros: OR is not trivially 1
        x[0] = 0
        x[1] = hi
        y = maxpool_channels_last(x, p)
        return scenario(name, frames_to_beats(x.reshape(n, -1), simd, eb),
                        frames_to_beats(y.reshape(n, -1), simd, eb), p_gap, p_stall, seed)

    case = {
        "scenarios": [
            sc("random", 800, 0.3, 0.3, 1),
            sc("backpressure", 300, 0.0, 0.85, 2),
            sc("sparse_input", 300, 0.7, 0.0, 3),
        ],
        "full_rate": sc("full_rate", 800, 0.0, 0.0, 4),
        "rate_checks": ["in_every_cycle", "in_never_stalled"],
    }
    run_case(rtl_sources("maxpool_bin"), "maxpool_bin", "bnnforge.sim.tb.tb_streams",
             {"IFM_DIM": ifm, "C": ch, "P": p, "SIMD": simd, "EB": eb}, tmp_path, case)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_maxpool(cfg, tmp_path):
    _run(cfg, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", SLOW_CONFIGS, ids=[_id(c) for c in SLOW_CONFIGS])
def test_maxpool_slow(cfg, tmp_path):
    _run(cfg, tmp_path)
