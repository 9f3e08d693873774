"""Run a user's dataset through the generated RTL of a finished build.

Images are quantized on the host exactly as the build's `rtlsim` step and the board
package do (the exported model's own input quantizer, `sim.golden.quantize_inputs`),
executed by the golden model on the hardware-layer graph, and simulated with the
compiled bulk harness (`sim.bulk.run_network_bulk`); every output beat is compared
bit-exactly with the golden model's.

The dataset is simulated in chunks so that progress can be shown; each chunk starts
from reset, so the measured cycles per frame are the steady state within the chunks
(the mean distance between frame ends over each chunk's second half, pooled).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from bnnforge.errors import BnnforgeError
from bnnforge.hw.throughput import throughput

DEFAULT_CHUNK = 256


def _load_array(value, what: str) -> np.ndarray:
    """An array given as such or as the path of a .npy file."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (str, Path)):
        path = Path(value)
        if path.suffix.lower() != ".npy":
            raise BnnforgeError(f"{path}: {what} must be a .npy file (numpy.save)")
        if not path.is_file():
            raise BnnforgeError(f"{path}: {what} file not found")
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise BnnforgeError(f"{path}: cannot read {what} ({str(e).splitlines()[0][:200]})") from None
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as e:
        raise BnnforgeError(f"{what}: not an array ({e})") from None


def _name(value, what: str) -> str:
    return str(value) if isinstance(value, (str, Path)) else what


def load_build(build_dir) -> dict:
    """The pieces of a finished build that simulation needs; a clear error when one is missing."""
    import onnx

    build = Path(build_dir)
    if not build.is_dir():
        raise BnnforgeError(f"{build}: build directory not found")
    manifest_path = build / "rtl" / "manifest.json"
    if not manifest_path.is_file():
        raise BnnforgeError(f"{manifest_path}: not found (run `bnnforge build` with the codegen step first)")
    final = build / "final_model.onnx"
    if not final.is_file():
        raise BnnforgeError(f"{final}: not found (not a bnnforge build directory)")
    streamlined = sorted((build / "intermediate_models").glob("*_streamline.onnx"))
    if not streamlined:
        raise BnnforgeError(f"{build / 'intermediate_models'}: no streamlined model to quantize images with")
    try:
        manifest = json.loads(manifest_path.read_text())
        hw_model = onnx.load(str(final))
        first = onnx.load(str(streamlined[0]))
    except (OSError, ValueError) as e:
        raise BnnforgeError(f"{build}: unreadable build file ({str(e).splitlines()[0][:200]})") from None
    from bnnforge.hw.hwgraph import get_meta

    prefix = get_meta(first, "host_prefix")
    if prefix is None:
        raise BnnforgeError(f"{streamlined[0]}: no host input quantizer (not streamlined by bnnforge)")
    # images enter through the exported graph's input (e.g. NCHW), not the streamed layout
    host_input = onnx.load_from_string(bytes.fromhex(prefix)).graph.input[0]
    dims = [d.dim_value for d in host_input.type.tensor_type.shape.dim[1:]]
    return {"dir": build, "manifest": manifest, "hw_model": hw_model, "streamlined": first,
            "input_shape": tuple(dims)}


def _fit_shape(images: np.ndarray, want: tuple, name: str) -> np.ndarray:
    """Images [N, *want]; shapes that differ from it only by axes of size 1 (e.g.
    (N, 28, 28) for (N, 1, 28, 28)) are reshaped, anything else is refused."""
    if images.ndim < 1 or images.dtype.kind not in "biuf":
        raise BnnforgeError(f"{name}: images must be a numeric array [N, {', '.join(map(str, want))}], "
                            f"got dtype {images.dtype} shape {images.shape}")
    got = tuple(images.shape[1:])
    if got == want:
        return images
    if tuple(d for d in got if d != 1) == tuple(d for d in want if d != 1):
        return images.reshape((len(images),) + want)
    raise BnnforgeError(f"{name}: images of shape {tuple(images.shape)} do not fit the model's input "
                        f"[N, {', '.join(map(str, want))}]")


def _check_labels(labels: np.ndarray, n: int, name: str, num_classes: int | None) -> np.ndarray:
    if labels.dtype.kind not in "biuf":
        raise BnnforgeError(f"{name}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels
    if labels.ndim != 1:
        raise BnnforgeError(f"{name}: labels must be one-dimensional [N], got shape {labels.shape}")
    if len(labels) != n:
        raise BnnforgeError(f"{name}: {len(labels)} labels for {n} images")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
        raise BnnforgeError(f"{name}: labels must be whole numbers")
    labels = labels.astype(np.int64)
    if n and (labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes)):
        raise BnnforgeError(f"{name}: labels outside 0..{(num_classes or 0) - 1}")
    return labels


