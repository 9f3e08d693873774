"""The Python API: the command line's jobs as functions.

Every function raises :class:`bnnforge.errors.BnnforgeError` (one line naming the
file, node or field) on bad input, like the CLI, and returns plain dicts/paths.

Example (from a Brevitas model to bit-exact RTL)::

    import bnnforge

    run = bnnforge.train(method="sibnn", out="runs/sibnn", epochs=5, export=True)
    summary = bnnforge.build("runs/sibnn/model.onnx", "runs/sibnn/build",
                             folding=bnnforge.shipped_folding("digits_mlp.json"))
    sim = bnnforge.simulate("runs/sibnn/build", images, labels)   # Verilator, bit-exact check
    res = bnnforge.synthesize("runs/sibnn/build")                  # Yosys synth_xilinx
    print(sim["accuracy_rtl"], sim["frames_mismatching"], res["total"]["lut_total"])
"""
from __future__ import annotations

import json
from pathlib import Path

from bnnforge.errors import BnnforgeError
from bnnforge.resources import folding_config

__all__ = ["build", "export", "shipped_folding", "simulate", "synthesize", "train"]


def shipped_folding(name: str) -> Path:
    """Path of a folding that ships with bnnforge (``digits_mlp.json``,
    ``tfc_finn_examples.json``, ``lfc_bnn_pynq.json``, ``cnv_bnn_pynq.json``, ...)."""
    path = folding_config(name)
    if not path.is_file():
        shipped = sorted(p.name for p in path.parent.glob("*.json"))
        raise BnnforgeError(f"{name}: no such shipped folding; shipped: {', '.join(shipped)}")
    return path


def build(model: str | Path, output_dir: str | Path, *, folding: str | Path | dict | None = None,
          target_fps: float | None = None, target_cycles: int | None = None,
          steps: list[str] | None = None, name: str | None = None, config: str | Path | None = None,
          progress: bool = False) -> dict:
    """Compile a QONNX model into ``output_dir`` (what ``bnnforge build`` does).

    folding: a FINN-format folding JSON (path) or the same as a dict; target_fps /
    target_cycles: choose the folding automatically instead. Returns the build summary
    (steps, seconds per step, output directory). A failed build leaves nothing behind.
    """
    from bnnforge.finn_flows.builder import build as run_build
    from bnnforge.finn_flows.config import load_config

    overrides = dict(model=str(model), output_dir=str(output_dir), name=name, target_fps=target_fps,
                     target_cycles_per_frame=target_cycles, steps=list(steps) if steps else None)
    if isinstance(folding, dict):
        overrides["folding"] = folding
    elif folding is not None:
        overrides["folding_config_file"] = str(folding)
    return run_build(load_config(config, **overrides), progress=progress)


def simulate(build_dir: str | Path, images, labels=None, *, limit: int | None = None,
             progress: bool = False, ray: bool = False, address: str | None = None,
             workers: int | None = None) -> dict:
    """Run a dataset through a build's RTL (what ``bnnforge sim`` does): ``images`` as
    the model was trained on (an array or a ``.npy`` path), quantized on the host by the
    model's own input quantizer, simulated with the compiled Verilator harness and
    compared bit-exactly with the golden model. Returns accuracy (with ``labels``),
    ``frames_mismatching``, measured and ideal cycles per frame, ...

    ``ray=True`` shards the images over local Ray workers (``workers``, default the
    cores) or the cluster at ``address`` (``bnnforge[cluster]``); the figures are the
    same as those of a serial run.
    """
    from bnnforge.simulate_dataset import simulate as run_dataset

    return run_dataset(build_dir, images, labels, limit=limit, progress=progress, ray=ray, address=address,
                       workers=workers)


