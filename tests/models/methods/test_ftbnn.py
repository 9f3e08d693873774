"""FTBNN: FPReLU in front of the sign (folds away / flips / refused), grouped binary layers."""
import numpy as np
import onnx
import pytest
import torch

from bnnforge.models.errors import BnnforgeError
from bnnforge.models.export import check_export
from bnnforge.models.methods.export import export_method_qonnx
from bnnforge.models.methods.ftbnn import FPReLU, GroupedBinaryLinear, grouped_binary_conv
from tests.models.methods.helpers import images, random_method_model


def test_fprelu_definition_and_init():
    f = FPReLU(2)
    assert f.a.tolist() == [1.0, 1.0] and f.b.tolist() == [0.25, 0.25]
    with torch.no_grad():
        f.a.copy_(torch.tensor([2.0, -1.0]))
        f.b.copy_(torch.tensor([0.5, 3.0]))
    x = torch.tensor([[1.5, 1.5], [-2.0, -2.0], [0.0, 0.0]], requires_grad=True)
    y = f(x)
    assert y.tolist() == [[3.0, -1.5], [-1.0, -6.0], [0.0, 0.0]]
    y.sum().backward()
    assert f.a.grad.tolist() == [1.5, 1.5] and f.b.grad.tolist() == [-2.0, -2.0]


@pytest.mark.parametrize("kind,a,b,s", [
    ("bipolar", 1.0, 0.25, 1.0), ("bipolar", -0.5, -2.0, -1.0), ("bipolar", 1.0, -0.5, 0.0),
    ("unipolar", 0.3, 0.1, 1.0), ("unipolar", -1.0, -1.0, -1.0), ("unipolar", -1.0, 0.5, 0.0),
    ("unipolar", 1.0, 0.0, 1.0)])
def test_sign_equivalent(kind, a, b, s):
    f = FPReLU(1, a, b, next_kind=kind)
    assert float(f.sign_equivalent()[0]) == s
    x = torch.linspace(-2, 2, 41).reshape(-1, 1)
    on = (lambda y: y >= 0) if kind == "bipolar" else (lambda y: y > 0)
    assert torch.equal(on(f(x)), on(s * x))


@pytest.mark.parametrize("kind,a,b", [("unipolar", 1.0, -0.5), ("bipolar", -1.0, 0.5)])
def test_non_monotonic_channel_refused(kind, a, b):
    f = FPReLU(3, 1.0, 0.25, next_kind=kind)
    with torch.no_grad():
        f.a[1], f.b[1] = a, b
    with pytest.raises(BnnforgeError, match="FPReLU channel 1: .*non-monotonic"):
        f.sign_equivalent()


def _build_and_compare(m, tmp_path, seed):
    from bnnforge.sim.golden import execute, quantize_inputs
    from tests.flows.helpers import export_and_build, torch_outputs

    tmp_path.mkdir(parents=True, exist_ok=True)  # export_and_build writes tmp_path/model.onnx
    streamlined, hw, _ = export_and_build(m, tmp_path)
    x = images(200, seed=seed)
    logits = torch_outputs(m, x)
    labels = execute(hw, quantize_inputs(streamlined, x))
    assert np.array_equal(labels, logits.argmax(1))
    return streamlined


@pytest.mark.parametrize("act", ["bipolar", "unipolar"])
def test_positive_slopes_fold_away_and_build_exactly(tmp_path, act):
    m = random_method_model("ftbnn", seed=1, hidden=(64, 32), groups=1, act=act)
    with torch.no_grad():
        for f in m.modules():
            if isinstance(f, FPReLU):
                f.a.uniform_(0.1, 3.0)
                f.b.uniform_(0.01, 1.0)
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    assert check_export(m, path, images(32))["max_abs_diff"] <= 1e-5
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Relu" not in ops and "Where" not in ops
    _build_and_compare(m, tmp_path / "b", seed=1)


