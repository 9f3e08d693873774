"""cocotb tests for thresholding: the plain stream tests (sim/tb/tb_streams.py)
plus its latency. Case keys as tb_streams, and "latency": the cycles from the
handshake of a beat to the first cycle its result is valid, on an idle unit."""

from __future__ import annotations

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from .common import load_case, start
from .tb_streams import full_rate, random_gaps_and_backpressure  # noqa: F401  (collected by cocotb)


@cocotb.test()
async def latency(dut):
    case = load_case()
    sc = case["full_rate"]
    await start(dut)
    dut.out_ready.value = 1
    dut.in_data.value = sc["in_beats"][0]
    dut.in_valid.value = 1
    await ReadOnly()
    assert dut.in_ready.value == 1, "an idle unit must take a beat"
    await RisingEdge(dut.clk)
    dut.in_valid.value = 0
    cycles = 1
    while True:
        await ReadOnly()
        if dut.out_valid.value == 1:
            break
        assert cycles < 100, "no output"
        await RisingEdge(dut.clk)
        cycles += 1
    assert cycles == case["latency"], f"latency {cycles} cycles, expected {case['latency']}"
    got = dut.out_data.value.to_unsigned()
    assert got == sc["expected"][0], f"first beat {got:#x}, expected {sc['expected'][0]:#x}"
