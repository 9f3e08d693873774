"""Deployment: the simulated DMA behind the PYNQ driver, and the board package.

`SimIO` gives `hw.pynq_driver.BnnOverlay` the same `allocate` / `dma.sendchannel` /
`dma.recvchannel` calls as pynq, backed by the Verilator-compiled RTL of the DMA
wrapper and the accelerator (the very Verilog the Vivado project uses, via the bulk
harness of sim/bulk.py). So the driver code that runs on the board is exercised end
to end against the hardware model: packing, batch TLAST, unpacking.

Fidelity notes: MM2S raises TLAST on the last beat of each send transfer, as the AXI
DMA does; a receive must end exactly with the wrapper's TLAST on its last beat (an
early or missing TLAST is an error, as it would hang or truncate on the board). Each
receive runs the simulation from reset (the board keeps running; the pipeline is
empty between batches either way).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from bnnforge.errors import BnnforgeError
from bnnforge.resources import package_path

DRIVER_DIR = package_path("bnnforge.hw", "pynq_driver")


class SimDMAError(RuntimeError):
    """The simulated transfer did what would hang or fail on the board."""


class _Channel:
    def __init__(self, dma, kind):
        self._dma, self._kind = dma, kind
        self.pending = None

    def transfer(self, array, start: int = 0, nbytes: int = 0):
        if self.pending is not None:
            raise SimDMAError(f"{self._kind}: transfer started while the previous one is still running")
        nbytes = nbytes or (array.nbytes - start)
        if nbytes <= 0 or start + nbytes > array.nbytes:
            raise SimDMAError(f"{self._kind}: transfer of {nbytes} bytes at {start} outside the buffer")
        self.pending = (array, start, nbytes)

    def wait(self):
        self._dma._complete(self._kind)

    @property
    def idle(self):
        return self.pending is None


class SimDMA:
    def __init__(self, io):
        self._io = io
        self.sendchannel = _Channel(self, "sendchannel")
        self.recvchannel = _Channel(self, "recvchannel")

    def _complete(self, kind):
        s, r = self.sendchannel, self.recvchannel
        if s.pending is None and r.pending is None:
            return
        if r.pending is None:
            raise SimDMAError("sendchannel.wait() with no receive armed: the accelerator's output would back up "
                              "and the send could stall on the board")
        if s.pending is None:
            raise SimDMAError("recvchannel.wait() with nothing sent: it would wait forever on the board")
        (ia, i0, inb), (oa, o0, onb) = s.pending, r.pending
        data = np.frombuffer(np.asarray(ia).tobytes(), np.uint8)[i0:i0 + inb]
        out = self._io.run(data, onb)
        flat = np.asarray(oa).reshape(-1).view(np.uint8)
        flat[o0:o0 + onb] = out
        s.pending = r.pending = None


class SimIO:
    """`io` for BnnOverlay backed by the simulated wrapper + accelerator of a Vivado
    project directory (bnnforge vivado / hw.vivado.project.write_project)."""

    def __init__(self, project_dir, p_gap: float = 0.0, p_stall: float = 0.0, seed: int = 0):
        from bnnforge.sim.bulk import build_bulk

        self.project_dir = Path(project_dir).resolve()
        pj = self.project_dir / "project.json"
        if not pj.is_file():
            raise BnnforgeError(f"{pj}: not found (write the Vivado project first: bnnforge vivado <build>)")
        self.project = json.loads(pj.read_text())
        self.layout = json.loads((self.project_dir / "accel.json").read_text())
        self.src = self.project_dir / "src"
        simdir = self.project_dir / "sim"
        simdir.mkdir(exist_ok=True)
        (simdir / "manifest.json").write_text(json.dumps(
            {"top": self.project["wrapper"], "files": [str(self.src / f) for f in self.project["verilog"]]}))
        self.exe = build_bulk(simdir)
        self.p_gap, self.p_stall, self.seed = p_gap, p_stall, seed
        self.dma = SimDMA(self)
        self.runs = []

    def allocate(self, shape, dtype):
        return np.zeros(shape, dtype)

    def run(self, data: np.ndarray, out_nbytes: int, batches: int = 1, expect_batches: int | None = None) -> np.ndarray:
        """Simulate `batches` equal MM2S sends (TLAST on the last beat of each) filling one
        S2MM receive of out_nbytes; the wrapper must raise TLAST exactly at each batch end."""
        from bnnforge.sim.bulk import _parse_output

        li, lo = self.layout["input"], self.layout["output"]
        ib, ob = li["beat_bytes"], lo["beat_bytes"]
        if len(data) % ib or out_nbytes % ob:
            raise SimDMAError(f"transfer lengths {len(data)} / {out_nbytes} bytes are not whole "
                              f"{ib}- / {ob}-byte stream beats")
        beats = [int.from_bytes(data[k:k + ib].tobytes(), "little") for k in range(0, len(data), ib)]
        n_out = out_nbytes // ob
        if len(beats) % batches or n_out % batches:
            raise SimDMAError(f"{len(beats)} input / {n_out} output beats do not split into {batches} batches")
        frames = len(beats) // li["beats_per_frame"]
        per_frame = max(self.layout["cycles_per_frame_ideal"], li["beats_per_frame"] / max(1e-3, 1 - self.p_gap),
                        lo["beats_per_frame"] / max(1e-3, 1 - self.p_stall))
        # a run of few frames is dominated by the pipeline's fill (CNV: nine stages of about one
        # frame interval each); layouts written before fill_cycles get a bound of 16 intervals
        fill = self.layout.get("fill_cycles", 16 * self.layout["cycles_per_frame_ideal"])
        max_cycles = 2000 + int(3 * per_frame * max(frames, 1)) + 10 * len(beats) + int(fill)
        with tempfile.TemporaryDirectory(prefix="simdma-") as tmp:
            fin, fout = Path(tmp) / "in.hex", Path(tmp) / "out.txt"
            fin.write_text("".join(f"{b:x}\n" for b in beats))
            # IN_BPF = all beats of the send: MM2S raises TLAST only on the transfer's last beat
            cmd = [str(self.exe), str(fin), str(fout), str(len(beats) // batches), str(lo["beats_per_frame"]), str(n_out),
                   repr(float(self.p_gap)), repr(float(self.p_stall)), str(self.seed), str(max_cycles), "-1", "4"]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, cwd=self.src, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if p.returncode not in (0, 3) or not fout.exists():
                raise SimDMAError(f"simulation failed (rc {p.returncode}): {(p.stdout + p.stderr)[-2000:]}")
            status, got, _ = _parse_output(fout)
        if status["status"] != "ok":
            raise SimDMAError(f"receive of {n_out} beats did not complete: {status['beats_out']} beats after "
                              f"{status['cycles']} cycles (the DMA would wait forever)")
        lasts = [l for _, l, _ in got]
        per = n_out // (expect_batches or batches)
        want = [int((k + 1) % per == 0) for k in range(n_out)]
        if lasts != want:
            k = next(i for i, (a, b) in enumerate(zip(lasts, want)) if a != b)
            raise SimDMAError(f"TLAST {'missing' if want[k] else 'early'} at beat {k} of a {n_out}-beat receive "
                              f"({batches} batch(es); the board's DMA would {'hang' if want[k] else 'truncate'})")
        if status["extra"]:
            raise SimDMAError(f"{status['extra']} output beats beyond the receive length")
        out = b"".join(d.to_bytes(ob, "little") for _, _, d in got)
        ends = [c for c, _, _ in got]
        self.runs.append({"frames": frames, "cycles": status["cycles"], "wall_s": wall,
                          "first_out_cycle": ends[0] if ends else None})
        return np.frombuffer(out, np.uint8)


# ---------------------------------------------------------------------- samples

def sample_inputs(layout: dict, n: int, seed: int = 0) -> np.ndarray:
    """Random integer inputs over the accelerator's whole input range."""
    li = layout["input"]
    rng = np.random.default_rng(seed)
    if li["kind"] in ("bipolar", "unipolar"):
        return rng.integers(0, 2, size=(n, li["elements"]))
    b = li["element_bits"]
    lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if li["signed"] else (0, (1 << b) - 1)
    return rng.integers(lo, hi + 1, size=(n, li["elements"]))


