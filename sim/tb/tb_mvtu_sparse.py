"""cocotb tests of hw/rtl/mvtu_sparse.v. Case file (TB_CASE): see
tests/hw/test_mvtu_sparse.py (PE, NF, SF, OB, period, latency, scenarios,
throughput)."""

from __future__ import annotations

import cocotb

from .common import check_beats, load_case, run_stream, start
from .tb_mvtu import _fmt


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    """Every scenario's output equals the reference, whatever the handshake pattern."""
    case = load_case()
    await start(dut)
    # scenarios run back to back without reset: frames and banks must chain
    for sc in case["scenarios"]:
        log = await run_stream(dut, sc["in_beats"], len(sc["expected"]),
                               p_gap=sc["p_gap"], p_stall=sc["p_stall"], seed=sc["seed"],
                               max_cycles=sc.get("max_cycles"))
        check_beats(log.out, sc["expected"], f"scenario {sc['name']}", _fmt(case))


@cocotb.test()
async def throughput(dut):
    """Without gaps or backpressure a frame takes exactly max(SF, STEPS) cycles."""
    case = load_case()
    sc = case["throughput"]
    await start(dut)
    log = await run_stream(dut, sc["in_beats"], len(sc["expected"]), seed=sc["seed"])
    check_beats(log.out, sc["expected"], "throughput scenario", _fmt(case))
    nf, sf, period = case["NF"], case["SF"], case["period"]
    frames = len(sc["expected"]) // nf
    # output beat n of frame f+1 follows beat n of frame f by exactly one period
    deltas = [log.out_cycles[k + nf] - log.out_cycles[k] for k in range(len(log.out_cycles) - nf)]
    # frame starts: the first two frames fill both banks back to back, after
    # that a bank frees up once per period
    starts = [log.in_cycles[k * sf] for k in range(frames)]
    gaps = [b - a for a, b in zip(starts[1:], starts[2:])]
    latency = log.out_cycles[0] - log.in_cycles[sf - 1]
    dut._log.info("cycles/frame %s (SF=%d, STEPS=%d -> max %d; dense NF*SF=%d), "
                  "frame-start gaps %s, latency %d, %d cycles for %d frames",
                  sorted(set(deltas)), sf, case["steps"], period, nf * sf,
                  sorted(set(gaps)), latency, log.cycles, frames)
    assert deltas and all(d == period for d in deltas), \
        f"cycles between frames {sorted(set(deltas))}, expected {period}"
    assert all(g == period for g in gaps), f"frame-start gaps {sorted(set(gaps))}, expected {period}"
    assert latency == case["latency"], f"latency {latency}, expected {case['latency']}"
