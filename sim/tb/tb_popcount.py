"""cocotb tests of hw/rtl/popcount_compressor.v (a clock-enabled pipeline, not a
stream): each output is compared with the count of the input applied LATENCY
enabled edges earlier. Case file (TB_CASE): {"N", "LATENCY", "cycles", "seed",
"p_hold"} (p_hold: chance that en is low in a cycle), see tests/hw/test_popcount_compressor.py."""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from .common import load_case


def _vector(rng: random.Random, n: int) -> int:
    """Random words plus the extremes (all zeros, all ones, one bit, all but one)."""
    kind = rng.random()
    full = (1 << n) - 1
    if kind < 0.05:
        return 0
    if kind < 0.10:
        return full
    if kind < 0.15:
        return 1 << rng.randrange(n)
    if kind < 0.20:
        return full ^ (1 << rng.randrange(n))
    density = rng.random()  # dense and sparse words, not only half-full ones
    return sum(1 << i for i in range(n) if rng.random() < density)


async def _run(dut, p_hold: float) -> int:
    case = load_case()
    n, lat, seed = case["N"], case["LATENCY"], case["seed"]
    rng = random.Random(seed + int(p_hold * 1000))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    history: list[int] = []  # inputs taken at enabled edges, oldest first
    checked = 0
    for _ in range(case["cycles"]):
        x = _vector(rng, n)
        en = 0 if rng.random() < p_hold else 1
        dut.in_data.value = x
        dut.en.value = en
        await ReadOnly()
        got = int(dut.out_data.value)
        if lat == 0:
            assert got == bin(x).count("1"), f"N={n}: popcount({x:#x}) = {got}"
            checked += 1
        elif len(history) >= lat:
            want = bin(history[-lat]).count("1")
            assert got == want, f"N={n}: {lat} enabled edges after {history[-lat]:#x}: {got}, expected {want}"
            checked += 1
        await RisingEdge(dut.clk)
        if en:
            history.append(x)
        await Timer(1, unit="ns")
    return checked


@cocotb.test()
async def enable_always(dut):
    checked = await _run(dut, 0.0)
    assert checked > 100, checked


@cocotb.test()
async def random_enable(dut):
    checked = await _run(dut, 0.4)
    assert checked > 100, checked