def golden_outputs(build_dir: Path, q: np.ndarray) -> np.ndarray:
    import onnx

    from bnnforge.sim.golden import execute

    return np.asarray(execute(onnx.load(str(Path(build_dir) / "final_model.onnx")), q), dtype=np.int64)


def quantize_images(build_dir: Path, images: np.ndarray) -> np.ndarray:
    import onnx

    from bnnforge.sim.golden import quantize_inputs

    first = sorted((Path(build_dir) / "intermediate_models").glob("*_streamline.onnx"))
    if not first:
        raise BnnforgeError(f"{build_dir}: no streamlined model in intermediate_models/ to quantize images with")
    return quantize_inputs(onnx.load(str(first[0])), images)


def verify_with_sim(project_dir: Path, x: np.ndarray, expected: np.ndarray, batch_size: int = 1000,
                    p_gap: float = 0.0, p_stall: float = 0.0) -> dict:
    """The packaged driver, fed by the simulated RTL, against the golden outputs."""
    from bnnforge.hw.pynq_driver import BnnOverlay

    io = SimIO(project_dir, p_gap=p_gap, p_stall=p_stall)
    ol = BnnOverlay(io, Path(project_dir) / "accel.json", batch_size=batch_size)
    t0 = time.perf_counter()
    out = ol.execute(x)
    wall = time.perf_counter() - t0
    mism = int(np.sum(np.any((out != expected).reshape(len(x), -1), axis=1)))
    cyc = sum(r["cycles"] for r in io.runs)
    return {"frames": int(len(x)), "mismatches": mism, "identical": mism == 0 and out.shape == expected.shape,
            "batches": len(io.runs), "sim_cycles": cyc, "wall_s": round(wall, 3), "outputs": out}


