"""The accelerator driver: pack inputs into the DMA byte layout, run batches, unpack.

Byte layout (hw/vivado/wrapper.py, docs/hw_interfaces.md):
- Input: a frame is `beats_per_frame` DMA beats of `beat_bytes` bytes each. Beat k
  holds elements [k*E, (k+1)*E) (E = elements_per_beat), element j in bits
  [j*B, (j+1)*B) of the beat (B = element_bits, two's complement when signed),
  bit 0 of the beat = bit 0 of the beat's first byte (little-endian, as the AXI DMA
  maps memory to TDATA); bits above E*B are zero.
- Output: `beats_per_frame` beats of `beat_bytes` bytes per frame; field p of a beat
  in bits [p*F, (p+1)*F) (F = field_bits). With label select: one beat holding the
  label. Else the last layer's accumulators (signed) or bits.
- A batch is one MM2S transfer and one S2MM transfer; the wrapper closes the receive
  with TLAST after the batch's last frame.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


class DriverInputError(ValueError):
    """Inputs of the wrong shape, dtype or range, or a bad layout/dataset file."""


class StreamLayout:
    """accel.json: how frames are laid out in the DMA buffers."""

    def __init__(self, spec: dict, source: str = "accel.json"):
        try:
            if spec.get("format") != "bnnforge-stream-layout-1":
                raise KeyError("format")
            i, o = spec["input"], spec["output"]
            self.elements = int(i["elements"])
            self.kind = str(i["kind"])
            self.element_bits = int(i["element_bits"])
            self.in_signed = bool(i["signed"])
            self.per_beat = int(i["elements_per_beat"])
            self.in_beats = int(i["beats_per_frame"])
            self.in_beat_bytes = int(i["beat_bytes"])
            self.shape = tuple(int(d) for d in i.get("shape") or [self.elements])
            self.label_select = bool(o["label_select"])
            self.num_outputs = int(o["num_outputs"])
            self.fields = int(o["fields_per_beat"])
            self.field_bits = int(o["field_bits"])
            self.out_signed = bool(o["signed"])
            self.out_beats = int(o["beats_per_frame"])
            self.out_beat_bytes = int(o["beat_bytes"])
            self.fclk_mhz = float(spec["fclk_mhz"])
            self.max_transfer = int(spec["dma"]["max_transfer_bytes"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DriverInputError(f"{source}: missing or bad field {e} (not a bnnforge stream layout)")
        if self.kind not in ("bipolar", "unipolar", "int") or self.per_beat * self.in_beats != self.elements \
                or self.per_beat * self.element_bits > 8 * self.in_beat_bytes \
                or self.fields * self.field_bits > 8 * self.out_beat_bytes:
            raise DriverInputError(f"{source}: inconsistent stream layout")

    @classmethod
    def load(cls, path) -> "StreamLayout":
        path = Path(path)
        try:
            return cls(json.loads(path.read_text()), str(path))
        except OSError as e:
            raise DriverInputError(f"{path}: cannot read stream layout ({e.strerror})")
        except ValueError as e:
            if isinstance(e, DriverInputError):
                raise
            raise DriverInputError(f"{path}: not valid JSON ({e})")

    @property
    def in_frame_bytes(self) -> int:
        return self.in_beats * self.in_beat_bytes

    @property
    def out_frame_bytes(self) -> int:
        return self.out_beats * self.out_beat_bytes

    # ------------------------------------------------------------------ inputs
    def check_inputs(self, x) -> np.ndarray:
        """-> int64 array [N, elements]; DriverInputError naming what is wrong."""
        x = np.asarray(x)
        if x.dtype == bool:
            x = x.astype(np.int64)
        if not np.issubdtype(x.dtype, np.integer):
            raise DriverInputError(
                f"inputs have dtype {x.dtype}; the accelerator takes integers (its quantized input: "
                f"{self._range_text()}); quantize on the host first")
        flat_ok = x.ndim == 2 and x.shape[1] == self.elements
        img_ok = x.ndim == 1 + len(self.shape) and tuple(x.shape[1:]) == self.shape
        single = x.ndim == 1 and x.shape[0] == self.elements or tuple(x.shape) == self.shape
        if single:
            x = x.reshape(1, self.elements)
        elif flat_ok or img_ok:
            x = x.reshape(len(x), self.elements)
        else:
            raise DriverInputError(
                f"inputs have shape {tuple(x.shape)}; expected (N, {self.elements})"
                + (f" or (N, {', '.join(map(str, self.shape))})" if self.shape != (self.elements,) else ""))
        if len(x) == 0:
            raise DriverInputError("inputs hold no frames (N = 0)")
        x = x.astype(np.int64)
        lo, hi = self._range()
        bad = np.argwhere((x < lo) | (x > hi))
        if len(bad):
            n, e = bad[0]
            raise DriverInputError(f"input value {int(x[n, e])} at frame {n}, element {e} is outside "
                                   f"{self._range_text()}")
        return x

    def _range(self):
        if self.kind == "bipolar":
            return (-1, 1)
        if self.kind == "unipolar":
            return (0, 1)
        b = self.element_bits
        return (-(1 << (b - 1)), (1 << (b - 1)) - 1) if self.in_signed else (0, (1 << b) - 1)

    def _range_text(self) -> str:
        if self.kind == "bipolar":
            return "bipolar bits {0, 1} (or {-1, +1})"
        if self.kind == "unipolar":
            return "bits {0, 1}"
        lo, hi = self._range()
        return f"{'signed' if self.in_signed else 'unsigned'} {self.element_bits}-bit integers [{lo}, {hi}]"

    def pack(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Checked int inputs [N, elements] -> uint8 [N * in_frame_bytes]."""
        n = len(x)
        b = self.element_bits
        v = np.asarray(x, dtype=np.int64)
        if self.kind == "bipolar":
            v = (v > 0).astype(np.int64)  # bit 1 = +1
        v = v & ((1 << b) - 1)
        bits = ((v[:, :, None] >> np.arange(b)) & 1).astype(np.uint8)       # [N, MW, B], LSB first
        bits = bits.reshape(n, self.in_beats, self.per_beat * b)
        pad = 8 * self.in_beat_bytes - self.per_beat * b
        if pad:
            bits = np.concatenate([bits, np.zeros((n, self.in_beats, pad), np.uint8)], axis=2)
        packed = np.packbits(bits, axis=2, bitorder="little").reshape(-1)
        if out is None:
            return packed
        out[:] = packed
        return out

    # ------------------------------------------------------------------ outputs
    def unpack(self, raw: np.ndarray, n: int) -> np.ndarray:
        """uint8 [n * out_frame_bytes] -> labels [n] or values [n, num_outputs] (int64)."""
        raw = np.asarray(raw, dtype=np.uint8)[: n * self.out_frame_bytes]
        bits = np.unpackbits(raw.reshape(n, self.out_beats, self.out_beat_bytes), axis=2, bitorder="little")
        f = self.field_bits
        bits = bits[:, :, : self.fields * f].reshape(n, self.out_beats * self.fields, f).astype(np.int64)
        vals = (bits << np.arange(f)).sum(axis=2)
        if self.out_signed:
            vals = np.where(vals >> (f - 1), vals - (1 << f), vals)
        if self.label_select:
            return vals[:, 0]
        return vals[:, : self.num_outputs]


