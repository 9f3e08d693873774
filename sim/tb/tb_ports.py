"""cocotb tests for the modules with several streams (stream_fork, stream_add):
expected beats per output come from the Python reference via TB_CASE.

Case keys: inputs / outputs (lists of {prefix, width, index}); scenarios (list
of {name, in_beats: per input, expected: per output, p_gap: per input,
p_stall: per output, seed}) run back to back without reset; full_rate (one
scenario, no gaps or stalls) with rate_checks: "in_every_cycle" /
"out_every_cycle" require every input / output to move a beat every cycle
between its first and last beat.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from .common import check_beats, load_case
from .ports import Port, reset_ports, run_ports


async def _start(dut, inputs, outputs):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst_n.value = 0
    await reset_ports(dut, inputs, outputs)
    await ClockCycles(dut.clk, 3)
    dut.rst_n.value = 1
    await RisingEdge(dut.clk)


def _ports(case):
    return ([Port.from_dict(p) for p in case["inputs"]],
            [Port.from_dict(p) for p in case["outputs"]])


async def _run(dut, inputs, outputs, sc):
    log = await run_ports(dut, inputs, outputs, sc["in_beats"], [len(e) for e in sc["expected"]],
                          sc["p_gap"], sc["p_stall"], seed=sc["seed"])
    for o, port in enumerate(outputs):
        check_beats(log.out[o], sc["expected"][o],
                    f"scenario {sc['name']} output {port.prefix}[{port.index}]")
    return log


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    case = load_case()
    inputs, outputs = _ports(case)
    await _start(dut, inputs, outputs)
    for sc in case["scenarios"]:
        await _run(dut, inputs, outputs, sc)


@cocotb.test()
async def full_rate(dut):
    case = load_case()
    inputs, outputs = _ports(case)
    await _start(dut, inputs, outputs)
    log = await _run(dut, inputs, outputs, case["full_rate"])

    def consecutive(cycles, what):
        gaps = sorted({b - a for a, b in zip(cycles, cycles[1:])})
        assert gaps == [1], f"{what}: cycles between beats {gaps}, expected only 1"

    checks = case.get("rate_checks", [])
    if "in_every_cycle" in checks:
        for i, port in enumerate(inputs):
            consecutive(log.in_cycles[i], f"input {port.prefix}")
    if "out_every_cycle" in checks:
        for o, port in enumerate(outputs):
            consecutive(log.out_cycles[o], f"output {port.prefix}[{port.index}]")
    dut._log.info("%s beats in, %s out, %d cycles",
                  [len(c) for c in log.in_cycles], [len(b) for b in log.out], log.cycles)
