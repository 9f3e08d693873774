"""Shared helpers for the flow tests: export a random-init or trained model and build it."""
from pathlib import Path

import numpy as np
import onnx
import torch

from finn_flows.builder import build
from finn_flows.config import load_config
from models.export import export_qonnx
from models.topologies import build_model, randomize_batchnorm

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
