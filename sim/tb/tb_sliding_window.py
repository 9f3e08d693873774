"""cocotb tests of hw/rtl/sliding_window.v. Case file (TB_CASE): see
tests/hw/test_sliding_window.py.

Case keys: scenarios (list of {name, in_beats, expected, p_gap, p_stall,
seed}, run back to back without reset), throughput (one scenario without gaps
or stalls), out_per_frame / in_per_frame (beats), bound_per_frame (steady-state
cycles allowed per frame), bound_first (cycles allowed until the first frame's
last beat). The throughput test writes its figures to throughput.json in the
working directory.
"""

from __future__ import annotations

import json

import cocotb

from .common import check_beats, load_case, run_stream, start


def _fmt(case):
    per = case["out_per_frame"]
    win = case["beats_per_window"]

    def f(k, g, e):
        return f"frame {k // per}, output pixel {(k % per) // win}, beat {k % win} of the window"

    return f


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    """Every scenario's windows equal the numpy im2col, whatever the handshakes."""
    case = load_case()
    await start(dut)
    for sc in case["scenarios"]:
        log = await run_stream(dut, sc["in_beats"], len(sc["expected"]),
                               p_gap=sc["p_gap"], p_stall=sc["p_stall"], seed=sc["seed"])
        check_beats(log.out, sc["expected"], f"scenario {sc['name']}", _fmt(case))


@cocotb.test()
async def throughput(dut):
    """Always-valid input, always-ready output: cycles per frame in steady state."""
    case = load_case()
    sc = case["throughput"]
    await start(dut)
    log = await run_stream(dut, sc["in_beats"], len(sc["expected"]), seed=sc["seed"])
    check_beats(log.out, sc["expected"], "throughput scenario", _fmt(case))
    per = case["out_per_frame"]
    frames = len(sc["expected"]) // per
    # cycle of each frame's last output beat
    ends = [log.out_cycles[(f + 1) * per - 1] for f in range(frames)]
    deltas = [b - a for a, b in zip(ends, ends[1:])]
    steady = max(deltas) if deltas else None
    first = ends[0] + 1
    fill = log.out_cycles[0]
    info = {"frames": frames, "first_frame_cycles": first, "first_beat_cycle": fill,
            "steady_cycles_per_frame": steady, "deltas": sorted(set(deltas)),
            "out_beats_per_frame": per, "in_beats_per_frame": case["in_per_frame"],
            "bound_per_frame": case["bound_per_frame"], "total_cycles": log.cycles}
    with open("throughput.json", "w") as fh:
        json.dump(info, fh)
    dut._log.info("sliding_window throughput: %s", info)
    assert first <= case["bound_first"], \
        f"first frame took {first} cycles, allowed {case['bound_first']}"
    if steady is not None:
        assert steady <= case["bound_per_frame"], \
            f"steady state {steady} cycles/frame, allowed {case['bound_per_frame']}"
