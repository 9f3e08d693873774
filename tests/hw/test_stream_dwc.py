"""stream_dwc: LSB-first re-slicing (numpy reference) for integer and
non-integer ratios; the narrower side runs at one beat per cycle."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from bnnforge.sim.reference import reslice
from bnnforge.sim.runner import rtl_sources
from bnnforge.sim.tb.cases import run_case, scenario

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("in_w,out_w", [(16, 6), (6, 16), (32, 8), (1, 10), (12, 12)])
def test_stream_dwc(in_w, out_w, tmp_path):
    rng = np.random.default_rng(zlib.crc32(f"dwc{in_w}_{out_w}".encode()))
    # streams are whole "frames": a multiple of both widths
    frame_in_beats = math.lcm(in_w, out_w) // in_w

    def beats(min_beats):
        n = frame_in_beats * max(1, -(-min_beats // frame_in_beats))
        return [int(sum(int(b) << k for k, b in enumerate(rng.integers(0, 2, size=in_w))))
                for _ in range(n)]

    b = [beats(300), beats(150), beats(150), beats(300)]
    case = {
        "scenarios": [
            scenario("random", b[0], reslice(b[0], in_w, out_w), 0.3, 0.3, 1),
            scenario("backpressure", b[1], reslice(b[1], in_w, out_w), 0.0, 0.8, 2),
            scenario("sparse_input", b[2], reslice(b[2], in_w, out_w), 0.8, 0.0, 3),
        ],
        "full_rate": scenario("full_rate", b[3], reslice(b[3], in_w, out_w)),
        "rate_checks": (["out_every_cycle"] if out_w <= in_w else []) +
                       (["in_every_cycle"] if in_w <= out_w else []),
    }
    run_case(rtl_sources("stream_dwc"), "stream_dwc", "bnnforge.sim.tb.tb_streams",
             {"IN_WIDTH": in_w, "OUT_WIDTH": out_w}, tmp_path, case)
