"""SD-BNN: WSD folded into sign bits, static/dynamic ASD, IR-Net EDE with its schedule."""
import numpy as np
import onnx
import pytest
import torch

from bnnforge.models.errors import BnnforgeError
from bnnforge.models.export import check_export
from bnnforge.models.methods.export import export_method_qonnx
from bnnforge.models.methods.sdbnn import (EDE_PRESETS, EDEBinaryQuant, SEActivationShift, WeightSelfDistribution,
                                  _EDESign, ede_t_k)
from tests.models.methods.helpers import images, random_method_model


@pytest.mark.parametrize("preset", ["vgg_small", "resnet"])
def test_ede_schedule(preset):
    t_min, t_max = EDE_PRESETS[preset]
    assert ede_t_k(0, 10, t_min, t_max) == (pytest.approx(t_min), pytest.approx(max(1 / t_min, 1)))
    t, k = ede_t_k(10, 10, t_min, t_max)
    assert t == pytest.approx(t_max) and k == 1.0
    t5, k5 = ede_t_k(5, 10, t_min, t_max)
    assert t5 == pytest.approx(np.sqrt(t_min * t_max)) and k5 == pytest.approx(max(1 / t5, 1))
    assert EDE_PRESETS == {"vgg_small": (0.1, 10.0), "resnet": (1e-3, 10.0)}


def test_ede_forward_sign_and_gradient_formula():
    x = torch.tensor([-2.0, -0.1, 0.0, 0.3, 4.0], requires_grad=True)
    t, k = 2.5, 1.0
    y = _EDESign.apply(x, t, k)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]  # sign(0) = +1
    y.backward(torch.ones_like(x))
    expect = k * t * (1 - torch.tanh(t * x.detach()) ** 2)
    assert torch.allclose(x.grad, expect)


def test_on_epoch_start_updates_every_ede_quantizer():
    m = random_method_model("sdbnn", seed=0, hidden=(16, 16), ede_preset="resnet")
    quants = [q for q in m.modules() if isinstance(q, EDEBinaryQuant)]
    assert len(quants) == 4  # 2 activations + 2 weights
    m.on_epoch_start(7, 10)
    t, k = ede_t_k(7, 10, 1e-3, 10.0)
    assert all(q.t == pytest.approx(t) and q.k == pytest.approx(k) for q in quants)


def test_wsd_shift_and_gradient():
    p = WeightSelfDistribution(3, factor=0.01)
    w = torch.randn(3, 5, requires_grad=True)
    out = p(w)
    expect = w + 0.5 * 0.01 * w.mean(dim=1, keepdim=True)
    assert torch.allclose(out, expect)
    out.sum().backward()
    assert p.a.grad is not None and torch.allclose(w.grad, torch.ones_like(w))  # mean is detached


def _weights_after_cleanup(path):
    """Each MatMul's {-1,+1} weight in graph order, torch layout [out, in]."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.util.cleanup import cleanup_model

    w = cleanup_model(ModelWrapper(str(path)))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in w.model.graph.initializer}
    producer = {o: n for n in w.model.graph.node for o in n.output}
    out = []
    for n in w.model.graph.node:
        if n.op_type == "MatMul":
            q = producer[n.input[1]]
            assert q.op_type == "BipolarQuant" and q.input[0] in inits  # WSD folded into a constant
            out.append(binary_quant(inits[q.input[0]], inits[q.input[1]]).T)
    return out


def test_wsd_folds_into_exported_sign_bits(tmp_path):
    m = random_method_model("sdbnn", seed=1, hidden=(32, 16), wsd_factor=20.0)  # big shift: signs change
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    assert check_export(m, path, images(16))["max_abs_diff"] <= 1e-5
    exported = _weights_after_cleanup(path)
    hidden = [mod for mod in m.modules() if hasattr(mod, "parametrizations")]
    changed = 0
    for mod, wq in zip(hidden, exported):
        w_prime = mod.weight.detach()            # w' through the parametrization
        w_latent = mod.parametrizations.weight.original.detach()
        assert np.array_equal(wq, np.where(w_prime.numpy() >= 0, 1.0, -1.0).astype(np.float32))
        changed += int((torch.sign(w_latent) != torch.sign(w_prime)).sum())
    assert changed > 0


def test_static_form_builds_and_matches_torch(tmp_path):
    from bnnforge.sim.golden import execute, quantize_inputs
    from tests.flows.helpers import export_and_build, torch_outputs

    m = random_method_model("sdbnn", seed=2, hidden=(64, 32))
    streamlined, hw, _ = export_and_build(m, tmp_path)
    x = images(200, seed=5)
    assert np.array_equal(execute(hw, quantize_inputs(streamlined, x)), torch_outputs(m, x).argmax(1))


def test_dynamic_se_form_exports_exactly_and_is_rejected_by_the_compiler(tmp_path):
    from tests.flows.helpers import export_and_build

    m = random_method_model("sdbnn_se", seed=3, hidden=(64, 32), se_reduction=8)
    se = [mod for mod in m.modules() if isinstance(mod, SEActivationShift)]
    assert len(se) == 2 and se[0].fc1.out_features == 8
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    assert check_export(m, path, images(16, seed=4))["max_abs_diff"] <= 1e-5
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"GlobalAveragePool", "Gemm", "Relu", "Sigmoid"} <= ops
    (tmp_path / "b").mkdir()
    with pytest.raises(BnnforgeError, match=r"\(GlobalAveragePool\): a per-image statistic .* cannot stream.*"
                                            r"asd: static"):
        export_and_build(m, tmp_path / "b")
