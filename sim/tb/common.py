"""Shared cocotb helpers: clock/reset and a cycle-accurate valid/ready driver.

Every hw/rtl stream module has the same port names (in_data/in_valid/in_ready,
out_data/out_valid/out_ready), so one driver/monitor serves them all. The test
case (input beats, expected output beats, gap/stall probabilities) comes from
a JSON file named by the TB_CASE environment variable, written by the pytest
driver from the numpy reference.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


def load_case() -> dict:
    with open(os.environ["TB_CASE"]) as fh:
        return json.load(fh)


async def start(dut, period_ns: int = 10, reset_cycles: int = 3) -> None:
    cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())
    dut.rst_n.value = 0
    dut.in_valid.value = 0
    dut.in_data.value = 0
    dut.out_ready.value = 0
    await ClockCycles(dut.clk, reset_cycles)
    dut.rst_n.value = 1
    await RisingEdge(dut.clk)


@dataclass
class StreamLog:
    out: list = field(default_factory=list)
    in_cycles: list = field(default_factory=list)
    out_cycles: list = field(default_factory=list)
    cycles: int = 0
    in_stalls_while_valid: int = 0


async def run_stream(dut, in_beats, n_out, p_gap=0.0, p_stall=0.0, seed=0,
                     max_cycles=None, drain_cycles=8) -> StreamLog:
    """Drive *in_beats* and collect *n_out* output beats.

    A beat, once offered, stays valid (with the same data) until accepted, as
    AXI-Stream requires; p_gap is the chance of not offering the next beat in a
    cycle, p_stall the chance of deasserting out_ready. Handshakes are sampled
    in the ReadOnly phase before each rising edge, so combinational ready paths
    are seen as the flops see them. After the expected beats, the output must
    stay silent for *drain_cycles* with out_ready high (no duplicates).
    """
    rng = random.Random(seed)
    if max_cycles is None:
        max_cycles = 200 + 20 * (len(in_beats) + n_out) * max(1, int(1 / max(1e-3, 1 - max(p_gap, p_stall))))
    log = StreamLog()
    i = 0
    pending = False
    cycle = 0
    while i < len(in_beats) or len(log.out) < n_out:
        if cycle >= max_cycles:
            raise AssertionError(
                f"timeout after {cycle} cycles: {i}/{len(in_beats)} beats in, "
                f"{len(log.out)}/{n_out} beats out")
        if not pending and i < len(in_beats) and rng.random() >= p_gap:
            pending = True
        dut.in_valid.value = 1 if pending else 0
        if pending:
            dut.in_data.value = in_beats[i]
        ready = rng.random() >= p_stall
        dut.out_ready.value = 1 if ready else 0
        await ReadOnly()
        if pending:
            if dut.in_ready.value == 1:
                log.in_cycles.append(cycle)
                i += 1
                pending = False
            else:
                log.in_stalls_while_valid += 1
        if ready and dut.out_valid.value == 1:
            if len(log.out) >= n_out:
                raise AssertionError(f"unexpected extra output beat {len(log.out)} "
                                     f"({dut.out_data.value.to_unsigned():#x})")
            log.out.append(dut.out_data.value.to_unsigned())
            log.out_cycles.append(cycle)
        await RisingEdge(dut.clk)
        cycle += 1
    dut.in_valid.value = 0
    dut.out_ready.value = 1
    for _ in range(drain_cycles):
        await ReadOnly()
        if dut.out_valid.value == 1:
            raise AssertionError(f"extra output beat after the expected {n_out}: "
                                 f"{dut.out_data.value.to_unsigned():#x}")
        await RisingEdge(dut.clk)
    log.cycles = cycle
    return log


def check_beats(got, expected, what="output", fmt=None) -> None:
    assert len(got) == len(expected), f"{what}: {len(got)} beats, expected {len(expected)}"
    for k, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            extra = f" ({fmt(k, g, e)})" if fmt else ""
            raise AssertionError(f"{what} beat {k}: got {g:#x}, expected {e:#x}{extra}")
