"""cocotb tests shared by the plain stream modules (stream_fifo, stream_dwc,
label_select): expected beats come from the numpy reference via TB_CASE.

Case keys: scenarios (list of {name, in_beats, expected, p_gap, p_stall,
seed}) run back to back without reset; full_rate (one such scenario without
gaps or stalls) plus its rate checks: "in_every_cycle" / "out_every_cycle"
require the respective side to move a beat every cycle between its first and
last beat, "in_never_stalled" that in_ready is never low while in_valid is high.
"""

from __future__ import annotations

import cocotb

from .common import check_beats, load_case, run_stream, start


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    case = load_case()
    await start(dut)
    for sc in case["scenarios"]:
        log = await run_stream(dut, sc["in_beats"], len(sc["expected"]),
                               p_gap=sc["p_gap"], p_stall=sc["p_stall"], seed=sc["seed"])
        check_beats(log.out, sc["expected"], f"scenario {sc['name']}")


@cocotb.test()
async def full_rate(dut):
    case = load_case()
    sc = case["full_rate"]
    await start(dut)
    log = await run_stream(dut, sc["in_beats"], len(sc["expected"]), seed=sc["seed"])
    check_beats(log.out, sc["expected"], "full-rate scenario")
    checks = case.get("rate_checks", [])

    def consecutive(cycles, what):
        gaps = sorted({b - a for a, b in zip(cycles, cycles[1:])})
        assert gaps == [1], f"{what}: cycles between beats {gaps}, expected only 1"

    if "in_every_cycle" in checks:
        consecutive(log.in_cycles, "input")
    if "out_every_cycle" in checks:
        consecutive(log.out_cycles, "output")
    if "in_never_stalled" in checks:
        assert log.in_stalls_while_valid == 0, \
            f"in_ready low in {log.in_stalls_while_valid} cycles with in_valid high"
    dut._log.info("%d beats in, %d out, %d cycles", len(log.in_cycles), len(log.out), log.cycles)
