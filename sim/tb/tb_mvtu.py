"""cocotb tests of hw/rtl/mvtu.v. Case file (TB_CASE): see tests/hw/test_mvtu.py."""

from __future__ import annotations

import cocotb

from .common import check_beats, load_case, run_stream, start


def _fmt(case):
    pe, ob = case["PE"], case["OB"]

    def f(k, g, e):
        mask = (1 << ob) - 1
        bad = [p for p in range(pe) if ((g >> (p * ob)) & mask) != ((e >> (p * ob)) & mask)]
        nf = case["NF"]
        return f"frame {k // nf}, nf {k % nf}, wrong PEs {bad}"

    return f


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    """Every scenario's output equals the reference, whatever the handshake pattern."""
    case = load_case()
    await start(dut)
    # scenarios run back to back without reset: frames must chain correctly
    for sc in case["scenarios"]:
        log = await run_stream(dut, sc["in_beats"], len(sc["expected"]),
                               p_gap=sc["p_gap"], p_stall=sc["p_stall"], seed=sc["seed"])
        check_beats(log.out, sc["expected"], f"scenario {sc['name']}", _fmt(case))


@cocotb.test()
async def throughput(dut):
    """Without gaps or backpressure a frame takes exactly NF*SF cycles."""
    case = load_case()
    sc = case["throughput"]
    await start(dut)
    log = await run_stream(dut, sc["in_beats"], len(sc["expected"]), seed=sc["seed"])
    check_beats(log.out, sc["expected"], "throughput scenario", _fmt(case))
    nf, sf = case["NF"], case["SF"]
    per_frame = nf * sf
    frames = len(sc["expected"]) // nf
    # output beat n of frame f+1 follows beat n of frame f by exactly NF*SF cycles
    deltas = [log.out_cycles[k + nf] - log.out_cycles[k] for k in range(len(log.out_cycles) - nf)]
    assert deltas and all(d == per_frame for d in deltas), \
        f"cycles between frames {sorted(set(deltas))}, expected {per_frame}"
    # input beats of a frame are accepted back to back, once per NF*SF cycles
    starts = [log.in_cycles[k * sf] for k in range(frames)]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(g == per_frame for g in gaps), f"frame starts {gaps}, expected {per_frame}"
    # the first result of a frame follows the acceptance of its last nf == 0
    # input beat by the pipeline latency, in the no-stall case
    latency = log.out_cycles[0] - log.in_cycles[sf - 1]
    dut._log.info("cycles/frame %d (NF*SF=%d), %d cycles for %d frames, latency %d",
                  deltas[0], per_frame, log.cycles, frames, latency)
    assert latency == case["latency"], f"latency {latency}, expected {case['latency']}"