# ---------------------------------------------------------------------- package

PACKAGE_README = """# {name}: bnnforge accelerator for {board}

Contents
- `bitfile/{name}.bit`, `bitfile/{name}.hwh`: the overlay ({bit_note}).
- `pynq_driver/`: the driver (numpy + pynq 3.1 only); `pynq_driver/accel.json` is
  the stream layout of this accelerator.
- `validate.py`: accuracy/throughput on a dataset file.
- `sample/sample.npz`: {n} inputs `x` (the accelerator's integer inputs) with the
  golden model's outputs `expected`{y_note}.
- `manifest.json`: what was built, from what, and how the sample was checked.

On the board (PYNQ image with pynq 3.1, as root / with sudo):

```sh
cd {dirname}
python3 pynq_driver/validate.py --bitfile bitfile/{name}.bit --dataset sample/sample.npz --throughput
```

It prints the number of outputs that differ from `expected` (must be 0), the
accuracy when labels are present, and FINN-style throughput figures. From Python:

```python
from pynq_driver import BnnOverlay
ol = BnnOverlay.from_bitfile("bitfile/{name}.bit", "pynq_driver/accel.json")
labels = ol.classify(x)   # x: integers, shape (N, {elements}) or (N, {shape})
```

Inputs are the accelerator's integer inputs ({input_text}); quantize images on the
host as `bnnforge` does (sim.golden.quantize_inputs) before sending.

Throughput: {throughput_note}
{sim_note}"""


def board_throughput(build_dir: Path, layout: dict, project: dict, bitfile: bool) -> dict:
    """Frames/s on the board: the bitstream clocks the accelerator at FCLK0 (the project's
    fclk_mhz), so that is the clock to quote; whether the design meets it is known from the
    Vivado run, whose script refuses a negative slack (hw/vivado/project.py), and is
    otherwise only estimated (hw/throughput.py)."""
    from bnnforge.hw.throughput import describe, measured_clock

    fclk, cycles = float(project["fclk_mhz"]), layout["cycles_per_frame_ideal"]
    checked = bitfile and "expected_bram18" in project  # written by a script that checks its slack
    at_fclk = {"frames_per_s": fclk * 1e6 / cycles, "clock_mhz": fclk, "measured": False, "source": None}
    m = measured_clock(build_dir)
    if checked:
        text = (f"{at_fclk['frames_per_s']:,.0f} frames/s at FCLK0 = {fclk:g} MHz ({cycles:,} cycles/frame), "
                f"a clock the Vivado run met (its script refuses negative slack; bitfile/timing_summary.rpt).")
    else:
        text = (f"{describe(at_fclk)}, the FCLK0 the bitstream will run at ({cycles:,} cycles/frame); "
                f"no Vivado run has checked that clock yet; ")
        text += (f"the build's own estimate allows {m['mhz']:g} MHz, {m['basis']}." if m else
                 "nothing has measured the design's clock (`bnnforge synth BUILD --timing pnr`).")
    return {"fclk_mhz": fclk, "cycles_per_frame_ideal": cycles, "frames_per_s": round(at_fclk["frames_per_s"], 1),
            "fclk_met_in_vivado": bool(checked), "measured_clock": m, "text": text}