def simulate(build_dir, images, labels=None, *, limit: int | None = None, chunk_size: int = DEFAULT_CHUNK,
             progress: bool = False, seed: int = 0, ray: bool = False, address: str | None = None,
             workers: int | None = None) -> dict:
    """Simulate `images` (an array [N, C, H, W] of floats as the model was trained on,
    or the path of a .npy file) through the RTL of `build_dir`.

    Returns a JSON-serializable dict: frames, frames_mismatching (frames whose RTL
    output differs from the golden model in any bit), rtl_beat_mismatches,
    tlast_correct, cycles_per_frame_measured / _ideal, latency_cycles_first_frame,
    fps_at_fclk (at the target clock), throughput (frames/s at the build's measured
    clock, or at the target clock marked as assumed: hw/throughput.py), wall times, with labels accuracy_golden and accuracy_rtl, and
    predictions_rtl (the RTL's labels) when the build ends in a label select.

    With `ray` (or an `address`) the chunks are Ray tasks over `workers` local
    processes or the cluster at `address`; every chunk starts from reset either way,
    so the figures are the same as those of a serial run.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise BnnforgeError(f"--limit: must be a positive integer, got {limit!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise BnnforgeError(f"--chunk (chunk_size): must be a positive integer, got {chunk_size!r}")
    use_ray = bool(ray) or address is not None
    if use_ray:
        from bnnforge.cluster import prepare, ray_session

        prepare("--address" if address is not None and not ray else "--ray", address, workers)
    elif workers is not None:
        raise BnnforgeError("--workers: only with --ray")
    b, x, y, img_name = _load_inputs(build_dir, images, labels, limit)
    if not use_ray:
        return _simulate(b, x, y, img_name, chunk_size, progress, seed, False)
    with ray_session(address, workers):   # joined (or started) before any simulation
        return _simulate(b, x, y, img_name, chunk_size, progress, seed, True)


def _load_inputs(build_dir, images, labels, limit):
    """The build and the checked images and labels (cut to `limit`)."""
    b = load_build(build_dir)
    man = b["manifest"]
    img_name, lab_name = _name(images, "images"), _name(labels, "labels")
    x = _fit_shape(_load_array(images, "images"), b["input_shape"], img_name)
    if not np.all(np.isfinite(x)):
        raise BnnforgeError(f"{img_name}: images hold NaN or infinite values")
    y = None
    if labels is not None:
        y = _check_labels(_load_array(labels, "labels"), len(x), lab_name, man.get("num_outputs"))
    if limit is not None:
        x, y = x[:limit], (y[:limit] if y is not None else None)
    if len(x) == 0:
        raise BnnforgeError(f"{img_name}: no images")
    return b, x, y, img_name


def _simulate(b: dict, x: np.ndarray, y, img_name: str, chunk_size: int, progress: bool, seed: int,
              use_ray: bool) -> dict:
    from tqdm import tqdm

    from bnnforge.sim.bulk import BulkSimError, build_bulk

    man = b["manifest"]
    n = len(x)
    obpf = man["out_beats_per_frame"]
    golden_all, frame_ok, preds = [], np.zeros(n, dtype=bool), []
    beat_mismatches, tlast_ok, cycles_total = 0, True, 0
    span, intervals, latency = 0.0, 0, None
    sim_wall = quant_wall = 0.0
    t_start = time.perf_counter()
    # one update per chunk: show each (tqdm would skip updates closer than 0.1 s)
    bar = tqdm(total=n, desc="rtl sim", unit="frame", disable=not progress, leave=False, mininterval=0, miniters=1)
    results = None
    try:
        bar.set_postfix_str("compiling the RTL (Verilator; cached)")
        try:
            build_bulk(b["dir"] / "rtl")   # once, here; the workers find it in the cache
        except BulkSimError as e:
            raise BnnforgeError(f"{b['dir'] / 'rtl'}: {str(e).splitlines()[0]}") from None
        bar.set_postfix_str("")
        starts = list(range(0, n, chunk_size))
        ray_info: dict = {}
        results = (_ray_chunks(b, x, starts, chunk_size, seed, img_name, ray_info) if use_ray else
                   (_simulate_chunk(b["dir"] / "rtl", b["streamlined"], b["hw_model"], x[lo:lo + chunk_size], lo,
                                    seed, img_name) for lo in starts))
        for lo, r in zip(starts, results):
            chunk_n = min(chunk_size, n - lo)
            if "error" in r:
                raise BnnforgeError(r["error"])
            quant_wall += r["quant_wall"]
            sim_wall += r["sim_wall"]
            golden = r["golden"]
            golden_all.append(golden)
            got, want = r["outputs"], _expected(golden, man)
            for f in range(chunk_n):
                frame_ok[lo + f] = got[f * obpf:(f + 1) * obpf] == want[f * obpf:(f + 1) * obpf]
            if man["label_select"]:
                preds.extend(int(v) for v in got[:chunk_n])
                preds.extend([-1] * (chunk_n - len(got)))   # missing outputs predict nothing
            beat_mismatches += r["rtl_mismatches"]
            tlast_ok &= bool(r["tlast_correct"])
            cycles_total += r["cycles_total"]
            if latency is None:
                latency = r["latency_cycles_first_frame"]
            m = chunk_n - 1 - chunk_n // 2     # the intervals steady_cycles_per_frame averages
            if m > 0 and math.isfinite(r["cycles_per_frame_measured"]):
                span += r["cycles_per_frame_measured"] * m
                intervals += m
            bar.update(chunk_n)
    finally:
        bar.close()
        if use_ray and results is not None:
            results.close()   # on an error: the chunks not yet run are cancelled

    golden = np.concatenate(golden_all)
    cpf = span / intervals if intervals else float("nan")
    fclk = _fclk_mhz(b["dir"])
    out = {
        "build": str(b["dir"].resolve()),
        "top": man["top"],
        "frames": n,
        "frames_mismatching": int(np.sum(~frame_ok)),
        "rtl_beat_mismatches": int(beat_mismatches),
        "tlast_correct": bool(tlast_ok),
        "cycles_total": int(cycles_total),
        "cycles_per_frame_measured": round(cpf, 3) if math.isfinite(cpf) else None,
        "cycles_per_frame_ideal": man["ideal_cycles_per_frame"],
        "latency_cycles_first_frame": latency,
        "fclk_mhz": fclk,
        "fps_at_fclk": round(fclk * 1e6 / cpf, 1) if math.isfinite(cpf) and cpf > 0 else None,
        # frames/s at the clock the build measured (report/timing.json), else at fclk marked as assumed
        "throughput": throughput(cpf, b["dir"], fclk) if math.isfinite(cpf) and cpf > 0 else None,
        "chunk_size": chunk_size,
        "chunks": math.ceil(n / chunk_size),
        "quantize_golden_seconds": round(quant_wall, 3),
        "sim_seconds": round(sim_wall, 3),
        "total_seconds": round(time.perf_counter() - t_start, 3),
    }
    if use_ray:
        out["ray_workers"] = ray_info.get("workers", 0)
    golden_pred = golden if man["label_select"] else golden.reshape(n, -1).argmax(axis=1)
    if man["label_select"]:
        out["predictions_rtl"] = preds
    if y is not None:
        out["accuracy_golden"] = float(np.mean(golden_pred == y))
        if man["label_select"]:
            out["accuracy_rtl"] = float(np.mean(np.array(preds) == y))
        else:
            # accumulators out: a frame the RTL reproduced bit for bit has the golden
            # prediction; a differing frame is counted wrong
            out["accuracy_rtl"] = float(np.mean(frame_ok & (golden_pred == y)))
        out["labels"] = int(len(y))
    return out


def _simulate_chunk(rtl_dir: Path, streamlined, hw_model, chunk: np.ndarray, lo: int, seed: int,
                    img_name: str) -> dict:
    """One chunk from reset: quantized, run by the golden model and by the RTL. A
    failure is returned as {"error": one line} (the same in a Ray worker)."""
    from bnnforge.sim.bulk import BulkSimError, run_network_bulk
    from bnnforge.sim.golden import execute, quantize_inputs

    t0 = time.perf_counter()
    try:
        q = quantize_inputs(streamlined, chunk)
    except Exception as e:  # qonnx raises plain Exception on what it cannot execute
        return {"error": f"{img_name}: the model's input quantizer failed on images "
                         f"{lo}..{lo + len(chunk) - 1} ({str(e).splitlines()[0][:200]})"}
    golden = np.asarray(execute(hw_model, q), dtype=np.int64)
    quant_wall = time.perf_counter() - t0
    try:
        res = run_network_bulk(rtl_dir, q, golden, seed=seed)
    except BulkSimError as e:
        return {"error": f"{rtl_dir}: {str(e).splitlines()[0]}"}
    keep = ("outputs", "rtl_mismatches", "tlast_correct", "cycles_total", "latency_cycles_first_frame",
            "cycles_per_frame_measured")
    return {"golden": golden, "quant_wall": quant_wall, "sim_wall": res["sim_wall_seconds"],
            **{k: res[k] for k in keep}}


# --- sharding over Ray ------------------------------------------------------------------

def _rtl_payload(rtl: Path, manifest: dict) -> dict:
    """What a worker needs to rebuild the RTL folder on its own node: the Verilog the
    manifest lists, the memory images read at run time, the manifest."""
    names = sorted({*manifest["files"], *(p.name for p in rtl.glob("*.mem")), "manifest.json"})
    return {name: (rtl / name).read_bytes() for name in names if (rtl / name).is_file()}


def _ray_chunks(b: dict, x: np.ndarray, starts: list, chunk_size: int, seed: int, img_name: str, info: dict):
    """The chunks as Ray tasks (in the caller's Ray session), yielded in order. The build travels once through the
    object store; each worker unpacks it into its node's cache (same sources, same
    Verilator cache key, so the harness compiled above is reused on this machine).
    `info` gets the number of distinct worker processes that ran chunks."""
    import hashlib

    from bnnforge.cluster import TaskFailed, run_tasks

    payload = _rtl_payload(b["dir"] / "rtl", b["manifest"])
    digest = hashlib.sha256()
    for name, data in sorted(payload.items()):
        digest.update(name.encode() + b"\0" + data)
    shared = {"rtl": payload, "rtl_key": digest.hexdigest()[:16], "top": b["manifest"]["top"],
              "streamlined": b["streamlined"].SerializeToString(), "hw_model": b["hw_model"].SerializeToString(),
              "seed": seed, "img_name": img_name}
    jobs = [{"lo": lo, "x": x[lo:lo + chunk_size]} for lo in starts]
    pids = set()
    for _, r in run_tasks(_ray_chunk_task, jobs, shared=(shared,), ordered=True):
        if isinstance(r, TaskFailed):
            r = {"error": f"{img_name}: a simulation task failed ({r.message})"}
        pids.add(r.pop("worker", None))
        info["workers"] = len(pids - {None})
        yield r


_unpacked: dict[str, tuple] = {}


def _ray_chunk_task(job: dict, shared: dict) -> dict:
    import os

    import onnx

    from bnnforge.resources import cache_dir
    from bnnforge.sim.runner import file_lock

    key = shared["rtl_key"]
    if key not in _unpacked:
        root = cache_dir("ray_rtl")
        rtl = root / f"{shared['top']}_{key}"
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root / f"{shared['top']}_{key}.lock"):
            if not (rtl / ".complete").is_file():
                rtl.mkdir(parents=True, exist_ok=True)
                for name, data in shared["rtl"].items():
                    (rtl / Path(name).name).write_bytes(data)
                (rtl / ".complete").write_text("ok\n")
        _unpacked[key] = (rtl, onnx.load_from_string(shared["streamlined"]),
                          onnx.load_from_string(shared["hw_model"]))
    rtl, streamlined, hw_model = _unpacked[key]
    r = _simulate_chunk(rtl, streamlined, hw_model, job["x"], job["lo"], shared["seed"], shared["img_name"])
    r["worker"] = os.getpid()
    return r


def _expected(golden: np.ndarray, manifest: dict) -> list[int]:
    from bnnforge.sim.network import expected_beats

    return expected_beats(golden, manifest)


def _fclk_mhz(build: Path) -> float:
    est = build / "report" / "estimates.json"
    try:
        return float(json.loads(est.read_text())["fclk_mhz"])
    except (OSError, ValueError, KeyError):
        return 100.0


def format_summary(r: dict) -> str:
    lines = [f"{r['frames']} frames through the RTL of {r['top']} (Verilator, bulk harness)"]
    if "accuracy_rtl" in r:
        lines.append(f"accuracy on {r['labels']} labels: RTL {r['accuracy_rtl']:.4f}, golden {r['accuracy_golden']:.4f}")
    lines.append(f"mismatches against the golden model: {r['frames_mismatching']} frames "
                 f"({r['rtl_beat_mismatches']} output beats); TLAST {'correct' if r['tlast_correct'] else 'WRONG'}")
    cpf = r["cycles_per_frame_measured"]
    lines.append(f"cycles per frame: measured {cpf if cpf is not None else 'n/a'}, ideal {r['cycles_per_frame_ideal']}"
                 + (f" -> {r['throughput']['text']}" if r.get("throughput") else "")
                 + f"; first frame out after {r['latency_cycles_first_frame']} cycles")
    lines.append(f"simulated in {r['sim_seconds']:.2f} s (+ {r['quantize_golden_seconds']:.2f} s quantization and "
                 f"golden model), {r['chunks']} chunk(s) of up to {r['chunk_size']} frames"
                 + (f" on {r['ray_workers']} Ray worker process(es)" if "ray_workers" in r else ""))
    return "\n".join(lines)
