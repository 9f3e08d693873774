"""Shared helpers for the flow tests: export a random-init or trained model and build it."""
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import torch

from bnnforge.finn_flows.builder import build
from bnnforge.finn_flows.config import load_config
from bnnforge.models.export import export_qonnx
from bnnforge.models.topologies import build_model, randomize_batchnorm

HW_STEPS = ["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates"]


def random_model(topology, act, seed=0, weight_scaling="none"):
    torch.manual_seed(seed)  # weight init uses the global generator: tests must not depend on order
    m = build_model(topology, act, weight_scaling)
    randomize_batchnorm(m, torch.Generator().manual_seed(seed))
    return m.eval()


def export_and_build(model, tmp: Path, steps=HW_STEPS, **cfg):
    onnx_path = export_qonnx(model, tmp / "model.onnx", (1,) + model.spec.input_shape)
    config = load_config(None, model=str(onnx_path), output_dir=str(tmp / "build"), steps=steps, **cfg)
    build(config, progress=False)
    b = tmp / "build"
    return (onnx.load(str(b / "intermediate_models" / "01_streamline.onnx")),
            onnx.load(str(b / "final_model.onnx")), b)


def torch_outputs(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


def build_method(model, tmp: Path, folding: dict | None = None, steps=HW_STEPS, **cfg):
    """Export a method model (with its method metadata) and build it, folding given as a
    dict (written as a FINN-style JSON file) or None. Returns (onnx path, streamlined
    model, final model, build directory)."""
    import json

    from bnnforge.models.methods.export import export_method_qonnx

    tmp.mkdir(parents=True, exist_ok=True)
    path = export_method_qonnx(model, tmp / "model.onnx")
    fold = None
    if folding is not None:
        fold = tmp / "folding.json"
        fold.write_text(json.dumps(folding))
    config = load_config(None, model=str(path), output_dir=str(tmp / "build"), steps=steps,
                         folding_config_file=str(fold) if fold else None, **cfg)
    build(config, progress=False)
    b = tmp / "build"
    return (path, onnx.load(str(b / "intermediate_models" / "01_streamline.onnx")),
            onnx.load(str(b / "final_model.onnx")), b)


def rtl_matches_golden(model, streamlined, hw, bdir: Path, x, seed: int = 5):
    """Golden argmax == torch on `x`, then the RTL (Verilator bulk harness) against the
    golden model on every frame: all outputs, TLAST and labels. Returns (the run's
    result, the RTL manifest)."""
    import json

    from bnnforge.sim.bulk import run_network_bulk
    from bnnforge.sim.golden import execute, quantize_inputs

    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    assert np.array_equal(golden, torch_outputs(model, x).argmax(1))
    res = run_network_bulk(bdir / "rtl", q, golden, seed=seed)
    assert res["output_beats"] == len(x) and res["rtl_mismatches"] == 0, res["first_mismatches"]
    assert res["tlast_correct"] and np.array_equal(np.array(res["labels_rtl"]), golden)
    return res, json.loads((bdir / "rtl" / "manifest.json").read_text())


def build_and_check_rtl(model, tmp: Path, folding: dict | None, x, **cfg):
    """build_method through codegen, then rtl_matches_golden on `x`: (result, manifest, build dir)."""
    _, streamlined, hw, bdir = build_method(model, tmp, folding, steps=HW_STEPS + ["codegen"], **cfg)
    res, man = rtl_matches_golden(model, streamlined, hw, bdir, x)
    return res, man, bdir


def copy_with_inverted_classifier(build_dir: Path, dest: Path) -> None:
    """A copy of a build whose classifier weights are all inverted (memory images are read
    at run time, so the RTL computes with them): every simulation of it must mismatch."""
    shutil.copytree(build_dir, dest, ignore=shutil.ignore_patterns("rtlsim"))
    man = json.loads((dest / "rtl" / "manifest.json").read_text())
    mem = dest / "rtl" / man["layers"][-1]["WEIGHT_FILE"]
    lines = mem.read_text().split()
    mem.write_text("\n".join(format(int(l, 16) ^ ((1 << 4 * len(l)) - 1), f"0{len(l)}x") for l in lines) + "\n")
