"""Differential fuzzing: random small fully-connected BNNs through the whole flow.

A case is fully determined by its seed (`random_case(seed)`): input kind (binary of
the activation kind, or 4-bit unsigned like digits_mlp), input size, 1..4 hidden
layers of random widths, 2..12 classes, bipolar/unipolar activations, weight scaling
none/per_channel, label select on/off, a random folding (PE | MH, SIMD | MW, corners
included), FIFO depth, random BatchNorm plus injected edge cases (all-negative gammas,
zero gammas, channels forced always-on/off, constant +1/-1 weight rows, exactly-zero
latent weights) and edge-valued input pixels (0, 1, 0.5, uint4 rounding half-steps).

`run_case(case, workdir)` exports the torch model to QONNX, builds it (tidy_up ..
codegen), and checks:
  * streamlined graph == hardware graph (golden, bit-exact);
  * golden argmax == torch argmax (an integer tie of the accumulators may pick
    either index in float torch; such inputs are counted, not failed, and only when
    the accumulators really tie);
  * last-layer accumulators are one positive affine image of torch's logits;
  * RTL output beats == golden on up to 16 inputs with random gap/stall
    probabilities (sim.bulk when importable, else the cocotb simulation).
On any mismatch or exception a reproducer directory is written (QONNX model,
folding JSON, float inputs .npy, torch logits .npy, case JSON with seed and reason);
`check_reproducer(dir)` re-runs those checks from the saved files alone.

torch/brevitas are imported lazily (only for building the random model).
"""
from __future__ import annotations

import json
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

CHECK_IMAGES = 64          # images for golden-vs-torch
RTL_IMAGES = 16            # at most this many go through the cocotb RTL simulation (bulk: all)
RTL_CYCLE_BUDGET = 24_000  # ideal cycles simulated per case (bounds the cocotb run)
MAX_LAYER_CYCLES = 1536    # folding redrawn while a layer needs more cycles per frame
UINT4_HALF_STEPS = [(k + 0.5) / 15 for k in range(15)]


