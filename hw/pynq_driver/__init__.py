"""PYNQ driver for a bnnforge accelerator (pynq 3.1.x, Pynq-Z1/Z2).

Needs only numpy (and pynq on the board): no torch, qonnx or cocotb, so the package
can be copied onto a board as is. `BnnOverlay` does not know whether its DMA is the
board's AXI DMA or a simulated one: it only calls `allocate(shape, dtype)` and the
DMA channels' `transfer(buffer)` / `wait()`.
"""
from .driver import BnnOverlay, DriverInputError, StreamLayout, PynqIO

__all__ = ["BnnOverlay", "DriverInputError", "StreamLayout", "PynqIO"]
