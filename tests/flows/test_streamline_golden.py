"""Golden (integer, packed bits) vs torch: argmax equal on every input, and the last
layer's integer accumulators are exactly an affine image of torch's logits."""
import numpy as np
import pytest

from bnnforge.sim.golden import binary_dot, execute, quantize_inputs
from tests.flows.helpers import export_and_build, random_model, torch_outputs


@pytest.mark.parametrize("weight_scaling", ["none", "per_channel"])
@pytest.mark.parametrize("act", ["bipolar", "unipolar"])
@pytest.mark.parametrize("topology", ["digits_mlp", "tfc", "sfc", "lfc"])
def test_golden_equals_torch_random_init(tmp_path, topology, act, weight_scaling):
    m = random_model(topology, act, seed=11, weight_scaling=weight_scaling)
    streamlined, hw, _ = export_and_build(m, tmp_path)
    x = np.random.default_rng(3).random((200,) + m.spec.input_shape, dtype=np.float32)
    logits = torch_outputs(m, x)
    q = quantize_inputs(streamlined, x)
    labels_s = execute(streamlined, q)
    labels_h = execute(hw, q)
    assert np.array_equal(labels_s, logits.argmax(1))
    assert np.array_equal(labels_h, logits.argmax(1))
    assert len(np.unique(labels_h)) > 1, "degenerate network: every input gets the same label"
    # last-layer accumulators: logits = s * acc + b with one s > 0 and one b
    _, env = execute(hw, q, return_all=True)
    acc = env[hw.graph.node[-1].input[0]]
    a = np.vstack([acc.ravel(), np.ones(acc.size)]).T
    (s, b), *_ = np.linalg.lstsq(a, logits.ravel().astype(np.float64), rcond=None)
    assert s > 0
    assert np.allclose(s * acc + b, logits, rtol=1e-5, atol=1e-4)


def test_binary_dot_modes_against_plain_matmul():
    rng = np.random.default_rng(0)
    w = rng.choice([-1, 1], size=(7, 37))
    xb = rng.choice([-1, 1], size=(5, 37))
    assert np.array_equal(binary_dot(xb, w, "bipolar"), xb @ w.T)
    xu = rng.integers(0, 2, size=(5, 37))
    assert np.array_equal(binary_dot(xu, w, "unipolar"), xu @ w.T)
    xi = rng.integers(-8, 8, size=(5, 37))
    assert np.array_equal(binary_dot(xi, w, "int"), xi @ w.T)


def test_negative_batchnorm_scale_flips_rows(tmp_path):
    """All-negative BN gammas: every row must be flipped and the network stays exact."""
    import torch

    m = random_model("tfc", "unipolar", seed=5)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.weight.copy_(-mod.weight.abs() - 0.1)
    streamlined, hw, _ = export_and_build(m, tmp_path)
    x = np.random.default_rng(4).random((200, 1, 28, 28), dtype=np.float32)
    assert np.array_equal(execute(hw, quantize_inputs(streamlined, x)), torch_outputs(m, x).argmax(1))