@dataclass
class FuzzCase:
    seed: int
    act: str                      # "bipolar" / "unipolar"
    input_quant: str              # "binary" / "uint4"
    input_shape: tuple            # (1, H, W)
    hidden: tuple
    num_classes: int
    weight_scaling: str           # "none" / "per_channel"
    label_select: bool
    folding: dict                 # {"MVTU_i": {"PE":.., "SIMD":..}}
    fifo_depth: int
    edits: list = field(default_factory=list)   # edge cases injected into the model
    p_gap: float = 0.0
    p_stall: float = 0.0
    image_rows: list | None = None   # subset of case_images' rows (set by shrinking)

    @property
    def widths(self) -> list[int]:
        """[MW0, MH0(=MW1), ..., num_classes]"""
        c, h, w = self.input_shape
        return [c * h * w] + list(self.hidden) + [self.num_classes]

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"], d["hidden"] = list(self.input_shape), list(self.hidden)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "FuzzCase":
        d = dict(d)
        d["input_shape"], d["hidden"] = tuple(d["input_shape"]), tuple(d["hidden"])
        return cls(**d)

    @property
    def n_images(self) -> int:
        return CHECK_IMAGES if self.image_rows is None else len(self.image_rows)

    def summary(self) -> str:
        fold = ",".join(f"{v['PE']}/{v['SIMD']}" for v in self.folding.values())
        return (f"seed={self.seed} {self.act} in={self.input_quant}{list(self.input_shape)} "
                f"widths={self.widths} ws={self.weight_scaling} ls={int(self.label_select)} "
                f"PE/SIMD={fold} edits={[e['kind'] for e in self.edits]} images={self.n_images}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _pick_divisor(rng: np.random.Generator, n: int) -> int:
    divs = _divisors(n)
    r = rng.random()
    if r < 0.25:
        return 1
    if r < 0.45:
        return n
    return int(rng.choice(divs))


def random_case(seed: int) -> FuzzCase:
    """The fuzz case of `seed` (deterministic; no torch needed)."""
    rng = np.random.default_rng([seed, 0xB22F])
    act = str(rng.choice(["bipolar", "unipolar"]))
    input_quant = "uint4" if rng.random() < 0.3 else "binary"
    while True:
        h, w = int(rng.integers(2, 11)), int(rng.integers(2, 11))
        if 8 <= h * w <= 96:
            break
    n_hidden = int(rng.integers(1, 5))
    hidden = tuple(int(v) for v in rng.integers(2, 65, size=n_hidden))
    num_classes = int(rng.integers(2, 13))
    weight_scaling = str(rng.choice(["none", "per_channel"]))
    label_select = bool(rng.random() < 0.6)
    widths = [h * w] + list(hidden) + [num_classes]
    folding = {}
    for i in range(len(widths) - 1):
        mw, mh = widths[i], widths[i + 1]
        for _ in range(20):
            pe, simd = _pick_divisor(rng, mh), _pick_divisor(rng, mw)
            if (mh // pe) * (mw // simd) <= MAX_LAYER_CYCLES:
                break
        else:
            pe, simd = mh, mw
        folding[f"MVTU_{i}"] = {"PE": int(pe), "SIMD": int(simd)}
    fifo_depth = int(rng.choice([2, 2, 3, 4]))
    edits = []
    n_layers = len(widths) - 1
    for li in range(n_layers):
        mh, mw = widths[li + 1], widths[li]
        hidden_layer = li < n_layers - 1
        if hidden_layer and rng.random() < 0.15:
            edits.append({"kind": "neg_gamma", "layer": li})
        if hidden_layer and rng.random() < 0.1:
            edits.append({"kind": "zero_gamma", "layer": li,
                          "channels": _some(rng, mh), "beta": float(rng.choice([0.0, 0.5, -0.5]))})
        if hidden_layer and rng.random() < 0.25:
            ch = _some(rng, mh)
            edits.append({"kind": "always", "layer": li, "channels": ch,
                          "on": [bool(v) for v in rng.random(len(ch)) < 0.5]})
        if rng.random() < 0.2:
            edits.append({"kind": "const_row", "layer": li, "rows": _some(rng, mh),
                          "sign": int(rng.choice([-1, 1]))})
        if rng.random() < 0.2:
            # whole rows only with unscaled weights: a per-channel scale of an all-zero
            # row is 0, which is not a binary layer (the flow rejects it by design)
            whole = weight_scaling == "none" or li == n_layers - 1
            edits.append({"kind": "zero_weights", "layer": li, "fraction": float(rng.uniform(0.05, 0.5)),
                          "rows": _some(rng, mh) if whole and rng.random() < 0.5 else []})
    p = float(rng.choice([0.0, 0.1, 0.3, 0.6]))
    return FuzzCase(seed=int(seed), act=act, input_quant=input_quant, input_shape=(1, h, w),
                    hidden=hidden, num_classes=num_classes, weight_scaling=weight_scaling,
                    label_select=label_select, folding=folding, fifo_depth=fifo_depth, edits=edits,
                    p_gap=p, p_stall=float(rng.choice([0.0, p, 0.5])))


def _some(rng, n: int) -> list[int]:
    k = int(rng.integers(1, n + 1)) if rng.random() < 0.3 else int(rng.integers(1, max(2, n // 4 + 1)))
    return sorted(int(v) for v in rng.choice(n, size=min(k, n), replace=False))


# ---------------------------------------------------------------------------
# the torch model and the inputs of a case

def build_torch_model(case: FuzzCase):
    import torch
    from torch import nn
    from brevitas.nn import QuantLinear
    from bnnforge.models.topologies import build_custom_fc, randomize_batchnorm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.seed)
        m = build_custom_fc(case.input_shape, case.hidden, case.num_classes, case.act,
                            case.weight_scaling, case.input_quant)
    gen = torch.Generator().manual_seed(case.seed)
    calib = torch.rand((64,) + tuple(case.input_shape), generator=gen)
    randomize_batchnorm(m, gen, calibration=calib)
    m.eval()
    linears = [mod for mod in m.modules() if isinstance(mod, QuantLinear)]
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm1d)]
    g = torch.Generator().manual_seed(case.seed + 1)
    with torch.no_grad():
        for e in case.edits:
            li, k = e["layer"], e["kind"]
            if k == "neg_gamma":
                bns[li].weight.copy_(-bns[li].weight.abs() - 0.05)
            elif k == "zero_gamma":
                bns[li].weight[e["channels"]] = 0.0
                bns[li].bias[e["channels"]] = e["beta"]
            elif k == "always":
                big = 1e4 * (bns[li].running_var[e["channels"]] + bns[li].eps).sqrt().clamp(min=1.0)
                sign = torch.tensor([1.0 if on else -1.0 for on in e["on"]])
                bns[li].bias[e["channels"]] = sign * big
            elif k == "const_row":
                w = linears[li].weight
                w[e["rows"]] = e["sign"] * (torch.rand((len(e["rows"]), w.shape[1]), generator=g) * 0.9 + 0.05)
            elif k == "zero_weights":
                w = linears[li].weight
                mask = torch.rand(w.shape, generator=g) < e["fraction"]
                if case.weight_scaling == "per_channel" and li < len(linears) - 1:
                    mask[:, 0] = False     # never a whole zero row under a per-channel scale
                w[mask] = 0.0
                if e["rows"]:
                    w[e["rows"]] = 0.0
            else:
                raise ValueError(f"unknown edit {k!r}")
    return m


def case_images(case: FuzzCase, n: int = CHECK_IMAGES) -> np.ndarray:
    rng = np.random.default_rng([case.seed, 0x1A6E])
    x = rng.random((n,) + tuple(case.input_shape), dtype=np.float32)
    special = np.array([0.0, 1.0, 0.5] + (UINT4_HALF_STEPS if case.input_quant == "uint4" else []),
                       dtype=np.float32)
    mask = rng.random(x.shape) < 0.15
    x[mask] = rng.choice(special, size=int(mask.sum()))
    return x if case.image_rows is None else x[list(case.image_rows)]


def torch_logits(model, images: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(images, dtype=np.float32))).numpy()


# ---------------------------------------------------------------------------
# checks on exported artifacts (shared by run_case and check_reproducer)

class Mismatch(Exception):
    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind}: {reason}")
        self.kind, self.reason = kind, reason


