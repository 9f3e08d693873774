"""popcount_compressor (6:3 counters + adder tree) against Python's bit count,
over widths around the counter group size and the tree's power-of-two steps,
with and without pipelining, under a random clock enable."""

from __future__ import annotations

import json

import pytest

from bnnforge.sim.runner import rtl_sources, run_test

pytestmark = pytest.mark.rtl


def popcount_latency(n: int, pipe_every: int) -> int:
    """Enabled edges from in_data to out_data (hw/rtl/popcount_compressor.v)."""
    if pipe_every == 0:
        return 0
    levels = max(0, ((n + 5) // 6 - 1).bit_length())
    return 1 + (max(0, levels - 1) // pipe_every)


# (N, PIPE_EVERY): widths below, at and past one counter group; odd group
# counts; the SIMD widths of TFC/LFC/CNV layers; a 1024-bit popcount
SETS = [(1, 0), (5, 1), (6, 2), (7, 0), (13, 1), (37, 3), (49, 2), (64, 1), (300, 2), (1024, 1)]


@pytest.mark.parametrize("n,pipe_every", SETS, ids=[f"N{n}_k{k}" for n, k in SETS])
def test_popcount_compressor(n, pipe_every, tmp_path):
    case = {"N": n, "LATENCY": popcount_latency(n, pipe_every), "cycles": 400, "seed": n * 7 + pipe_every}
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case))
    res = run_test(rtl_sources("popcount_compressor", "adder_tree"), "popcount_compressor",
                   "bnnforge.sim.tb.tb_popcount", parameters={"N": n, "PIPE_EVERY": pipe_every},
                   workdir=tmp_path, extra_env={"TB_CASE": str(path)})
    assert len(res.tests) == 2 and not res.failed


def test_off_by_one_latency_is_detected(tmp_path):
    """The check above can fail: one edge off, the simulation reports a mismatch."""
    n, k = 49, 2
    case = {"N": n, "LATENCY": popcount_latency(n, k) + 1, "cycles": 200, "seed": 1}
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case))
    res = run_test(rtl_sources("popcount_compressor", "adder_tree"), "popcount_compressor",
                   "bnnforge.sim.tb.tb_popcount", parameters={"N": n, "PIPE_EVERY": k},
                   workdir=tmp_path, extra_env={"TB_CASE": str(path)}, raise_on_failure=False)
    assert res.failed
