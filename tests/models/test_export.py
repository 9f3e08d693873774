"""Export to QONNX is exact for both activation kinds (done-criterion 3 of the foundation)."""
import zlib

import numpy as np
import onnx
import pytest
import torch

from bnnforge.models.export import BnnQONNXManager, check_export, export_qonnx
from bnnforge.models.topologies import build_model, randomize_batchnorm


def _random_model(topology, act, seed, weight_scaling="none"):
    torch.manual_seed(seed)
    m = build_model(topology, act, weight_scaling)
    randomize_batchnorm(m, torch.Generator().manual_seed(seed))
    return m.eval()


@pytest.mark.parametrize("act", ["bipolar", "unipolar"])
@pytest.mark.parametrize("topology,n", [("tfc", 16), ("sfc", 16), ("lfc", 8), ("cnv", 3), ("digits_mlp", 16)])
def test_export_matches_torch(tmp_path, topology, act, n):
    m = _random_model(topology, act, seed=zlib.crc32(f"{topology}{act}".encode()) % 1000)
    path = export_qonnx(m, tmp_path / "m.onnx", (1,) + m.spec.input_shape)
    x = np.random.default_rng(0).random((n,) + m.spec.input_shape, dtype=np.float32)
    r = check_export(m, path, x)
    assert r["max_abs_diff"] <= 1e-6, r
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    if act == "unipolar":
        assert "Quant" in ops


def test_per_channel_weight_scale_exports_exactly(tmp_path):
    m = _random_model("tfc", "unipolar", seed=3, weight_scaling="per_channel")
    path = export_qonnx(m, tmp_path / "m.onnx", (1, 1, 28, 28))
    r = check_export(m, path, np.random.default_rng(1).random((16, 1, 28, 28), dtype=np.float32))
    assert r["max_abs_diff"] <= 1e-6


def test_unipolar_activation_is_quant_unsigned(tmp_path):
    """The handler emits Quant(signed=0, bit_width=1) for {0,1} activations ..."""
    m = _random_model("tfc", "unipolar", seed=4)
    path = export_qonnx(m, tmp_path / "m.onnx", (1, 1, 28, 28))
    model = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    one_bit = [n for n in quants if n.input[3] in inits and float(inits[n.input[3]]) == 1.0]
    assert one_bit, "no 1-bit Quant nodes"
    for n in one_bit:
        signed = [a.i for a in n.attribute if a.name == "signed"][0]
        assert signed == 0


def test_stock_brevitas_export_breaks_unipolar(tmp_path):
    """... because stock Brevitas 0.13.4 turns them into BipolarQuant ({-1,+1})."""
    from brevitas.export.onnx.qonnx.manager import QONNXManager

    m = _random_model("digits_mlp", "unipolar", seed=5)
    QONNXManager.export(m, input_shape=(1, 1, 8, 8), export_path=str(tmp_path / "stock.onnx"), dynamo=False)
    r = check_export(m, tmp_path / "stock.onnx", np.random.default_rng(2).random((16, 1, 8, 8), dtype=np.float32))
    assert r["max_abs_diff"] > 1e-3
    ours = export_qonnx(m, tmp_path / "ours.onnx", (1, 1, 8, 8))
    assert check_export(m, ours, np.random.default_rng(2).random((16, 1, 8, 8), dtype=np.float32))["max_abs_diff"] == 0.0
    assert BnnQONNXManager.handlers[0].__name__ == "UnsignedBinaryAwareActQuantHandler"


def test_unipolar_tie_at_threshold_is_zero():
    from brevitas.nn import QuantIdentity
    from bnnforge.models.quantizers import UnipolarActQuant

    q = QuantIdentity(act_quant=UnipolarActQuant, return_quant_tensor=False)
    y = q(torch.tensor([-0.5, 0.0, 1e-6, 0.7, 3.0]))
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_unknown_topology_lists_choices():
    from bnnforge.models.errors import BnnforgeError

    with pytest.raises(BnnforgeError, match="choices: cnv, digits_cnv, digits_mlp, lfc, sfc, tfc"):
        build_model("resnet", "bipolar")
    with pytest.raises(BnnforgeError, match="choices: bipolar, unipolar"):
        build_model("tfc", "ternary")


def test_export_to_unwritable_dir_fails_cleanly(tmp_path):
    """Missing folders are created (tests/package/test_api.py); a file where a folder
    should be is refused in one line naming it, and nothing is created."""
    from bnnforge.models.errors import BnnforgeError

    m = _random_model("digits_mlp", "bipolar", seed=6)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BnnforgeError, match=r"not writable \(.*afile is a file\)"):
        export_qonnx(m, tmp_path / "afile" / "sub" / "m.onnx", (1, 1, 8, 8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
