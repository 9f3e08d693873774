"""cocotb testbench for a generated network top level (AXI-Stream in/out, TLAST).

The case file (TB_CASE, JSON) holds the input beats, the expected number of output
beats, gap/stall probabilities and a seed; the testbench records every output beat
with its TLAST and cycle and writes them to TB_RESULT. Comparison with the golden
model happens in Python (sim/network.py) so that it reports every mismatch.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


@cocotb.test()
async def run_frames(dut):
    with open(os.environ["TB_CASE"]) as fh:
        case = json.load(fh)
    beats, n_out = [int(b) for b in case["in_beats"]], case["n_out"]
    p_gap, p_stall = case.get("p_gap", 0.0), case.get("p_stall", 0.0)
    rng = random.Random(case.get("seed", 0))
    cocotb.start_soon(Clock(dut.ap_clk, 10, unit="ns").start())
    dut.ap_rst_n.value = 0
    dut.s_axis_tvalid.value = 0
    dut.s_axis_tdata.value = 0
    dut.s_axis_tlast.value = 0
    dut.m_axis_tready.value = 0
    await ClockCycles(dut.ap_clk, 4)
    dut.ap_rst_n.value = 1
    await RisingEdge(dut.ap_clk)
    per_frame = case["in_beats_per_frame"]
    max_cycles = case.get("max_cycles", 1000 + 50 * (len(beats) + n_out) * case.get("cycles_hint", 1))
    out, lasts, out_cycles = [], [], []
    i, pending, cycle = 0, False, 0
    while len(out) < n_out:
        if cycle >= max_cycles:
            raise AssertionError(f"timeout after {cycle} cycles: {i}/{len(beats)} beats in, {len(out)}/{n_out} out")
        if not pending and i < len(beats) and (p_gap == 0.0 or rng.random() >= p_gap):
            pending = True
            dut.s_axis_tdata.value = beats[i]
            dut.s_axis_tlast.value = int((i + 1) % per_frame == 0)
        dut.s_axis_tvalid.value = int(pending)
        ready = p_stall == 0.0 or rng.random() >= p_stall
        dut.m_axis_tready.value = int(ready)
        await ReadOnly()
        if pending and dut.s_axis_tready.value == 1:
            i += 1
            pending = False
        if ready and dut.m_axis_tvalid.value == 1:
            out.append(str(dut.m_axis_tdata.value.to_unsigned()))
            lasts.append(int(dut.m_axis_tlast.value))
            out_cycles.append(cycle)
        await RisingEdge(dut.ap_clk)
        cycle += 1
    # no extra beats may follow
    dut.s_axis_tvalid.value = 0
    dut.m_axis_tready.value = 1
    extra = 0
    for _ in range(16):
        await ReadOnly()
        extra += int(dut.m_axis_tvalid.value == 1)
        await RisingEdge(dut.ap_clk)
    with open(os.environ["TB_RESULT"], "w") as fh:
        json.dump({"out": out, "tlast": lasts, "out_cycles": out_cycles, "cycles": cycle,
                   "extra_beats": extra}, fh)
