"""The residual model family of models/residual.py through the graph compiler: every
block kind and activation width that the compiler takes gives the golden model's labels
equal to torch's argmax, from either exporter."""
import numpy as np
import onnx
import pytest
import torch

from bnnforge.finn_flows.builder import build
from bnnforge.finn_flows.config import load_config
from bnnforge.models.export import export_qonnx
from bnnforge.sim.golden import execute, quantize_inputs
from tests.flows.helpers import HW_STEPS
from tests.models.test_residual import random_residual

CASES = {
    "sibnn_k1": dict(block="sibnn"),
    "ftbnn_k1": dict(block="ftbnn"),
    "sibnn_k4": dict(block="sibnn", act_bits=4),
    "ftbnn_k3_int8": dict(block="ftbnn", act_bits=3, input_quant="int8"),
    "sibnn_k8_uint4": dict(block="sibnn", act_bits=8, input_quant="uint4"),
}


def _build(path, out):
    build(load_config(None, model=str(path), output_dir=str(out), steps=HW_STEPS), progress=False)
    return (onnx.load(str(out / "intermediate_models" / "01_streamline.onnx")),
            onnx.load(str(out / "final_model.onnx")))


@pytest.mark.parametrize("name,dynamo", [(n, False) for n in sorted(CASES)] + [("sibnn_k1", True), ("ftbnn_k3_int8", True)],
                         ids=lambda v: {False: "torchscript", True: "dynamo"}.get(v, v) if isinstance(v, bool) else v)
def test_family_golden_labels_equal_torch(tmp_path, name, dynamo):
    m = random_residual(seed=3 + dynamo, **CASES[name])
    path = export_qonnx(m, tmp_path / "m.onnx", (1, 1, 12, 12), dynamo=dynamo)
    streamlined, hw = _build(path, tmp_path / "b")
    ops = [n.op_type for n in hw.graph.node]
    assert ops.count("StreamAdd") == 3 and ops.count("StreamFork") >= 1
    x = np.random.default_rng(5).random((200, 1, 12, 12), dtype=np.float32)
    labels = execute(hw, quantize_inputs(streamlined, x))
    labels = labels if labels.ndim == 1 else labels.argmax(1)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy().argmax(1)
    assert np.array_equal(labels, ref)

