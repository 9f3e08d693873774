"""Si-BNN: {0,1} activation with trainable threshold/scale and an asymmetric window."""
import numpy as np
import onnx
import pytest
import torch

from bnnforge.models.export import check_export
from bnnforge.models.methods.export import export_method_qonnx
from bnnforge.models.methods.sibnn import SiBNNThresholdScale, WindowedCeilSte, sibnn_activation
from tests.models.methods.helpers import images, random_method_model


def _act(lo=-0.3, hi=1.0, channels=3):
    return torch.nn.Sequential(*sibnn_activation(channels, window_lo=lo, window_hi=hi))


def test_forward_is_step_above_threshold_tie_is_zero():
    act = _act()
    with torch.no_grad():
        act[0].threshold.copy_(torch.tensor([0.0, 0.5, -0.25]))
        act[0].log_scale.copy_(torch.tensor([0.0, 1.0, -2.0]))
    x = torch.tensor([[-1.0, 0.5, -0.25], [0.0, 0.50001, 1.0], [1e-6, 2.0, -0.3]])
    y = act(x)
    b = act[0].threshold
    assert torch.equal(y, (x > b).float())
    assert y[0].tolist() == [0.0, 0.0, 0.0]  # x == b exactly: the tie goes to 0
    assert set(y.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("lo,hi", [(-0.3, 1.0), (-0.5, 0.25), (-1.5, 2.0)])
def test_gradient_only_inside_window_and_threshold_learns(lo, hi):
    act = _act(lo, hi, channels=1)
    with torch.no_grad():
        act[0].threshold.fill_(0.2)
        act[0].log_scale.fill_(np.log(2.0))
    x = torch.linspace(-3, 3, 601).reshape(-1, 1).requires_grad_(True)
    act(x).sum().backward()
    y = ((x - 0.2) * 2.0).detach()
    inside = (y > lo) & (y < hi)
    assert torch.all(x.grad[~inside] == 0)
    assert torch.all(x.grad[inside] == 2.0)  # dy/dx = s
    thr = act[0].threshold.grad
    assert thr is not None and float(thr) == pytest.approx(-2.0 * float(inside.sum()))
    assert act[0].log_scale.grad is not None and float(act[0].log_scale.grad) != 0.0


def test_scale_stays_positive():
    m = SiBNNThresholdScale(4, scale_init=0.5)
    with torch.no_grad():
        m.log_scale.add_(-50.0)
    assert torch.all(m.scale > 0)
    with pytest.raises(ValueError):
        WindowedCeilSte(0.1, 1.0)


def test_weights_sign_times_mean_abs_per_channel_and_clipped():
    m = random_method_model("sibnn", seed=1, hidden=(32, 16))
    lin = m.layers[2]
    w = lin.weight.detach()
    qw = lin.quant_weight().value.detach()
    expect = torch.where(w >= 0, 1.0, -1.0) * w.abs().mean(dim=1, keepdim=True)
    assert torch.allclose(qw, expect, rtol=1e-6, atol=0)
    with torch.no_grad():
        lin.weight.mul_(10)
    m.clip_latent_weights()
    assert float(lin.weight.abs().max()) <= 1.0


def test_export_exact_and_graph_form(tmp_path):
    m = random_method_model("sibnn", seed=2)
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    r = check_export(m, path, images(32, seed=1))
    assert r["max_abs_diff"] <= 1e-5, r
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    # MatMul -> BatchNormalization -> Sub (threshold) -> [Exp, Reshape folded] Mul (scale) -> Quant
    i = ops.index("MatMul")
    assert ops[i + 1:i + 3] == ["BatchNormalization", "Sub"] and "Mul" in ops[i + 3:i + 6]
    quant = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Quant"][1]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in quant.attribute}
    assert attrs["signed"] == 0 and attrs["rounding_mode"] == b"CEIL"


def test_streamline_build_matches_torch(tmp_path):
    from bnnforge.sim.golden import execute, quantize_inputs
    from tests.flows.helpers import export_and_build, torch_outputs

    m = random_method_model("sibnn", seed=3, hidden=(64, 32))
    streamlined, hw, _ = export_and_build(m, tmp_path)
    x = images(200, seed=2)
    logits = torch_outputs(m, x)
    labels = execute(hw, quantize_inputs(streamlined, x))
    assert np.array_equal(labels, logits.argmax(1))