def test_negative_slopes_flip_channels_and_build_exactly(tmp_path):
    m = random_method_model("ftbnn", seed=2, hidden=(64, 32), groups=1)
    with torch.no_grad():
        for f in m.modules():
            if isinstance(f, FPReLU):
                neg = torch.rand(f.a.shape) < 0.5
                f.a[neg] = -f.a[neg]
                f.b[neg] = -f.b[neg]
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    assert check_export(m, path, images(32, seed=3))["max_abs_diff"] <= 1e-5
    _build_and_compare(m, tmp_path / "b", seed=2)


def test_mixed_slopes_refused_at_export_exact_form_still_exports(tmp_path):
    m = random_method_model("ftbnn", seed=3, hidden=(32, 16), groups=1, act="unipolar")
    f = next(mod for mod in m.modules() if isinstance(mod, FPReLU))
    with torch.no_grad():
        f.b[5] = -0.3
    with pytest.raises(BnnforgeError, match="channel 5"):
        export_method_qonnx(m, tmp_path / "m.onnx")
    FPReLU.exact_export = True
    try:
        path = export_method_qonnx(m, tmp_path / "exact.onnx")
    finally:
        FPReLU.exact_export = False
    assert check_export(m, path, images(32, seed=4))["max_abs_diff"] <= 1e-5
    assert "Relu" in {n.op_type for n in onnx.load(str(path)).graph.node}
    from tests.flows.helpers import export_and_build
    # refused either for the Relu itself or for the fork it needs (x feeds Relu(x) and
    # Relu(-x), and only a quantizer's output may branch), whichever check runs first
    with pytest.raises(BnnforgeError, match="Relu|only an activation quantizer's output may branch"):
        import bnnforge.finn_flows.builder  # noqa: F401  (the compiler refuses the exact piecewise form)
        from bnnforge.finn_flows.builder import build
        from bnnforge.finn_flows.config import load_config
        build(load_config(None, model=str(path), output_dir=str(tmp_path / "b"),
                          steps=["tidy_up", "streamline"]), progress=False)
    del export_and_build


def test_grouped_linear_is_block_diagonal_and_exports_exactly(tmp_path):
    g = GroupedBinaryLinear(8, 6, groups=2)
    w = g.quant_weight().detach()
    assert torch.all(w[:3, 4:] == 0) and torch.all(w[3:, :4] == 0)
    assert set(w[:3, :4].unique().tolist()) <= {-1.0, 1.0}
    with pytest.raises(BnnforgeError, match="groups=4 must divide in_features=8 and out_features=6"):
        GroupedBinaryLinear(8, 6, groups=4)
    m = random_method_model("ftbnn", seed=4, groups=4)
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    assert check_export(m, path, images(32, seed=5))["max_abs_diff"] <= 1e-5
    conv = grouped_binary_conv(8, 16, groups=4)
    assert conv.groups == 4 and conv.weight.shape == (16, 2, 3, 3)


def test_grouped_weight_exported_as_ternary_quant_with_zero_blocks(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.general.intquant import int_quant
    from qonnx.util.cleanup import cleanup_model

    m = random_method_model("ftbnn", seed=5, hidden=(32, 32), groups=4)
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    w = cleanup_model(ModelWrapper(str(path)))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in w.model.graph.initializer}
    producer = {o: n for n in w.model.graph.node for o in n.output}
    mm = [n for n in w.model.graph.node if n.op_type == "MatMul"][1]  # the grouped 32x32 layer
    q = producer[mm.input[1]]
    transposed = q.op_type == "Transpose"
    if transposed:
        q = producer[q.input[0]]
    assert q.op_type == "Quant" and all(i in inits for i in q.input)
    wq = int_quant(*(inits[i] for i in q.input), signed=1, narrow=1, rounding_mode="ROUND")
    torch_w = m.layers[6].quant_weight().detach().numpy()
    # MatMul takes its weight as [in, out]; through a Transpose the constant is torch's
    # [out, in] already (the layer is square, so the shape cannot tell)
    assert np.array_equal(wq if transposed else wq.T, torch_w)
