"""Brevitas' own BNN-PYNQ examples (`brevitas_examples.bnn_pynq`: TFC, SFC, LFC, CNV in
1W1A, 1W2A, 2W2A), the networks FINN's end-to-end tests use, as a test bed for models
bnnforge did not write: random weights with random BatchNorm statistics, exported with
Brevitas' documented call and either exporter.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

ZOO = ("tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a",
       "cnv_1w1a", "cnv_1w2a", "cnv_2w2a")
EXPORTERS = ("dynamo", "torchscript")
# foldings: the shipped ones where BNN-PYNQ/finn-examples have one, SFC at 256 cycles/frame
FOLDINGS = {"tfc": "tfc_finn_examples.json", "lfc": "lfc_bnn_pynq.json", "cnv": "cnv_bnn_pynq.json"}
SFC_FOLDING = {"Defaults": {}, "MVTU_0": {"PE": 16, "SIMD": 49}, "MVTU_1": {"PE": 16, "SIMD": 16},
               "MVTU_2": {"PE": 16, "SIMD": 16}, "MVTU_3": {"PE": 10, "SIMD": 16}}


def input_shape(name: str) -> tuple:
    return (1, 3, 32, 32) if name.startswith("cnv") else (1, 1, 28, 28)


def folding_for(name: str):
    from bnnforge.api import shipped_folding

    import json

    topo = name.split("_")[0]
    folding = SFC_FOLDING if topo == "sfc" else json.loads(shipped_folding(FOLDINGS[topo]).read_text())
    if name.split("_")[1].startswith("2w"):
        # every layer has 2-bit weights: the k-bit weight units MVTUKbit_<i>, same PE/SIMD
        folding = {k.replace("MVTU_", "MVTUKbit_"): v for k, v in folding.items()}
    return folding


def zoo_export(name: str, exporter: str, path: str | Path, seed: int = 0, edit=None):
    """The zoo model `name` with random weights and random BatchNorm statistics, exported
    to `path` with `brevitas.export.export_qonnx` (exporter "dynamo", Brevitas' default,
    or "torchscript": dynamo=False); `edit(model)`, when given, changes the model before
    the export. Returns the torch model (eval mode)."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = model_with_cfg(name, pretrained=False)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.data = torch.randn(m.num_features, generator=g) * 2
            m.running_var.data = torch.rand(m.num_features, generator=g) * 3 + 0.1
            m.weight.data = torch.randn(m.num_features, generator=g)
            m.bias.data = torch.randn(m.num_features, generator=g)
    model.eval()
    if edit is not None:
        edit(model)
    kw = {} if exporter == "dynamo" else {"dynamo": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.rand(input_shape(name)), str(path), **kw)
    return model


def qonnx_outputs(path: str | Path, x: np.ndarray) -> np.ndarray:
    """qonnx's execution of the exported file, one input at a time (as exported, batch 1)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    w = cleanup_model(ModelWrapper(str(path)))
    iname, oname = w.graph.input[0].name, w.graph.output[0].name
    return np.concatenate([execute_onnx(w, {iname: x[i:i + 1]})[oname] for i in range(len(x))])