def build_artifacts(onnx_path: Path, folding: dict, out_dir: Path, label_select: bool, fifo_depth: int,
                    rtl: bool = True):
    """Build (tidy_up..estimates, + codegen when rtl). Returns (streamlined, hw, build_dir)."""
    from bnnforge.finn_flows.builder import build
    from bnnforge.finn_flows.config import load_config

    steps = ["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates"] + (["codegen"] if rtl else [])
    cfg = load_config(None, model=str(onnx_path), output_dir=str(out_dir), steps=steps, folding=folding,
                      label_select=label_select, fifo_depth=fifo_depth, name="fuzz")
    build(cfg, progress=False)
    return (onnx.load(str(out_dir / "intermediate_models" / "01_streamline.onnx")),
            onnx.load(str(out_dir / "final_model.onnx")), out_dir)


def last_accumulators(hw: onnx.ModelProto, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(graph output, last layer's accumulators) of the golden model."""
    from bnnforge.sim.golden import execute

    out, env = execute(hw, q, return_all=True)
    last = hw.graph.node[-1]
    acc = env[last.input[0]] if last.op_type == "LabelSelect" else out
    return out, acc


def check_golden(streamlined: onnx.ModelProto, hw: onnx.ModelProto, images: np.ndarray,
                 logits: np.ndarray) -> dict:
    """Golden (streamlined and hardware graphs) against torch logits; raises Mismatch."""
    from bnnforge.sim.golden import execute, quantize_inputs

    q = quantize_inputs(streamlined, images)
    out_s = execute(streamlined, q)
    out_h, acc = last_accumulators(hw, q)
    if not np.array_equal(out_s, out_h):
        rows = np.where(np.any(np.atleast_2d((out_s != out_h).T).T.reshape(len(q), -1), axis=1))[0]
        raise Mismatch("streamlined_vs_hw", f"streamlined and hardware golden differ on inputs {rows[:8].tolist()}")
    t_arg = logits.argmax(1)
    g_arg = acc.argmax(1)
    if out_h.ndim == 1 and not np.array_equal(out_h, g_arg):
        raise Mismatch("label_select", "LabelSelect output != argmax of the accumulators")
    differ = np.where(t_arg != g_arg)[0]
    ties = 0
    for r in differ:
        if acc[r, t_arg[r]] == acc[r].max():
            ties += 1  # integer tie: float torch may pick another of the tied indices
        else:
            raise Mismatch("golden_vs_torch_argmax",
                           f"input {r}: torch argmax {t_arg[r]} (acc {acc[r, t_arg[r]]}), golden argmax "
                           f"{g_arg[r]} (acc {acc[r, g_arg[r]]}); logits {np.round(logits[r], 4).tolist()}")
    # last-layer accumulators: logits = s * acc + b with one s > 0 and one b
    lg = logits.astype(np.float64)
    if np.ptp(acc) == 0:
        if np.ptp(lg) > 1e-4 * max(1.0, np.abs(lg).max()):
            raise Mismatch("acc_vs_logits", "accumulators constant but torch logits vary")
    else:
        a = np.vstack([acc.ravel(), np.ones(acc.size)]).T
        (s, b), *_ = np.linalg.lstsq(a, lg.ravel(), rcond=None)
        fit = s * acc + b
        if not (s > 0 and np.allclose(fit, lg, rtol=1e-5, atol=1e-4 * max(1.0, np.abs(lg).max()))):
            err = np.abs(fit - lg)
            r, c = np.unravel_index(np.argmax(err), err.shape)
            raise Mismatch("acc_vs_logits", f"logits != s*acc+b (s={s:.4g}); worst input {r} output {c}: "
                                            f"acc {acc[r, c]} logit {lg[r, c]:.5g} fit {fit[r, c]:.5g}")
    return {"q": q, "golden": out_h, "ties": ties}


def _bulk():
    try:
        from bnnforge.sim.bulk import run_network_bulk
    except ImportError:
        return None
    return run_network_bulk


def simulate(rtl_dir: Path, q: np.ndarray, golden: np.ndarray, p_gap: float, p_stall: float,
             seed: int) -> dict:
    """RTL simulation with sim.bulk when it is importable, else cocotb (sim.network)."""
    run_network_bulk = _bulk()
    if run_network_bulk is not None:
        res = run_network_bulk(rtl_dir, q, golden, p_gap=p_gap, p_stall=p_stall, seed=seed)
        res["simulator"] = "bulk"
    else:
        from bnnforge.sim.network import run_network

        res = run_network(rtl_dir, q, golden, p_gap=p_gap, p_stall=p_stall, seed=seed)
        res["simulator"] = "cocotb"
    return res


def check_rtl(rtl_dir: Path, q: np.ndarray, golden: np.ndarray, p_gap: float, p_stall: float,
              seed: int) -> dict:
    res = simulate(rtl_dir, q, golden, p_gap, p_stall, seed)
    if res["rtl_mismatches"]:
        raise Mismatch("rtl_mismatch", f"{res['rtl_mismatches']} output beats differ from golden "
                                       f"(first at beats {res['first_mismatches']}, {res['output_beats']} "
                                       f"beats received, {res['extra_beats']} extra; p_gap={p_gap} p_stall={p_stall})")
    if not res["tlast_correct"]:
        raise Mismatch("rtl_tlast", "tlast not on the last beat of each frame")
    return res


def rtl_count(manifest_layers: list, n_max: int = RTL_IMAGES) -> int:
    """Frames to simulate: all images with the compiled bulk harness; with the per-cycle
    cocotb simulation at most `n_max`, fewer for slow foldings (bounded run time)."""
    if _bulk() is not None:
        return CHECK_IMAGES
    ideal = max((l["MW"] // l["SIMD"]) * (l["MH"] // l["PE"]) for l in manifest_layers)
    return int(max(2, min(n_max, RTL_CYCLE_BUDGET // max(1, ideal))))


def _drop_sim_build(rtl_dir: Path) -> None:
    """The simulator build of a fuzz case's design is practically never reused (its
    weights-free Verilog differs per case): remove it from the shared build caches."""
    from bnnforge.sim import runner

    manifest = json.loads((rtl_dir / "manifest.json").read_text())
    top = manifest["top"]
    sources = [(rtl_dir / f).resolve() for f in manifest["files"]]
    dirs = [(runner.BUILD_ROOT, runner._build_key(sources, top, {}, list(runner._BUILD_ARGS)))]
    try:
        from bnnforge.sim import bulk

        dirs.append((bulk.BULK_ROOT, bulk._key(sources, top)))
    except (ImportError, AttributeError, TypeError):
        pass
    for root, key in dirs:
        shutil.rmtree(root / f"{top}_{key}", ignore_errors=True)
        (root / f"{top}_{key}.lock").unlink(missing_ok=True)


def check_artifacts(onnx_path: Path, folding: dict, images: np.ndarray, logits: np.ndarray, *,
                    label_select: bool, fifo_depth: int, workdir: Path, rtl: bool = True,
                    p_gap: float = 0.0, p_stall: float = 0.0, sim_seed: int = 0,
                    keep_sim_build: bool = False) -> dict:
    """Build + golden + (RTL) checks of an exported model. Raises Mismatch, or any
    exception the flow raises."""
    stage = "build"
    t0 = time.perf_counter()
    try:
        streamlined, hw, bdir = build_artifacts(onnx_path, folding, workdir / "build", label_select,
                                                fifo_depth, rtl=rtl)
        t_build = time.perf_counter() - t0
        stage = "golden"
        g = check_golden(streamlined, hw, images, logits)
        out = {"ties": g["ties"], "build_seconds": round(t_build, 3), "rtl_frames": 0,
               "hw_ops": sorted({n.op_type for n in hw.graph.node})}
        if rtl:
            stage = "rtl"
            manifest = json.loads((bdir / "rtl" / "manifest.json").read_text())
            n = rtl_count(manifest["layers"])
            t1 = time.perf_counter()
            try:
                res = check_rtl(bdir / "rtl", g["q"][:n], g["golden"][:n], p_gap, p_stall, sim_seed)
            finally:
                if not keep_sim_build:
                    _drop_sim_build(bdir / "rtl")
            out.update(rtl_frames=n, rtl_seconds=round(time.perf_counter() - t1, 3),
                       simulator=res["simulator"])
        return out
    except Mismatch:
        raise
    except Exception as e:
        raise Mismatch(f"exception_{stage}", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}") \
            from e


# ---------------------------------------------------------------------------
# running a case and saving reproducers

def run_case(case: FuzzCase, workdir, rtl: bool = True, reproducer_dir=None,
             keep_sim_build: bool = False) -> dict:
    """Run one case in `workdir`. Returns {"ok", "kind", "reason", "reproducer", "seconds", ...}.
    On failure, and when `reproducer_dir` is given, a reproducer is saved there."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {"seed": case.seed, "ok": True, "kind": None, "reason": None, "reproducer": None, "rtl": rtl}
    images = logits = None
    onnx_path = workdir / "model.onnx"
    try:
        try:
            from bnnforge.models.export import export_qonnx

            model = build_torch_model(case)
            images = case_images(case)
            logits = torch_logits(model, images)
            export_qonnx(model, onnx_path, (1,) + tuple(case.input_shape))
        except Exception as e:
            raise Mismatch("exception_export", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}") \
                from e
        result.update(check_artifacts(onnx_path, case.folding, images, logits, label_select=case.label_select,
                                      fifo_depth=case.fifo_depth, workdir=workdir, rtl=rtl, p_gap=case.p_gap,
                                      p_stall=case.p_stall, sim_seed=case.seed, keep_sim_build=keep_sim_build))
    except Mismatch as m:
        result.update(ok=False, kind=m.kind, reason=m.reason)
        if m.__cause__ is not None:
            result["traceback"] = "".join(traceback.format_exception(m.__cause__))[-4000:]
        if reproducer_dir is not None:
            result["reproducer"] = str(save_reproducer(case, Path(reproducer_dir), result, onnx_path,
                                                       images, logits))
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def save_reproducer(case: FuzzCase, root: Path, result: dict, onnx_path: Path, images, logits,
                    name: str | None = None, extra: dict | None = None) -> Path:
    d = root / (name or f"seed{case.seed}_{result['kind']}")
    d.mkdir(parents=True, exist_ok=True)
    if onnx_path.is_file():
        shutil.copy(onnx_path, d / "model.onnx")
    (d / "folding.json").write_text(json.dumps(case.folding, indent=1))
    if images is not None:
        np.save(d / "inputs.npy", images)
    if logits is not None:
        np.save(d / "torch_logits.npy", logits)
    info = {"seed": case.seed, "kind": result["kind"], "reason": result["reason"],
            "rtl": result["rtl"], "case": case.to_json(), "summary": case.summary(), **(extra or {})}
    (d / "case.json").write_text(json.dumps(info, indent=1))
    if result.get("traceback"):
        (d / "traceback.txt").write_text(result["traceback"])
    return d


def check_reproducer(d, workdir, rtl: bool = True, force_rtl: bool = False) -> dict:
    """Re-run a saved reproducer. From its files (model.onnx, folding, inputs, torch
    logits) when the export had succeeded, else from its seed (needs torch). The RTL
    runs when `rtl` and the case was found with it, or always with `force_rtl`."""
    d, workdir = Path(d), Path(workdir)
    info = json.loads((d / "case.json").read_text())
    rtl = force_rtl or (rtl and info.get("rtl", True))
    folding = json.loads((d / "folding.json").read_text())
    generator = info["case"].get("generator")
    if generator == "graph":
        from bnnforge.fuzz_graph import GraphCase, run_graph_case, unit_folding

        case, rerun = GraphCase.from_json(info["case"]), run_graph_case
        if (d / "model.onnx").is_file():
            folding = unit_folding(d / "model.onnx", folding, workdir / "probe")
    elif generator == "residual":
        from bnnforge.fuzz_residual import ResidualCase, run_residual_case

        case, rerun = ResidualCase.from_json(info["case"]), run_residual_case
    else:
        case, rerun = FuzzCase.from_json(info["case"]), run_case
    if not (d / "model.onnx").is_file() or not (d / "torch_logits.npy").is_file():
        return rerun(case, workdir, rtl=rtl)
    workdir.mkdir(parents=True, exist_ok=True)
    result = {"seed": case.seed, "ok": True, "kind": None, "reason": None, "rtl": rtl}
    try:
        result.update(check_artifacts(
            d / "model.onnx", folding, np.load(d / "inputs.npy"),
            np.load(d / "torch_logits.npy"), label_select=case.label_select, fifo_depth=case.fifo_depth,
            workdir=workdir, rtl=rtl, p_gap=case.p_gap, p_stall=case.p_stall, sim_seed=case.seed))
    except Mismatch as m:
        result.update(ok=False, kind=m.kind, reason=m.reason)
    return result


# ---------------------------------------------------------------------------
# shrinking a failing case

def _refold(case: FuzzCase, folding: dict | None = None) -> dict:
    """Foldings valid for the case's widths: each old factor cut down to a divisor."""
    from math import gcd

    w = case.widths
    old = list((folding if folding is not None else case.folding).values())
    out = {}
    for i in range(len(w) - 1):
        f = old[i] if i < len(old) else {"PE": 1, "SIMD": 1}
        out[f"MVTU_{i}"] = {"PE": gcd(int(f["PE"]), w[i + 1]), "SIMD": gcd(int(f["SIMD"]), w[i])}
    return out


def _fit_edits(edits: list, widths: list[int], layer_map: dict | None = None) -> list:
    """Edits remapped to the layers that remain and cut to their channel counts."""
    n_layers = len(widths) - 1
    out = []
    for e in edits:
        li = e["layer"] if layer_map is None else layer_map.get(e["layer"])
        if li is None or li >= n_layers:
            continue
        if e["kind"] in ("neg_gamma", "zero_gamma", "always") and li == n_layers - 1:
            continue                                  # BatchNorm edits exist on hidden layers only
        mh = widths[li + 1]
        e = dict(e, layer=li)
        for key in ("channels", "rows"):
            if key in e:
                keep = [j for j, c in enumerate(e[key]) if c < mh]
                if e["kind"] == "always":
                    e["on"] = [e["on"][j] for j in keep]
                e[key] = [e[key][j] for j in keep]
        if e["kind"] in ("zero_gamma", "always", "const_row") and not e.get("channels", e.get("rows")):
            continue
        out.append(e)
    return out


def _with(case: FuzzCase, **kw) -> FuzzCase:
    d = case.to_json()
    d.update(kw)
    c = FuzzCase.from_json(d)
    return c


def _structural(case: FuzzCase, hidden: tuple | None = None, num_classes: int | None = None,
                input_shape: tuple | None = None, layer_map: dict | None = None) -> FuzzCase:
    c = _with(case, hidden=list(hidden if hidden is not None else case.hidden),
              num_classes=num_classes if num_classes is not None else case.num_classes,
              input_shape=list(input_shape if input_shape is not None else case.input_shape))
    old_fold = case.folding
    if layer_map is not None:
        inv = {v: k for k, v in layer_map.items()}
        vals = list(case.folding.values())
        old_fold = {f"MVTU_{i}": vals[inv.get(i, i)] for i in range(len(c.widths) - 1)}
    c.folding = _refold(c, old_fold)
    c.edits = _fit_edits(case.edits, c.widths, layer_map)
    return c


def shrink_candidates(case: FuzzCase):
    """Smaller variants of `case`, the most reducing first."""
    n = case.n_images
    rows = list(case.image_rows) if case.image_rows is not None else list(range(CHECK_IMAGES))
    # inputs: halves first, then single inputs
    if n > 1:
        yield "images_half_a", _with(case, image_rows=rows[: n // 2])
        yield "images_half_b", _with(case, image_rows=rows[n // 2:])
    if 1 < n <= 8:
        for r in rows:
            yield f"image_{r}", _with(case, image_rows=[r])
    # layers
    for i in range(len(case.hidden)):
        hidden = case.hidden[:i] + case.hidden[i + 1:]
        layer_map = {j: (j if j < i else j - 1) for j in range(len(case.hidden) + 1) if j != i}
        yield f"drop_layer_{i}", _structural(case, hidden=hidden, layer_map=layer_map)
    # channels
    for i, h in enumerate(case.hidden):
        for new in sorted({2, h // 2}):
            if 2 <= new < h:
                yield f"hidden_{i}_{new}", _structural(case, hidden=case.hidden[:i] + (new,) + case.hidden[i + 1:])
    for new in sorted({2, case.num_classes // 2}):
        if 2 <= new < case.num_classes:
            yield f"classes_{new}", _structural(case, num_classes=new)
    # input features
    c, h, w = case.input_shape
    for shape in [(c, 1, 2), (c, 2, 2), (c, 1, max(1, w // 2)), (c, max(1, h // 2), w)]:
        if shape[1] * shape[2] < h * w:
            yield f"input_{shape[1]}x{shape[2]}", _structural(case, input_shape=shape)
    # edge-case edits
    for i, e in enumerate(case.edits):
        yield f"drop_edit_{e['kind']}", _with(case, edits=case.edits[:i] + case.edits[i + 1:])
    # folding factors towards 1 (all layers, then one at a time)
    one = {"PE": 1, "SIMD": 1}
    if any(f != one for f in case.folding.values()):
        yield "fold_1", _with(case, folding={k: dict(one) for k in case.folding})
        for k, f in case.folding.items():
            if f != one and len(case.folding) > 1:
                yield f"fold_1_{k}", _with(case, folding=dict(case.folding, **{k: dict(one)}))
    if case.p_gap or case.p_stall:
        yield "no_stalls", _with(case, p_gap=0.0, p_stall=0.0)
    if case.fifo_depth != 2:
        yield "fifo_2", _with(case, fifo_depth=2)


def case_size(case: FuzzCase) -> tuple:
    """What shrinking minimizes, most important first (a step must make it smaller)."""
    return (len(case.widths) - 1, case.n_images, sum(case.widths), len(case.edits),
            sum(f["PE"] * f["SIMD"] > 1 for f in case.folding.values()), case.p_gap + case.p_stall,
            case.fifo_depth)


def greedy_shrink(case, failure: dict, candidates, size, run, workdir, rtl: bool = True, max_trials: int = 200,
                  log=None) -> tuple:
    """Greedy reduction of a failing case: apply the first smaller variant (from
    `candidates(case)`, smaller by `size`) that `run` still fails with the same kind,
    until none does (or `max_trials` runs). Returns the smallest case, its failing result
    and the accepted steps. Shared by every fuzzer's shrinker."""
    workdir = Path(workdir)
    trials, steps = 0, []
    best, best_result = case, failure
    progress = True
    while progress and trials < max_trials:
        progress = False
        for name, cand in candidates(best):
            if trials >= max_trials:
                break
            if cand is None or size(cand) >= size(best):
                continue
            trials += 1
            d = workdir / f"trial{trials}"
            r = run(cand, d, rtl=rtl)
            shutil.rmtree(d, ignore_errors=True)
            if not r["ok"] and r["kind"] == failure["kind"]:
                best, best_result = cand, r
                steps.append(name)
                if log:
                    log(f"shrink: {name} -> {cand.summary()}")
                progress = True
                break
    return best, best_result, steps


def shrink_case(case: FuzzCase, failure: dict, workdir, rtl: bool = True, max_trials: int = 200,
                log=None) -> tuple[FuzzCase, dict, list[str]]:
    return greedy_shrink(case, failure, shrink_candidates, case_size, run_case, workdir, rtl=rtl,
                         max_trials=max_trials, log=log)


def shrink_and_save(case: FuzzCase, failure: dict, store, workdir, rtl: bool = True,
                    injected_fault: str | None = None, log=None) -> Path:
    """Shrink a failing case and save the reproducer of the smallest one under `store`
    (the regression store re-run by tests/flows/test_fuzz.py)."""
    workdir = Path(workdir)
    small, result, steps = shrink_case(case, failure, workdir / "shrink", rtl=rtl, log=log)
    final = workdir / "final"
    shutil.rmtree(final, ignore_errors=True)
    result = run_case(small, final, rtl=rtl)
    if result["ok"] or result["kind"] != failure["kind"]:
        raise RuntimeError(f"shrunk case no longer fails as {failure['kind']}: {result}")
    name = f"seed{small.seed}_{result['kind']}" + (f"_{injected_fault}" if injected_fault else "")
    d = save_reproducer(small, Path(store), result, final / "model.onnx", case_images(small),
                        torch_logits(build_torch_model(small), case_images(small)), name=name,
                        extra={"injected_fault": injected_fault, "shrink_steps": steps,
                               "original": case.to_json(), "original_reason": failure["reason"]})
    return d
