"""stream_skid: order preserved under random gaps/backpressure; full rate both ways."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bnnforge.sim.runner import rtl_sources
from bnnforge.sim.tb.cases import run_case, scenario

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("width", [1, 8, 45])
def test_stream_skid(width, tmp_path):
    rng = np.random.default_rng(zlib.crc32(f"skid{width}".encode()))

    def beats(n):
        return [int(v) for v in rng.integers(0, 1 << min(width, 62), size=n)]

    # a register slice's reference is the identity
    b1, b2, b3, b4 = beats(400), beats(200), beats(200), beats(300)
    case = {
        "scenarios": [
            scenario("random", b1, b1, 0.3, 0.3, 1),
            scenario("backpressure", b2, b2, 0.0, 0.8, 2),
            scenario("sparse_input", b3, b3, 0.8, 0.0, 3),
            scenario("alternating", b4[:100], b4[:100], 0.5, 0.5, 5),
        ],
        "full_rate": scenario("full_rate", b4, b4),
        "rate_checks": ["in_every_cycle", "out_every_cycle", "in_never_stalled"],
    }
    run_case(rtl_sources("stream_skid"), "stream_skid", "bnnforge.sim.tb.tb_streams",
             {"WIDTH": width}, tmp_path, case)