class PynqIO:
    """The board: loads the bitstream with pynq and hands out its DMA and buffers."""

    def __init__(self, bitfile, dma_name: str = "axi_dma_0"):
        from pynq import Overlay, allocate  # only on the board

        self.overlay = Overlay(str(bitfile))
        self.dma = getattr(self.overlay, dma_name)
        self._allocate = allocate

    def allocate(self, shape, dtype):
        return self._allocate(shape=shape, dtype=dtype)


class BnnOverlay:
    """Runs batches of frames through the accelerator.

    io: anything with `.dma` (`.sendchannel` / `.recvchannel` with `transfer(buf)` and
    `wait()`) and `.allocate(shape, dtype)`: `PynqIO(bitfile)` on the board, the
    simulated RTL off the board (bnnforge.deploy.SimIO)."""

    def __init__(self, io, layout, batch_size: int = 1000):
        self.io = io
        self.layout = layout if isinstance(layout, StreamLayout) else StreamLayout.load(layout)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DriverInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        # one transfer must fit the DMA's 26-bit length register
        lim = self.layout.max_transfer // max(self.layout.in_frame_bytes, self.layout.out_frame_bytes)
        self.batch_size = min(batch_size, lim)
        self._bufs = None
        self.last_timing = {}

    @classmethod
    def from_bitfile(cls, bitfile, layout, **kw) -> "BnnOverlay":
        return cls(PynqIO(bitfile), layout, **kw)

    def _buffers(self, n):
        if self._bufs is None or self._bufs[0] < n:
            ibuf = self.io.allocate((n * self.layout.in_frame_bytes,), np.uint8)
            obuf = self.io.allocate((n * self.layout.out_frame_bytes,), np.uint8)
            self._bufs = (n, ibuf, obuf)
        return self._bufs[1], self._bufs[2]

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        L = self.layout
        ibuf, obuf = self._buffers(n)
        t0 = time.perf_counter()
        ibuf[: n * L.in_frame_bytes] = L.pack(x)
        t1 = time.perf_counter()
        if hasattr(ibuf, "flush"):
            ibuf.flush()
        dma = self.io.dma
        # receive first, so the S2MM channel is ready before results arrive
        dma.recvchannel.transfer(obuf, nbytes=n * L.out_frame_bytes)
        dma.sendchannel.transfer(ibuf, nbytes=n * L.in_frame_bytes)
        dma.sendchannel.wait()
        dma.recvchannel.wait()
        t2 = time.perf_counter()
        if hasattr(obuf, "invalidate"):
            obuf.invalidate()
        out = L.unpack(np.array(obuf[: n * L.out_frame_bytes]), n)
        t3 = time.perf_counter()
        self.last_timing = {"pack_s": t1 - t0, "dma_s": t2 - t1, "unpack_s": t3 - t2}
        return out

    def execute(self, x) -> np.ndarray:
        """Integer inputs [N, elements] (or [N, *shape]) -> labels [N] or outputs [N, num_outputs]."""
        x = self.layout.check_inputs(x)
        outs = [self._run_batch(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(outs)

    def classify(self, x) -> np.ndarray:
        out = self.execute(x)
        return out if self.layout.label_select else np.argmax(out, axis=1)

    def validate(self, dataset) -> dict:
        """Accuracy on a dataset .npz: `x` (integer inputs), `y` (true labels, optional),
        `expected` (golden-model outputs, optional; compared exactly)."""
        x, y, expected = load_dataset(dataset)
        t0 = time.perf_counter()
        out = self.execute(x)
        wall = time.perf_counter() - t0
        pred = out if self.layout.label_select else np.argmax(out, axis=1)
        res = {"frames": int(len(x)), "seconds": wall}
        if y is not None:
            res["accuracy"] = float(np.mean(pred == y))
        if expected is not None:
            if expected.shape != out.shape:
                raise DriverInputError(f"{dataset}: 'expected' has shape {expected.shape}, outputs {out.shape}")
            res["mismatches_vs_expected"] = int(np.sum(np.any((out != expected).reshape(len(x), -1), axis=1)))
        res["predictions"] = pred
        return res

    def throughput_test(self, batch_size: int | None = None, repeats: int = 1) -> dict:
        """FINN-driver-style throughput figures on random inputs of one batch."""
        n = batch_size or self.batch_size
        L = self.layout
        rng = np.random.default_rng(0)
        lo, hi = L._range()
        x = rng.integers(0 if L.kind == "bipolar" else lo, hi + 1, size=(n, L.elements))
        runtime = []
        for _ in range(max(1, repeats)):
            self._run_batch(L.check_inputs(x))
            runtime.append(self.last_timing["dma_s"])
        t = min(runtime)
        return {
            "runtime[ms]": t * 1e3,
            "throughput[images/s]": n / t,
            "DRAM_in_bandwidth[MB/s]": n * L.in_frame_bytes / t / 1e6,
            "DRAM_out_bandwidth[MB/s]": n * L.out_frame_bytes / t / 1e6,
            "fclk[mhz]": L.fclk_mhz,
            "batch_size": n,
            "pack_input[ms]": self.last_timing["pack_s"] * 1e3,
            "unpack_output[ms]": self.last_timing["unpack_s"] * 1e3,
        }


def load_dataset(path):
    path = Path(path)
    try:
        with np.load(path) as d:
            data = {k: d[k] for k in d.files}
    except OSError as e:
        raise DriverInputError(f"{path}: cannot read dataset ({e.strerror or e})")
    except ValueError as e:
        raise DriverInputError(f"{path}: not a .npz dataset ({e})")
    if "x" not in data:
        raise DriverInputError(f"{path}: dataset has no array 'x' (keys: {', '.join(data) or 'none'})")
    x, y, exp = data["x"], data.get("y"), data.get("expected")
    for k, v in (("y", y), ("expected", exp)):
        if v is not None and (len(v) != len(x) or not np.issubdtype(v.dtype, np.integer)):
            raise DriverInputError(f"{path}: '{k}' must be integers, one row per input ({len(x)})")
    return x, y, exp
