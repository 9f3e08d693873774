"""stream_fifo: order preserved under random gaps/backpressure; full rate."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bnnforge.sim.runner import rtl_sources
from bnnforge.sim.tb.cases import run_case, scenario

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("width,depth", [(8, 2), (33, 5), (1, 16)])
def test_stream_fifo(width, depth, tmp_path):
    rng = np.random.default_rng(zlib.crc32(f"fifo{width}_{depth}".encode()))

    def beats(n):
        return [int(v) for v in rng.integers(0, 1 << min(width, 62), size=n)]

    # a FIFO's reference is the identity
    b1, b2, b3, b4 = beats(400), beats(200), beats(200), beats(300)
    case = {
        "scenarios": [
            scenario("random", b1, b1, 0.3, 0.3, 1),
            scenario("fill_up", b2, b2, 0.0, 0.8, 2),
            scenario("drain", b3, b3, 0.8, 0.0, 3),
        ],
        "full_rate": scenario("full_rate", b4, b4),
        "rate_checks": ["in_every_cycle", "out_every_cycle"],
    }
    run_case(rtl_sources("stream_fifo"), "stream_fifo", "bnnforge.sim.tb.tb_streams",
             {"WIDTH": width, "DEPTH": depth}, tmp_path, case)