def synthesize(build_dir: str | Path) -> dict:
    """Yosys ``synth_xilinx`` of a build's RTL (what ``bnnforge synth`` does).

    Returns the report as a dict (``total`` holds ``lut_total``, ``ff``, ``bram18``,
    ...; ``modules`` the per-module counts) and writes ``rtl/synth.md`` /
    ``rtl/stat.json`` beside the Verilog.
    """
    from bnnforge.hw.synth import SynthError
    from bnnforge.hw.synth import synthesize as run_yosys

    rtl = Path(build_dir) / "rtl"
    manifest_path = rtl / "manifest.json"
    if not manifest_path.is_file():
        raise BnnforgeError(f"{manifest_path}: not found (run `bnnforge build` with the codegen step first)")
    manifest = json.loads(manifest_path.read_text())
    try:
        res = run_yosys([rtl / f for f in manifest["files"]], manifest["top"], workdir=rtl)
    except SynthError as e:
        raise BnnforgeError(str(e).splitlines()[0]) from None
    return res.to_dict()


def train(*, out: str | Path, method: str | None = None, topology: str = "digits_mlp",
          act: str = "unipolar", weight_scaling: str = "none", dataset: str = "digits",
          data_dir: str | Path | None = None, epochs: int | None = None, seed: int = 0,
          config: str | Path | None = None, params: dict | None = None, export: bool = False,
          progress: bool = False) -> dict:
    """Train a BNN (what ``bnnforge train`` does) and return its metrics.

    With ``method`` (``sibnn``, ``binary_domain``, ``sdbnn``, ``margin``, ``ftbnn``, the
    ``bipolar``/``unipolar`` baselines, or the residual ``sibnn_resnet``/``ftbnn_resnet``) the network and the paper defaults come from
    ``configs/methods/<method>.yaml`` (or ``config``), overridable by ``params``; with
    ``export`` the trained model is written to ``out/model.onnx`` and checked with qonnx.
    Without ``method``, one of the reference topologies (``tfc``, ``sfc``, ``lfc``,
    ``cnv``, ``digits_mlp``, ``digits_cnv``) is trained.
    """
    from bnnforge.models.data import load_dataset

    data = load_dataset(dataset, str(data_dir) if data_dir is not None else None)
    if method is not None:
        from bnnforge.models.methods.registry import ALL_METHODS, load_method_config
        from bnnforge.models.methods.train import train_method

        if method not in ALL_METHODS:
            raise BnnforgeError(f"--method {method!r}: unknown method; methods: {', '.join(ALL_METHODS)}")
        cfg = load_method_config(str(config) if config else method)
        n_epochs = epochs or int(cfg.get("train", {}).get("epochs", 20))
        res = train_method(method, data, str(out), n_epochs, seed, config=cfg, params=dict(params or {}),
                           export=export, progress=progress)
        res.pop("model", None)
        return res
    if config is not None or params:
        raise BnnforgeError("config/params: only with a method (--method)")
    from bnnforge.models.topologies import build_model
    from bnnforge.models.train import seed_everything
    from bnnforge.models.train import train as run_train

    seed_everything(seed)  # the weight init is part of the run
    model = build_model(topology, act, weight_scaling)
    res = run_train(model, data, str(out), epochs=epochs or 20, batch_size=64, lr=0.01, seed=seed,
                    meta=model.meta(), progress=progress)
    if export:
        from bnnforge.models.export import check_export, export_qonnx

        model.eval()
        path = export_qonnx(model, Path(out) / "model.onnx", (1,) + tuple(model.spec.input_shape))
        res["export_check"] = check_export(model, path, data.test.x[:16])
    return res


def export(model, path: str | Path, input_shape: tuple | None = None) -> Path:
    """Export a trained Brevitas model to QONNX at ``path`` (folders created as needed).

    ``input_shape`` defaults to the model's own ``spec.input_shape`` with batch 1.
    """
    from bnnforge.models.export import export_qonnx

    if input_shape is None:
        spec = getattr(model, "spec", None)
        if spec is None:
            raise BnnforgeError("export: input_shape is required for a model without a spec")
        input_shape = (1,) + tuple(spec.input_shape)
    return export_qonnx(model, path, input_shape)
