"""Fast bulk RTL simulation of a generated network: a static C++ harness
(sim/harness/bulk_main.cpp) compiled by Verilator against the generated top, no
per-cycle Python.

`run_network_bulk` takes the same inputs and returns the same figures as
`sim.network.run_network` (the cocotb path). The harness mirrors the cocotb
testbench cycle for cycle and draws its input gaps and output stalls from the
same pseudo-random stream (Python's `random.Random(seed)`), so for the same seed
both paths see the same stimulus: same output beats, same output cycles.

Builds are cached under ``build/bulk_cache/<top>_<hash>`` (or
``$BNNFORGE_BULK_CACHE``), keyed by the Verilog sources, the harness, Verilator
and the flags; memory images are read at run time by ``$readmemh`` and are not
part of the key. A file lock lets parallel pytest workers share one build.

Mid-stream reset (``reset_at_cycle``): at that cycle (counted like
``cycles_total``, from the first cycle after the initial reset) ``ap_rst_n`` is
held low for ``RESET_CYCLES`` clock edges with the input idle and the output not
ready; then the stream resumes at the start of the first frame none of whose
input beats had been accepted before the reset (``restart_frame``). Frames
before it whose input had started are abandoned. The comparison then means: the
output beats seen before the reset must equal the same number of leading golden
beats (frames completed before the reset are exact; a frame cut by the reset may
be partial), and after the reset the design must produce exactly the golden
beats of frames ``restart_frame .. N-1``, in order, with TLAST counted afresh.
``outputs`` holds every beat (before + after); the extra ``reset`` entry of the
result gives ``cycle``, ``restart_frame``, ``beats_before_reset``,
``frames_abandoned``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from bnnforge.sim import _objcache, model_cache
from bnnforge.sim.network import (count_mismatches, expected_beats, frame_beats, steady_cycles_per_frame,
                         tlast_pattern_ok)
from bnnforge.sim.runner import file_lock
from bnnforge.resources import cache_dir, package_path
from bnnforge.sim.verilator_env import setup_env, verilator_bin

HARNESS = package_path("bnnforge.sim", "harness", "bulk_main.cpp")
BULK_ROOT = cache_dir("bulk", "BNNFORGE_BULK_CACHE")
RESET_CYCLES = 4

# Same lint/X settings as the cocotb builds (sim/runner.py), so both paths simulate
# the same model; the C++ is optimised for run time, not compile time.
_VERILATE_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "unique", "--x-initial", "unique")
# CFG_CXXFLAGS_PCH_I: the wheel's verilated.mk leaves it empty (see sim/runner.py).
_MAKE_VARS = ("OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2", "CFG_CXXFLAGS_PCH_I=-include")

__all__ = ["run_network_bulk", "build_bulk", "BulkSimError"]


class BulkSimError(RuntimeError):
    """The bulk harness could not be built, or the simulation did not finish."""


def _key(sources: list[Path], top: str) -> str:
    h = hashlib.sha256()
    h.update(str(verilator_bin()).encode())
    h.update((verilator_bin().parent.parent / "include" / "verilated.cpp").read_bytes())
    for s in sources:
        h.update(s.name.encode())
        h.update(s.read_bytes())
    h.update(top.encode())
    h.update(HARNESS.read_bytes())
    h.update(json.dumps([list(_VERILATE_ARGS), list(_MAKE_VARS)]).encode())
    return h.hexdigest()[:16]

_RUNTIME_OBJS = ("verilated", "verilated_threads")


def _runtime_cache(root: Path) -> Path:
    h = hashlib.sha256()
    h.update(str(verilator_bin()).encode())
    h.update((verilator_bin().parent.parent / "include" / "verilated.cpp").read_bytes())
    h.update(json.dumps([list(_VERILATE_ARGS), list(_MAKE_VARS)]).encode())
    return root / f"_runtime_{h.hexdigest()[:12]}"


def _restore_runtime(cache: Path, bdir: Path) -> None:
    _objcache.restore(cache, bdir, _RUNTIME_OBJS)


def _save_runtime(cache: Path, bdir: Path) -> None:
    _objcache.save(cache, bdir, _RUNTIME_OBJS)


def _entry(rtl_dir: Path, build_root: str | Path | None) -> tuple[Path, str, list[Path]]:
    manifest = json.loads((rtl_dir / "manifest.json").read_text())
    top = manifest["top"]
    sources = [rtl_dir / f for f in manifest["files"]]
    root = Path(build_root) if build_root is not None else BULK_ROOT
    return root / f"{top}_{_key(sources, top)}", top, sources


def build_bulk(rtl_dir: str | Path, build_root: str | Path | None = None) -> Path:
    """Compile (or reuse) the bulk harness for the design in rtl_dir; returns the binary.
    The build may be evicted once this returns unless the caller holds
    ``model_cache.in_use`` on its folder (run_network_bulk does)."""
    rtl_dir = Path(rtl_dir).resolve()
    bdir, top, sources = _entry(rtl_dir, build_root)
    root = bdir.parent
    exe = bdir / "bulk_sim"
    with file_lock(root / f"{bdir.name}.lock"):
        if (bdir / model_cache.STAMP).exists() and exe.exists():
            model_cache.mark_used(bdir)
            return exe
        bdir.mkdir(parents=True, exist_ok=True)
        env = setup_env(dict(os.environ))
        # verilator --cc --exe, then the make that --build would run, with the
        # design-independent runtime objects restored from / saved to a shared cache
        verilate = [str(verilator_bin()), "--cc", "--exe", "--prefix", "Vtop",
                    "--top-module", top, "--Mdir", str(bdir), "-o", "bulk_sim",
                    *_VERILATE_ARGS, *[str(s) for s in sources], str(HARNESS)]
        make = ["make", "-C", str(bdir), "-f", "Vtop.mk", "-j", "2", *_MAKE_VARS]
        log = []
        for step, cmd in (("verilate", verilate), ("restore", None), ("make", make), ("save", None)):
            if cmd is None:
                (_restore_runtime if step == "restore" else _save_runtime)(_runtime_cache(root), bdir)
                continue
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            log.append(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
            (bdir / "build.log").write_text("\n".join(log))
            if proc.returncode != 0:
                raise BulkSimError(f"bulk harness build for {top} failed at {step} (rc {proc.returncode}):\n"
                                   f"{(proc.stdout + proc.stderr)[-4000:]}")
        if not exe.exists():
            raise BulkSimError(f"bulk harness build for {top} made no {exe}")
        model_cache.record_size(bdir)
        (bdir / model_cache.STAMP).write_text("ok\n")
    defaults = model_cache.default_roots()
    model_cache.evict(defaults if root in defaults else [root], keep=[bdir])
    return exe


def _max_cycles(manifest: dict, ideal: int, frames: int, n_beats: int, p_gap: float, p_stall: float) -> int:
    """Generous cycle budget: the slowest of compute, gapped input and stalled output,
    three times over, plus the fill latency."""
    slow_in = manifest["in_beats_per_frame"] / max(1e-3, 1.0 - p_gap)
    slow_out = manifest["out_beats_per_frame"] / max(1e-3, 1.0 - p_stall)
    per_frame = max(ideal, slow_in, slow_out)
    fill = sum(int(st.get("cycles", 0)) for st in manifest.get("stages") or [])
    return 2000 + int(3 * per_frame * frames) + 10 * n_beats + fill


def _parse_output(path: Path) -> tuple[dict, list[tuple[int, int, int]], dict | None]:
    status, reset, beats = None, None, []
    with open(path) as fh:
        for line in fh:
            if line.startswith("#"):
                f = line[1:].split()
                if f[0] == "status":
                    status = {"status": f[1], **{f[k]: int(f[k + 1]) for k in range(2, len(f) - 1, 2)}}
                elif f[0] == "reset":
                    reset = {f[k]: int(f[k + 1]) for k in range(1, len(f) - 1, 2)}
                continue
            c, l, d = line.split()
            beats.append((int(c), int(l), int(d, 16)))
    if status is None:
        raise BulkSimError(f"bulk harness output {path} has no status line (crashed?)")
    return status, beats, reset


def run_network_bulk(rtl_dir: str | Path, q_inputs: np.ndarray, golden_out: np.ndarray, *,
                     p_gap: float = 0.0, p_stall: float = 0.0, seed: int = 0,
                     reset_at_cycle: int | None = None) -> dict:
    """Simulate the generated design in rtl_dir with the compiled bulk harness on
    q_inputs and compare every output beat with the golden model's. Same result
    keys as sim.network.run_network (plus ``reset`` when reset_at_cycle is given)."""
    rtl_dir = Path(rtl_dir).resolve()
    manifest = json.loads((rtl_dir / "manifest.json").read_text())
    beats = frame_beats(q_inputs, manifest["in_simd"], manifest["in_element_bits"])
    expected = expected_beats(golden_out, manifest)
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if reset_at_cycle is not None and reset_at_cycle < 0:
        raise ValueError("reset_at_cycle must be >= 0")

    with model_cache.in_use(_entry(rtl_dir, None)[0]):
        return _run_bulk(rtl_dir, manifest, beats, expected, len(q_inputs), p_gap, p_stall, seed, reset_at_cycle)


def _run_bulk(rtl_dir: Path, manifest: dict, beats: list, expected: list, frames: int, p_gap: float,
              p_stall: float, seed: int, reset_at_cycle: int | None) -> dict:
    ideal = manifest["ideal_cycles_per_frame"]
    in_bpf, out_bpf = manifest["in_beats_per_frame"], manifest["out_beats_per_frame"]
    t0 = time.perf_counter()
    exe = build_bulk(rtl_dir)
    build_wall = time.perf_counter() - t0

    work = rtl_dir / "rtlsim"
    work.mkdir(exist_ok=True)
    tag = f"bulk_{os.getpid()}"
    in_file, out_file = work / f"{tag}_in.hex", work / f"{tag}_out.txt"
    in_file.write_text("".join(f"{b:x}\n" for b in beats))
    if out_file.exists():
        out_file.unlink()
    max_cycles = _max_cycles(manifest, ideal, frames, len(beats), p_gap, p_stall)
    cmd = [str(exe), str(in_file), str(out_file), str(in_bpf), str(out_bpf), str(len(expected)),
           repr(float(p_gap)), repr(float(p_stall)), str(int(seed)), str(max_cycles),
           str(-1 if reset_at_cycle is None else int(reset_at_cycle)), str(RESET_CYCLES)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=rtl_dir, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3) or not out_file.exists():
        raise BulkSimError(f"bulk simulation of {manifest['top']} failed (rc {proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-4000:]}")
    status, out, reset = _parse_output(out_file)
    in_file.unlink()
    out_file.unlink()
    if status["status"] != "ok":
        raise BulkSimError(f"bulk simulation of {manifest['top']} timed out after {status['cycles']} cycles: "
                           f"{status['beats_in']}/{len(beats)} beats in, {status['beats_out']} out "
                           f"(expected {len(expected)})")

    got = [d for _, _, d in out]
    lasts = [l for _, l, _ in out]
    cycles_out = [c for c, _, _ in out]
    reset_info = None
    if reset is not None:
        n_before = reset["out_before"]
        restart_frame = reset["restart_beat"] // in_bpf
        expected = expected[:n_before] + expected[restart_frame * out_bpf:]
        tlast_ok = tlast_pattern_ok(lasts[:n_before], out_bpf) and tlast_pattern_ok(lasts[n_before:], out_bpf)
        # steady state from the frames after the reset only
        frame_end = [c for c, l in zip(cycles_out[n_before:], lasts[n_before:]) if l]
        frame_end_all = [c for c, l in zip(cycles_out, lasts) if l]
        reset_info = {"cycle": reset["cycle"], "restart_frame": restart_frame, "beats_before_reset": n_before,
                      "frames_abandoned": restart_frame - sum(lasts[:n_before])}
    else:
        tlast_ok = tlast_pattern_ok(lasts, out_bpf)
        frame_end = frame_end_all = [c for c, l in zip(cycles_out, lasts) if l]
    n_bad, first_bad = count_mismatches(got, expected, status["extra"])
    res = {
        "frames": frames,
        "output_beats": len(got),
        "rtl_mismatches": n_bad,
        "first_mismatches": first_bad,
        "tlast_correct": tlast_ok,
        "extra_beats": status["extra"],
        "cycles_total": status["cycles"],
        "latency_cycles_first_frame": frame_end_all[0] if frame_end_all else None,
        "cycles_per_frame_measured": steady_cycles_per_frame(frame_end),
        "cycles_per_frame_ideal": ideal,
        "sim_build_seconds": round(build_wall, 3),
        "sim_wall_seconds": round(wall, 3),
        "sim_frames_per_second": frames / wall if wall > 0 else math.inf,
        "sim_cycles_per_second": status["cycles"] / wall if wall > 0 else math.inf,
        "outputs": got,
        "labels_rtl": got if manifest["label_select"] else None,
    }
    if reset_info is not None:
        res["reset"] = reset_info
    return res