def make_package(build_dir, out, board: str = "pynq-z2", samples: int = 100, images=None, labels=None,
                 verify: bool = True, archive: bool = False, seed: int = 0) -> dict:
    """One folder (and optionally a .tar.gz) for the board. Atomic: a failure leaves nothing."""
    from bnnforge.hw.vivado.project import write_project

    build_dir = Path(build_dir)
    out = Path(out)
    if not (build_dir / "final_model.onnx").is_file():
        raise BnnforgeError(f"{build_dir / 'final_model.onnx'}: not found (not a bnnforge build directory)")
    if not isinstance(samples, int) or samples < 1:
        raise BnnforgeError(f"--samples: must be a positive integer, got {samples!r}")
    vivado = build_dir / "vivado"
    if not (vivado / "project.json").is_file():
        write_project(build_dir, board=board)
    pj = json.loads((vivado / "project.json").read_text())
    if pj["board"] != board:
        raise BnnforgeError(f"{vivado / 'project.json'}: project is for {pj['board']}, not {board} "
                            f"(rerun `bnnforge vivado {build_dir} --board {board}`)")
    layout = json.loads((vivado / "accel.json").read_text())
    name = pj["top"]

    y = None
    if images is not None:
        x = quantize_images(build_dir, np.load(images))
        if labels is not None:
            y = np.asarray(np.load(labels)).astype(np.int64).reshape(-1)
            if len(y) != len(x):
                raise BnnforgeError(f"{labels}: {len(y)} labels for {len(x)} images")
        x, y = x[:samples], (y[:samples] if y is not None else None)
    else:
        x = sample_inputs(layout, samples, seed)
    expected = golden_outputs(build_dir, x)

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        info = {"name": name, "board": pj["board"], "part": pj["part"], "fclk_mhz": pj["fclk_mhz"],
                "build_dir": str(build_dir.resolve()), "samples": int(len(x))}
        bit, hwh = vivado / "output" / f"{name}.bit", vivado / "output" / f"{name}.hwh"
        info["throughput"] = board_throughput(build_dir, layout, pj, bit.is_file() and hwh.is_file())
        if bit.is_file() and hwh.is_file():
            (work / "bitfile").mkdir()
            shutil.copyfile(bit, work / "bitfile" / bit.name)
            shutil.copyfile(hwh, work / "bitfile" / hwh.name)
            for rpt in ("utilization.rpt", "timing_summary.rpt"):
                if (vivado / "output" / rpt).is_file():
                    shutil.copyfile(vivado / "output" / rpt, work / "bitfile" / rpt)
            info["bitfile"] = True
        else:
            info["bitfile"] = False
        drv = work / "pynq_driver"
        drv.mkdir()
        for f in ("__init__.py", "driver.py", "validate.py"):
            shutil.copyfile(DRIVER_DIR / f, drv / f)
        shutil.copyfile(vivado / "accel.json", drv / "accel.json")
        (work / "sample").mkdir()
        # int16 holds every input the accelerator takes (<= 8-bit elements) at a quarter of int64
        arrays = {"x": x.astype(np.int16 if layout["input"]["element_bits"] <= 15 else np.int64), "expected": expected}
        if y is not None:
            arrays["y"] = y
        np.savez(work / "sample" / "sample.npz", **arrays)
        if verify:
            r = verify_with_sim(vivado, x, expected)
            info["sim_check"] = {k: v for k, v in r.items() if k != "outputs"}
            if not r["identical"]:
                raise BnnforgeError(f"{build_dir}: the driver on the simulated RTL gave {r['mismatches']} outputs "
                                    f"different from the golden model")
        sim_note = (f"\nChecked before packaging: this driver, backed by the simulated RTL (Verilator), "
                    f"reproduced all {len(x)} expected outputs exactly.\n" if verify else "")
        (work / "README.md").write_text(PACKAGE_README.format(
            name=name, board=pj["board"], dirname=out.name, n=len(x), elements=layout["input"]["elements"],
            shape=", ".join(map(str, layout["input"]["shape"])),
            bit_note="copied from the Vivado run" if info["bitfile"] else
            "NOT included: no Vivado run yet; run `bnnforge vivado <build> --run` and package again",
            y_note=" and true labels `y`" if y is not None else "",
            input_text=layout["input"]["kind"] + f", {layout['input']['element_bits']} bit(s) per element",
            sim_note=sim_note, throughput_note=info["throughput"]["text"]))
        (work / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(work, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if archive:
        tgz = out.parent / (out.name + ".tar.gz")
        with tarfile.open(tgz, "w:gz") as t:
            t.add(out, arcname=out.name)
        info["archive"] = str(tgz)
    info["path"] = str(out)
    return info
