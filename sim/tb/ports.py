"""Cycle-accurate valid/ready driver for modules with several input and output
streams (stream_fork, stream_add).

A port is named by its signal prefix (``in0`` -> in0_data/in0_valid/in0_ready)
and, for outputs packed into vectors (stream_fork's out_valid[N-1:0] and
out_data[N*WIDTH-1:0]), an index: bit *index* of the valid/ready vectors and
data bits [index*width +: width]. Each input has its own gap probability and
random stream, each output its own stall probability, so the ports move
independently. Besides the data, the driver checks the AXI-Stream rule on
every output: a beat offered and not taken stays offered, unchanged, in the
next cycle.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cocotb.triggers import ReadOnly, RisingEdge


@dataclass
class Port:
    prefix: str
    width: int
    index: int | None = None     # None: scalar valid/ready, data is the whole bus

    @classmethod
    def from_dict(cls, d: dict) -> "Port":
        return cls(d["prefix"], int(d["width"]), d.get("index"))

    def sig(self, dut, kind: str):
        return getattr(dut, f"{self.prefix}_{kind}")


@dataclass
class PortsLog:
    out: list = field(default_factory=list)          # per output: beats received
    in_cycles: list = field(default_factory=list)    # per input: cycles of its handshakes
    out_cycles: list = field(default_factory=list)   # per output: cycles of its handshakes
    cycles: int = 0


def _uint(value) -> int:
    """A 1-bit signal reads as Logic, a wider one as LogicArray."""
    return int(value.to_unsigned()) if hasattr(value, "to_unsigned") else int(value)


def _bit(value, index):
    return (_uint(value) >> index) & 1


def _read_valid(dut, port: Port) -> int:
    v = port.sig(dut, "valid").value
    return _uint(v) if port.index is None else _bit(v, port.index)


def _read_data(dut, port: Port) -> int:
    d = _uint(port.sig(dut, "data").value)
    if port.index is None:
        return int(d)
    return int((d >> (port.index * port.width)) & ((1 << port.width) - 1))


def _drive(dut, ports: list[Port], kind: str, values: list[int], datas: list[int] | None = None):
    """Write valid (or ready) bits, and data, of *ports*; indexed ports sharing
    a vector signal are merged into one write."""
    vectors: dict[str, int] = {}
    data_vectors: dict[str, int] = {}
    for k, port in enumerate(ports):
        name = f"{port.prefix}_{kind}"
        if port.index is None:
            getattr(dut, name).value = values[k]
            if datas is not None and datas[k] is not None:
                port.sig(dut, "data").value = datas[k]
        else:
            vectors[name] = vectors.get(name, 0) | (values[k] << port.index)
            if datas is not None and datas[k] is not None:
                dname = f"{port.prefix}_data"
                data_vectors[dname] = data_vectors.get(dname, 0) | (datas[k] << (port.index * port.width))
    for name, v in vectors.items():
        getattr(dut, name).value = v
    for name, v in data_vectors.items():
        getattr(dut, name).value = v


async def reset_ports(dut, inputs: list[Port], outputs: list[Port]) -> None:
    _drive(dut, inputs, "valid", [0] * len(inputs), [0] * len(inputs))
    _drive(dut, outputs, "ready", [0] * len(outputs))


async def run_ports(dut, inputs: list[Port], outputs: list[Port], in_beats: list[list[int]],
                    n_out: list[int], p_gap: list[float], p_stall: list[float], seed: int = 0,
                    max_cycles: int | None = None, drain_cycles: int = 8) -> PortsLog:
    """Offer in_beats[i] on input i and collect n_out[o] beats on output o.

    Input i skips offering its next beat with probability p_gap[i] per cycle
    (a beat once offered stays offered until taken); output o deasserts ready
    with probability p_stall[o]. After the expected beats every output must
    stay silent for *drain_cycles* with ready high.
    """
    rngs_in = [random.Random(seed * 1000 + 17 * i + 1) for i in range(len(inputs))]
    rngs_out = [random.Random(seed * 1000 + 31 * o + 500) for o in range(len(outputs))]
    if max_cycles is None:
        worst = max([0.0] + list(p_gap) + list(p_stall))
        total = sum(len(b) for b in in_beats) + sum(n_out)
        max_cycles = 200 + 20 * total * max(1, int(1 / max(1e-3, 1 - worst)))
    log = PortsLog(out=[[] for _ in outputs], in_cycles=[[] for _ in inputs],
                   out_cycles=[[] for _ in outputs])
    pos = [0] * len(inputs)
    pending = [False] * len(inputs)
    held = [None] * len(outputs)     # beat offered and not taken in the previous cycle
    cycle = 0

    def busy():
        return (any(p < len(b) for p, b in zip(pos, in_beats))
                or any(len(got) < n for got, n in zip(log.out, n_out)))

    while busy():
        if cycle >= max_cycles:
            raise AssertionError(
                f"timeout after {cycle} cycles: inputs {pos} of {[len(b) for b in in_beats]}, "
                f"outputs {[len(g) for g in log.out]} of {n_out}")
        for i in range(len(inputs)):
            if not pending[i] and pos[i] < len(in_beats[i]) and rngs_in[i].random() >= p_gap[i]:
                pending[i] = True
        _drive(dut, inputs, "valid", [int(p) for p in pending],
               [in_beats[i][pos[i]] if pending[i] else None for i in range(len(inputs))])
        ready = [int(r.random() >= p) for r, p in zip(rngs_out, p_stall)]
        _drive(dut, outputs, "ready", ready)
        await ReadOnly()
        for i, port in enumerate(inputs):
            if pending[i]:
                r = port.sig(dut, "ready").value
                rdy = _uint(r) if port.index is None else _bit(r, port.index)
                if rdy:
                    log.in_cycles[i].append(cycle)
                    pos[i] += 1
                    pending[i] = False
        for o, port in enumerate(outputs):
            valid = _read_valid(dut, port)
            data = _read_data(dut, port) if valid else None
            if held[o] is not None and (not valid or data != held[o]):
                raise AssertionError(
                    f"output {port.prefix}[{port.index}] cycle {cycle}: beat {held[o]:#x} offered "
                    f"and not taken was withdrawn or changed (valid={valid}, data={data})")
            held[o] = None
            if valid and ready[o]:
                if len(log.out[o]) >= n_out[o]:
                    raise AssertionError(f"output {port.prefix}[{port.index}]: unexpected extra "
                                         f"beat {len(log.out[o])} ({data:#x})")
                log.out[o].append(data)
                log.out_cycles[o].append(cycle)
            elif valid:
                held[o] = data
        await RisingEdge(dut.clk)
        cycle += 1
    _drive(dut, inputs, "valid", [0] * len(inputs))
    _drive(dut, outputs, "ready", [1] * len(outputs))
    for _ in range(drain_cycles):
        await ReadOnly()
        for o, port in enumerate(outputs):
            if _read_valid(dut, port):
                raise AssertionError(f"output {port.prefix}[{port.index}]: extra beat after the "
                                     f"expected {n_out[o]}: {_read_data(dut, port):#x}")
        await RisingEdge(dut.clk)
    log.cycles = cycle
    return log
