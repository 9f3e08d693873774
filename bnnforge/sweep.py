"""Design-space sweeps: many candidate builds of one model (or of one training spec),
each a Ray task (bnnforge/cluster.py), collected in a table (OUT/results.csv, .json), a
Pareto plot (OUT/pareto.png) and one HTML page of both (OUT/results.html).

A sweep file (YAML)::

    model:                       # one of: an exported QONNX file ...
      onnx: runs/sibnn/model.onnx
    # model: {train: {topology: digits_mlp, dataset: digits, epochs: 5, seed: 0}}
    # model: {train: {dataset: digits, epochs: 5}}   with `method` in the space: one training per candidate
    space:                       # every axis a list of values
      target_cycles: [16, 32, 64]          # or: folding: [a.json, {MVTU_0: {PE: 4, SIMD: 8}}]
      method: [sibnn, margin]              # only with a training spec
      params: {window_hi: [1.0, 0.5]}      # method parameters
      act_bits: [1, 2]                     # the method parameter act_bits
    sampling: {mode: grid}                 # or {mode: random, count: 12, seed: 0}
    stages: {build: true, rtlsim: {images: 100, dataset: digits}, synth: false}
    clock_mhz: 100

Every candidate's result is stored in OUT/candidates/<key>.json (the key is a hash of
the candidate, the model source and the stages), so a rerun reads finished candidates
back. A failed candidate is a row with its one-line error.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import random
import tempfile
import time
from pathlib import Path

import yaml

from bnnforge.cluster import INSTALL_HINT, TaskFailed, check_address, ray_available
from bnnforge.errors import BnnforgeError

TOP_KEYS = {"model", "space", "sampling", "stages", "clock_mhz"}
MODEL_KEYS = {"onnx", "train"}
TRAIN_KEYS = {"topology", "method", "act", "dataset", "data_dir", "epochs", "seed"}
SPACE_KEYS = {"target_cycles", "folding", "method", "params", "act_bits"}
SAMPLING_KEYS = {"mode", "count", "seed"}
STAGE_KEYS = {"build", "accuracy", "rtlsim", "synth"}
RTLSIM_KEYS = {"images", "dataset", "data_dir"}
HW_STEPS = ["tidy_up", "streamline", "convert_to_hw"]

COLUMNS = ["key", "status", "error", "method", "params", "target_cycles", "folding",
           "cycles_per_frame_ideal", "cycles_per_frame_measured", "fps", "est_luts", "est_bram18",
           "yosys_lut", "yosys_ff", "yosys_bram18", "accuracy_golden", "golden_images", "accuracy", "rtl_mismatches",
           "images",
           "train_seconds", "build_seconds", "rtlsim_seconds", "synth_seconds", "total_seconds"]


class SweepSpec:
    """A validated sweep file: the model source, the candidate list, the stages."""

    def __init__(self, path: Path, model: dict, candidates: list[dict], stages: dict, clock_mhz: float):
        self.path, self.model, self.candidates, self.stages, self.clock_mhz = path, model, candidates, stages, clock_mhz


def _err(path, where: str, msg: str) -> BnnforgeError:
    return BnnforgeError(f"{path}: {where}: {msg}")


def _check_keys(path, where: str, data, known: set) -> dict:
    if not isinstance(data, dict):
        raise _err(path, where, "must be a mapping")
    for k in data:
        if k not in known:
            raise _err(path, where, f"unknown key {k!r}; known keys: {', '.join(sorted(known))}")
    return data


def _axis(path, name: str, values) -> list:
    if not isinstance(values, list) or not values:
        raise _err(path, f"space.{name}", "must be a non-empty list")
    return values


def load_sweep(path: str | Path) -> SweepSpec:
    """Parse and check a sweep file: every error is one line naming the field."""
    path = Path(path)
    if not path.is_file():
        raise BnnforgeError(f"{path}: sweep file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise BnnforgeError(f"{path}: cannot parse the sweep file: {str(e).splitlines()[0]}") from None
    data = _check_keys(path, "sweep", data, TOP_KEYS)
    if "model" not in data:
        raise _err(path, "model", "missing (an `onnx` path or a `train` spec)")
    model = _check_keys(path, "model", data["model"], MODEL_KEYS)
    if len(model) != 1:
        raise _err(path, "model", "give exactly one of `onnx` or `train`")
    if "onnx" in model:
        onnx_path = Path(str(model["onnx"]))
        if not onnx_path.is_absolute() and not onnx_path.exists():
            onnx_path = path.parent / onnx_path
        if not onnx_path.is_file():
            raise _err(path, "model.onnx", f"{model['onnx']}: file not found")
        model = {"onnx": str(onnx_path.resolve())}
    else:
        tr = dict(_check_keys(path, "model.train", model["train"], TRAIN_KEYS))
        tr.setdefault("dataset", "digits")
        tr.setdefault("seed", 0)
        if tr.get("epochs") is not None and (not isinstance(tr["epochs"], int) or tr["epochs"] < 1):
            raise _err(path, "model.train.epochs", f"{tr['epochs']!r} is not a positive integer")
        model = {"train": tr}

    space = _check_keys(path, "space", data.get("space", {}), SPACE_KEYS)
    axes: dict[str, list] = {}
    for name in ("target_cycles", "folding", "method", "act_bits"):
        if name in space:
            axes[name] = _axis(path, name, space[name])
    if "target_cycles" in axes and "folding" in axes:
        raise _err(path, "space", "give target_cycles or folding, not both")
    for v in axes.get("target_cycles", []):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _err(path, "space.target_cycles", f"{v!r} is not a positive integer")
    if "folding" in axes:
        axes["folding"] = [_load_folding(path, i, f) for i, f in enumerate(axes["folding"])]
    params = _check_keys(path, "space.params", space.get("params", {}), set(space.get("params", {}) or {}))
    for k, v in params.items():
        axes[f"params.{k}"] = _axis(path, f"params.{k}", v)
    method_axes = [a for a in axes if a in ("method", "act_bits") or a.startswith("params.")]
    if method_axes and "onnx" in model:
        raise _err(path, f"space.{method_axes[0]}", "needs a training spec (model.train), not an exported model")
    if "method" in axes or "method" in model.get("train", {}):
        from bnnforge.models.methods.registry import METHODS

        for m in axes.get("method", [model.get("train", {}).get("method")]):
            if m not in METHODS:
                raise _err(path, "space.method" if "method" in axes else "model.train.method",
                           f"unknown method {m!r}; methods: {', '.join(METHODS)}")
    elif method_axes:
        raise _err(path, f"space.{method_axes[0]}", "method parameters need a method (space.method or model.train.method)")

    sampling = _check_keys(path, "sampling", data.get("sampling", {"mode": "grid"}), SAMPLING_KEYS)
    mode = sampling.get("mode", "grid")
    if mode not in ("grid", "random"):
        raise _err(path, "sampling.mode", f"{mode!r}: grid or random")
    grid = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] if axes else []
    if mode == "random":
        count = sampling.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise _err(path, "sampling.count", f"{count!r}: a random sweep needs a count (integer >= 0)")
        rng = random.Random(sampling.get("seed", 0))
        grid = rng.sample(grid, min(count, len(grid)))
    elif set(sampling) - {"mode"}:
        raise _err(path, "sampling", "count/seed only with mode: random")
    candidates = [_candidate(c) for c in grid]
    if not candidates:
        raise _err(path, "space", "the candidate set is empty (no axis, or a random count of 0)")

    stages = _check_keys(path, "stages", data.get("stages", {}), STAGE_KEYS)
    if stages.get("build", True) is not True:
        raise _err(path, "stages.build", "every candidate is built (true)")
    if not isinstance(stages.get("synth", False), bool):
        raise _err(path, "stages.synth", f"{stages['synth']!r}: true or false")
    given = stages
    stages = {"build": True, "accuracy": None, "rtlsim": None, "synth": given.get("synth", False)}
    for name in ("accuracy", "rtlsim"):
        if not given.get(name):
            continue
        rs = dict(_check_keys(path, f"stages.{name}", given[name], RTLSIM_KEYS))
        if not isinstance(rs.get("images"), int) or isinstance(rs["images"], bool) or rs["images"] < 1:
            raise _err(path, f"stages.{name}.images", f"{rs.get('images')!r} is not a positive integer")
        rs.setdefault("dataset", model.get("train", {}).get("dataset", "digits"))
        rs.setdefault("data_dir", model.get("train", {}).get("data_dir") if "train" in model else None)
        stages[name] = rs
    clock = data.get("clock_mhz", 100.0)
    if not isinstance(clock, (int, float)) or isinstance(clock, bool) or clock <= 0:
        raise _err(path, "clock_mhz", f"{clock!r} is not a positive number")
    spec = SweepSpec(path, model, candidates, stages, float(clock))
    _check_foldings(spec)
    return spec


def _load_folding(path, i: int, f) -> dict:
    where = f"space.folding[{i}]"
    if isinstance(f, dict):
        return {"name": f"inline{i}", "folding": f}
    if not isinstance(f, str):
        raise _err(path, where, "a folding JSON path or an inline mapping")
    from bnnforge.finn_flows.config import load_folding
    from bnnforge.resources import folding_config

    fp = Path(f)
    for cand in (fp, path.parent / fp, folding_config(f)):
        if cand.is_file():
            return {"name": fp.stem, "folding": load_folding(cand)}
    raise _err(path, where, f"{f}: folding file not found (nor a shipped folding)")


def _candidate(c: dict) -> dict:
    out = {k: v for k, v in c.items() if not k.startswith("params.")}
    params = {k[len("params."):]: v for k, v in c.items() if k.startswith("params.")}
    if "act_bits" in out:
        params["act_bits"] = out.pop("act_bits")
    if params:
        out["params"] = params
    return out


def _reference_onnx(spec: SweepSpec, workdir: Path) -> Path | None:
    """The model the foldings are checked against: the given export, or a random-init
    export of the training topology (same layer shapes as the trained one)."""
    if "onnx" in spec.model:
        return Path(spec.model["onnx"])
    tr = spec.model["train"]
    if "method" in tr or any("method" in c for c in spec.candidates):
        return None  # the method's network exists only after training; checked per candidate
    import torch

    from bnnforge.models.export import export_qonnx
    from bnnforge.models.topologies import build_model

    m = build_model(tr.get("topology", "digits_mlp"), tr.get("act", "unipolar")).eval()
    with torch.no_grad():
        return export_qonnx(m, workdir / "reference.onnx", (1,) + tuple(m.spec.input_shape))


def _check_foldings(spec: SweepSpec) -> None:
    """Every explicit folding through the build's own folding step, before any work."""
    foldings = {c["folding"]["name"]: c["folding"] for c in spec.candidates if "folding" in c}
    if not foldings:
        return
    from bnnforge.api import build

    with tempfile.TemporaryDirectory(prefix="bnnforge-sweep-check-") as tmp:
        ref = _reference_onnx(spec, Path(tmp))
        if ref is None:
            return
        for i, f in enumerate(foldings.values()):
            try:
                build(ref, Path(tmp) / f"check{i}", folding=f["folding"], steps=HW_STEPS + ["apply_folding"])
            except BnnforgeError as e:
                raise BnnforgeError(f"{spec.path}: space.folding {f['name']}: {str(e).splitlines()[0]}") from None


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def candidate_key(spec: SweepSpec, cand: dict) -> str:
    source = {"onnx": _file_digest(spec.model["onnx"])} if "onnx" in spec.model else spec.model
    blob = json.dumps({"candidate": cand, "model": source, "stages": spec.stages, "clock": spec.clock_mhz},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- one candidate ------------------------------------------------------------------

def _sim_images(rs: dict):
    from bnnforge.models.data import load_dataset

    data = load_dataset(rs["dataset"], rs.get("data_dir"))
    x, y = data.test.x[: rs["images"]], data.test.y[: rs["images"]]
    return x, y


def evaluate_candidate(job: dict) -> dict:
    """Train (when the candidate has a method), build, simulate, synthesize one
    candidate; returns its row. Never raises for a candidate's own failure."""
    t_start = time.perf_counter()
    cand, out, key = job["candidate"], Path(job["out"]), job["key"]
    with open(out / "attempts.log", "a") as log:
        log.write(f"{key} pid={os.getpid()} t={time.time():.3f}\n")
    _fault_injection(key, out)
    row = {"key": key, "status": "ok", "error": "", "method": cand.get("method", job["model"].get("train", {}).get("method")),
           "params": json.dumps(cand.get("params", {}), sort_keys=True) if cand.get("params") else "",
           "target_cycles": cand.get("target_cycles"), "folding": cand.get("folding", {}).get("name")}
    work = out / "work" / key
    try:
        row.update(_run_stages(job, work))
    except BnnforgeError as e:
        row.update(status="failed", error=str(e).splitlines()[0])
    except Exception as e:  # a candidate's crash is its row, not the sweep's end
        row.update(status="failed", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    row["total_seconds"] = round(time.perf_counter() - t_start, 2)
    return row


def _fault_injection(key: str, out: Path) -> None:
    """BNNFORGE_SWEEP_KILL_ONCE=DIR: the first attempt of each candidate kills its own
    worker process (a marker file per candidate in DIR); used to prove worker loss is
    retried."""
    marker_dir = os.environ.get("BNNFORGE_SWEEP_KILL_ONCE")
    if not marker_dir:
        return
    marker = Path(marker_dir) / key
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _run_stages(job: dict, work: Path) -> dict:
    import onnx

    from bnnforge.api import build, synthesize

    cand, stages, res = job["candidate"], job["stages"], {}
    model_path = job["model"].get("onnx") or job.get("trained_onnx")
    if model_path is None:  # a per-candidate training (method axis)
        from bnnforge.api import train

        tr = dict(job["model"]["train"])
        t0 = time.perf_counter()
        r = train(out=work / "train", method=cand.get("method", tr.get("method")), dataset=tr["dataset"],
                  data_dir=tr.get("data_dir"), epochs=tr.get("epochs"), seed=tr["seed"],
                  params=cand.get("params"), export=True)
        res["train_seconds"] = round(time.perf_counter() - t0, 2)
        res["accuracy_torch"] = r.get("test_acc")
        model_path = work / "train" / "model.onnx"
    steps = HW_STEPS + (["target_fps_parallelization"] if "target_cycles" in cand else []) + \
        ["apply_folding", "estimates", "codegen"]
    bdir = work / "build"
    summary = build(model_path, bdir, folding=cand["folding"]["folding"] if "folding" in cand else None,
                    target_cycles=cand.get("target_cycles"), steps=steps, name="sweep")
    res["build_seconds"] = summary["build_seconds"]
    est = json.loads((bdir / "report" / "estimates.json").read_text())
    res.update(cycles_per_frame_ideal=est["cycles_per_frame_ideal"], est_luts=est["est_luts_total"],
               est_bram18=est["est_bram18_total"])
    cycles = est["cycles_per_frame_ideal"]
    import numpy as np

    from bnnforge.sim.golden import execute, quantize_inputs

    streamlined = onnx.load(str(bdir / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(bdir / "final_model.onnx"))
    if stages.get("accuracy"):  # the golden (software) model of the built hardware graph
        x, y = _sim_images(stages["accuracy"])
        res.update(accuracy_golden=float(np.mean(execute(hw, quantize_inputs(streamlined, x)) == y)),
                   golden_images=int(len(y)))
    rs = stages.get("rtlsim")
    if rs:
        from bnnforge.sim.bulk import run_network_bulk

        x, y = _sim_images(rs)
        q = quantize_inputs(streamlined, x)
        golden = execute(hw, q)
        t0 = time.perf_counter()
        sim = run_network_bulk(bdir / "rtl", q, golden)
        res["rtlsim_seconds"] = round(time.perf_counter() - t0, 2)
        labels = np.array(sim["labels_rtl"])
        res.update(images=int(len(y)), rtl_mismatches=int(sim["rtl_mismatches"]),
                   accuracy=float(np.mean(labels == y)) if len(labels) == len(y) else None,
                   cycles_per_frame_measured=sim["cycles_per_frame_measured"])
        cycles = sim["cycles_per_frame_measured"]
        if sim["rtl_mismatches"] or not sim["tlast_correct"]:
            raise BnnforgeError(f"rtlsim: {sim['rtl_mismatches']} output beats differ from the golden model")
    res["fps"] = round(job["clock_mhz"] * 1e6 / cycles, 1)
    if stages.get("synth"):
        t0 = time.perf_counter()
        total = synthesize(bdir)["total"]
        res["synth_seconds"] = round(time.perf_counter() - t0, 2)
        res.update(yosys_lut=total.get("lut_total"), yosys_ff=total.get("ff"), yosys_bram18=total.get("bram18"))
    return res


# --- the sweep ----------------------------------------------------------------------

def _prepare_model(spec: SweepSpec, out: Path, say) -> dict:
    """A training spec without a method axis: train once, every candidate builds it."""
    model = dict(spec.model)
    if "train" in model and not any("method" in c for c in spec.candidates) and "method" not in model["train"]:
        tr = model["train"]
        onnx_path = out / "trained" / "model.onnx"
        if not onnx_path.is_file():
            from bnnforge.api import train

            say(f"training {tr.get('topology', 'digits_mlp')} on {tr['dataset']} once for every candidate")
            train(out=out / "trained", topology=tr.get("topology", "digits_mlp"), act=tr.get("act", "unipolar"),
                  dataset=tr["dataset"], data_dir=tr.get("data_dir"), epochs=tr.get("epochs"), seed=tr["seed"],
                  export=True)
        model["trained_onnx"] = str(onnx_path)
    return model


def run_sweep(sweep_file: str | Path, out: str | Path, *, address: str | None = None, workers: int | None = None,
              use_ray: bool = True, retry_failed: bool = False, progress: bool = True,
              say=print) -> dict:
    """Run (or resume) a sweep; returns {"rows", "computed", "reused", "table", "plot", "mode"}."""
    spec = load_sweep(sweep_file)
    if workers is not None and workers < 1:
        raise BnnforgeError(f"--workers {workers}: must be >= 1")
    if address is not None:
        if not use_ray or not ray_available():
            raise BnnforgeError(f"--address: needs Ray ({INSTALL_HINT})")
        check_address(address)
        from bnnforge.cluster import ray_session

        with ray_session(address, workers):   # joined before any work (a training, a build)
            return _run_sweep(spec, Path(out), address, workers, use_ray, retry_failed, progress, say)
    return _run_sweep(spec, Path(out), address, workers, use_ray, retry_failed, progress, say)


def _run_sweep(spec: SweepSpec, out: Path, address, workers, use_ray, retry_failed, progress, say) -> dict:
    store = out / "candidates"
    store.mkdir(parents=True, exist_ok=True)
    model = _prepare_model(spec, out, say)
    jobs, rows = [], {}
    for cand in spec.candidates:
        key = candidate_key(spec, cand)
        f = store / f"{key}.json"
        if f.is_file():
            row = json.loads(f.read_text())
            if row.get("status") == "ok" or not retry_failed:
                rows[key] = row
                continue
        jobs.append({"candidate": cand, "key": key, "out": str(out.resolve()), "model": model,
                     "trained_onnx": model.get("trained_onnx"), "stages": spec.stages, "clock_mhz": spec.clock_mhz})
    mode = "ray" if use_ray and ray_available() else "serial"
    if jobs and mode == "serial":
        say((f"Ray is not installed ({INSTALL_HINT}): " if use_ray else "")
            + f"running {len(jobs)} candidates serially")
    t0 = time.perf_counter()
    if jobs:
        done = _run_ray(jobs, address, workers, progress, say) if mode == "ray" else _run_serial(jobs, progress)
        for row in done:
            _store(store, row)
            rows[row["key"]] = row
    wall = time.perf_counter() - t0
    ordered = [rows[candidate_key(spec, c)] for c in spec.candidates]
    table = write_table(ordered, out)
    plot = pareto_plot(ordered, out / "pareto.png")
    table["html"] = write_html(ordered, out, spec, plot)
    return {"rows": ordered, "computed": len(jobs), "reused": len(ordered) - len(jobs), "mode": mode,
            "table": table, "plot": plot, "wall_seconds": round(wall, 2)}


def _store(store: Path, row: dict) -> None:
    tmp = store / f".{row['key']}.json.tmp"
    tmp.write_text(json.dumps(row, indent=2))
    os.replace(tmp, store / f"{row['key']}.json")


def _run_serial(jobs, progress):
    from tqdm import tqdm

    for job in tqdm(jobs, desc="sweep", unit="cand", disable=not progress):
        yield evaluate_candidate(job)


def _run_ray(jobs, address, workers, progress, say):
    from tqdm import tqdm

    from bnnforge.cluster import cluster_cpus, ray_session, run_tasks

    with ray_session(address, workers):
        say(f"{len(jobs)} candidates on Ray ({cluster_cpus()} CPUs)")
        bar = tqdm(total=len(jobs), desc="sweep", unit="cand", disable=not progress)
        # a candidate's own error is its row (evaluate_candidate never raises for it), so
        # only a lost worker is retried
        for i, row in run_tasks(evaluate_candidate, jobs):
            if isinstance(row, TaskFailed):
                row = {"key": jobs[i]["key"], "status": "failed", "error": row.message}
            bar.update(1)
            yield row
        bar.close()


# --- outputs ------------------------------------------------------------------------

def write_table(rows: list[dict], out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return {"csv": str(out / "results.csv"), "json": str(out / "results.json")}


def _plotted(rows: list[dict]) -> tuple[list[dict], list, str]:
    """The rows the Pareto plot shows, their LUT figures and where those come from."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("fps")]
    luts = [r["yosys_lut"] if r.get("yosys_lut") is not None else r["est_luts"] for r in ok]
    source = "Yosys" if all(r.get("yosys_lut") is not None for r in ok) else "estimated"
    return ok, luts, source


def _describe(row: dict) -> str:
    parts = [f"{k} {row[k]}" for k in ("method", "target_cycles", "folding") if row.get(k) not in (None, "")]
    if row.get("params"):
        parts.append(row["params"])
    return ", ".join(map(str, parts))


# (column, heading, digits for floats)
HTML_COLUMNS = [("key", "key", 0), ("status", "status", 0), ("method", "method", 0), ("params", "params", 0),
                ("target_cycles", "target cycles", 0), ("folding", "folding", 0),
                ("cycles_per_frame_ideal", "cycles / frame (ideal)", 0),
                ("cycles_per_frame_measured", "cycles / frame (RTL)", 1), ("fps", "frames/s", 0),
                ("est_luts", "est. LUT", 0), ("est_bram18", "est. BRAM18", 0), ("yosys_lut", "Yosys LUT", 0),
                ("yosys_ff", "Yosys FF", 0), ("yosys_bram18", "Yosys BRAM18", 0),
                ("accuracy_golden", "accuracy (golden)", 4), ("accuracy", "accuracy (RTL)", 4),
                ("rtl_mismatches", "RTL mismatches", 0), ("total_seconds", "seconds", 1)]


def write_html(rows: list[dict], out: Path, spec: SweepSpec, plot: str | None) -> str:
    """OUT/results.html: one self-contained page (the build report's style and helpers):
    the Pareto plot inline, every candidate's figures, the failed ones with their error."""
    from html import escape

    from bnnforge.finn_flows.report_html import _link, _num, _page, _png

    ok, luts, source = _plotted(rows)
    front = {ok[i]["key"] for i in pareto_front(list(zip(luts, [r["fps"] for r in ok])))}
    failed = [r for r in rows if r.get("status") != "ok"]
    title = f"bnnforge sweep: {spec.path.name}"
    stages = ", ".join(k for k in ("build", "accuracy", "rtlsim", "synth") if spec.stages.get(k))
    body = ["<style>tr.front td{background:#e7f6ec}</style>", f"<h1>{escape(title)}</h1>",
            f"<p>{len(rows)} candidates ({len(rows) - len(failed)} ok, {len(failed)} failed); stages: "
            f"{escape(stages)}; frames/s at {_num(spec.clock_mhz)} MHz. Candidates on the Pareto front "
            f"(fewest LUT for their frames/s, {escape(source)} LUT) are marked.</p>"]
    body.append("<h2>Pareto front</h2>")
    if plot:
        body.append(_png(Path(plot), f"LUT vs frames/s of {len(ok)} candidates, coloured by accuracy"))
    else:
        body.append('<p class="muted">No candidate finished, nothing to plot.</p>')
    # the columns some candidate has a figure for (a sweep without synthesis has no Yosys columns)
    columns = [(c, h, d) for c, h, d in HTML_COLUMNS
               if c in ("key", "status") or any(r.get(c) not in (None, "") for r in rows)]
    head = "".join(f'<th class="l">{escape(h)}</th>' if c in ("key", "status", "method", "params", "folding")
                   else f"<th>{escape(h)}</th>" for c, h, d in columns)
    body += ["<h2>Candidates</h2>", '<div style="overflow-x:auto">',
             f'<table id="candidates"><thead><tr>{head}<th class="l">Pareto</th></tr></thead><tbody>']
    for r in rows:
        cells = []
        for c, _, d in columns:
            v = r.get(c)
            if c == "status":
                cells.append(f'<td class="l"><span class="{"ok" if v == "ok" else "bad"}">{escape(str(v))}</span></td>')
            elif c in ("key", "method", "params", "folding"):
                cells.append(f'<td class="l">{escape("" if v is None else str(v))}</td>')
            elif v is None or v == "":
                cells.append("<td></td>")
            else:
                cells.append(f"<td>{float(v):,.{d}f}</td>" if isinstance(v, (int, float)) else f"<td>{escape(str(v))}</td>")
        on_front = r["key"] in front
        cls = "candidate front" if on_front else "candidate"
        body.append(f'<tr class="{cls}">{"".join(cells)}<td class="l">{"yes" if on_front else ""}</td></tr>')
    body.append("</tbody></table></div>")
    body.append("<h2>Failed candidates</h2>")
    if failed:
        body.append('<table id="failed"><thead><tr><th class="l">key</th><th class="l">candidate</th>'
                    '<th class="l">error</th></tr></thead><tbody>')
        for r in failed:
            body.append(f'<tr class="failed"><td class="l">{escape(r["key"])}</td><td class="l">'
                        f'{escape(_describe(r))}</td><td class="l">{escape(str(r.get("error", "")))}</td></tr>')
        body.append("</tbody></table>")
    else:
        body.append('<p class="muted">None.</p>')
    files = [out / "results.csv", out / "results.json"] + ([Path(plot)] if plot else [])
    body += ["<h2>Files</h2>", f'<ul class="files">{"".join(f"<li>{_link(f, out)}</li>" for f in files)}</ul>',
             '<p class="muted">Written by bnnforge sweep.</p>']
    path = out / "results.html"
    path.write_text(_page(title, body))
    return str(path)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (fewer LUT and more frames/s)."""
    front = []
    for i, (lut, fps) in enumerate(points):
        if not any((l2 <= lut and f2 >= fps) and (l2 < lut or f2 > fps) for l2, f2 in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(rows: list[dict], path: Path) -> str | None:
    ok, luts, source = _plotted(rows)
    if not ok:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps = [r["fps"] for r in ok]
    acc_key, acc_label = ("accuracy", "accuracy (RTL)") if all(r.get("accuracy") is not None for r in ok) \
        else ("accuracy_golden", "accuracy (golden model)")
    acc = [r.get(acc_key) for r in ok]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if all(a is not None for a in acc):
        sc = ax.scatter(luts, fps, c=acc, cmap="viridis", zorder=3)
        fig.colorbar(sc, ax=ax, label=acc_label)
    else:
        ax.scatter(luts, fps, color="tab:gray", zorder=3)
    front = pareto_front(list(zip(luts, fps)))
    ax.plot([luts[i] for i in front], [fps[i] for i in front], "r--", lw=1, label="Pareto front", zorder=2)
    ax.set_xlabel(f"LUT ({source})")
    ax.set_ylabel("frames/s at the sweep's clock_mhz (assumed, not measured)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{len(ok)} candidates")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
