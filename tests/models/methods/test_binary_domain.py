"""Binary domain / sparse BNN: {alpha, beta} weights as scale * integers, sparsity regularizer."""
import numpy as np
import onnx
import pytest
import torch

from bnnforge.models.errors import BnnforgeError
from bnnforge.models.export import check_export
from bnnforge.models.methods import build_method_model
from bnnforge.models.methods.binary_domain import BinaryDomainLinear, SparsityRegularizer
from bnnforge.models.methods.export import export_method_qonnx, read_method_metadata, recover_binary_domain
from tests.models.methods.helpers import images, random_method_model


def test_closed_form_init():
    torch.manual_seed(0)
    layer = BinaryDomainLinear(64, 32, q=64)
    w = layer.latent_weight.detach()
    beta, alpha = float(w[w > 0].mean()), float(w[w <= 0].mean())
    c = beta - alpha
    assert float(layer.log_c.exp()) == pytest.approx(c, rel=1e-6)
    assert float(layer.ratio) == pytest.approx(alpha / c, rel=1e-6)
    # alpha is rounded to a multiple of c / q
    assert abs(layer.alpha - alpha) <= c / 64 / 2 + 1e-7
    assert layer.beta - layer.alpha == pytest.approx(c, rel=1e-6)
    assert layer.tau == pytest.approx(c / 2, rel=1e-6)


@pytest.mark.parametrize("q", [1, 4, 8, 32])
def test_quant_weight_is_scale_times_two_integers(q):
    torch.manual_seed(q)
    layer = BinaryDomainLinear(40, 24, q=q)
    with torch.no_grad():
        layer.ratio.fill_(-0.13)  # an asymmetric domain
    w = layer.quant_weight().detach()
    ints, m, scale = layer.integer_weight()
    assert set(ints.unique().tolist()) <= {m, m + q}
    assert torch.equal(w, torch.tensor(scale, dtype=torch.float32) * ints.float())
    b = (layer.latent_weight > 0)
    assert torch.equal(ints == m + q, b)  # the B = 1 ("sparse") positions are w > 0
    assert m == round(-0.13 * q)


def test_bad_q_refused():
    with pytest.raises(BnnforgeError, match="q must be a power of two, got 6"):
        BinaryDomainLinear(8, 8, q=6)


def test_ste_gradients_reach_latent_weights_and_domain():
    torch.manual_seed(1)
    layer = BinaryDomainLinear(16, 8)
    x = torch.randn(5, 16)
    layer(x).pow(2).sum().backward()
    for p in (layer.latent_weight, layer.log_c, layer.ratio):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_regularizer_lambda_and_zero_below_ec():
    model = random_method_model("binary_domain", seed=0, hidden=(32, 16))
    reg = SparsityRegularizer(ec=0.2, gamma=0.04)
    p = float(reg.ones_fraction(model))
    assert 0.3 < p < 0.7
    ce = torch.tensor(1.7)
    val = reg(model, ce)
    # lambda * h = gamma * CE / (1 - gamma) in value; the gradient goes through h only
    assert float(val) == pytest.approx(0.04 * 1.7 / 0.96, rel=1e-5)
    val.backward()
    g = [m.latent_weight.grad for m in model.modules() if isinstance(m, BinaryDomainLinear)]
    assert all(float(gg.min()) > 0 for gg in g)  # descending lowers every latent weight: fewer ones
    assert float(SparsityRegularizer(ec=0.9, gamma=0.04)(model, ce)) == 0.0
    assert float(SparsityRegularizer(ec=0.2, gamma=0.0)(model, ce)) == 0.0
    assert float(SparsityRegularizer(ec=p - 5e-5, gamma=0.5)(model, ce)) == 0.0  # h <= 1e-4


def test_export_exact_and_integer_matrix_recovered(tmp_path):
    model = random_method_model("binary_domain", seed=4, q=8)
    with torch.no_grad():
        layers = [m for m in model.modules() if isinstance(m, BinaryDomainLinear)]
        layers[0].ratio.fill_(0.0)       # alpha = 0: a truly sparse layer, ints {0, 8}
        layers[1].ratio.fill_(-0.3)      # asymmetric: ints {-2, 6}
    path = export_method_qonnx(model, tmp_path / "m.onnx")
    r = check_export(model, path, images(24, seed=3))
    assert r["max_abs_diff"] <= 1e-5, r
    proto = onnx.load(str(path))
    assert read_method_metadata(proto)["binary_domain_q"] == 8
    rec = recover_binary_domain(proto)
    assert len(rec) == 2
    for layer, got in zip(layers, rec):
        ints, m, scale = layer.integer_weight()
        assert got["q"] == 8 and got["m"] == m and got["scale"] == np.float32(scale)
        assert np.array_equal(got["B"], (layer.latent_weight > 0).numpy().astype(np.uint8))
        w_torch = layer.quant_weight().detach().numpy()
        w_back = np.float32(got["scale"]) * (got["q"] * got["B"].astype(np.float32) + got["m"])
        assert np.array_equal(w_back.astype(np.float32), w_torch)
    assert [g["m"] for g in rec] == [0, -2]


def test_recover_needs_q_when_one_level(tmp_path):
    model = random_method_model("binary_domain", seed=5, hidden=(16, 8))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BinaryDomainLinear):
                m.latent_weight.copy_(-m.latent_weight.abs() - 0.01)   # all B = 0
    from bnnforge.models.export import export_qonnx
    path = export_qonnx(model, tmp_path / "plain.onnx", (1, 1, 8, 8))  # no metadata
    with pytest.raises(BnnforgeError, match="pass q"):
        recover_binary_domain(str(path))
    rec = recover_binary_domain(str(path), q=8)
    assert all(r["ones_fraction"] == 0.0 and r["q"] == 8 for r in rec)


def test_short_training_with_regularizer_lowers_ones_fraction(tmp_path):
    from bnnforge.models.data import load_dataset
    from bnnforge.models.methods import train_method

    data = load_dataset("digits")
    kw = dict(hidden=(64, 64), progress=False)
    free = train_method("binary_domain", data, tmp_path / "free", 4, 0, params={"gamma": 0.0}, **kw)
    reg = train_method("binary_domain", data, tmp_path / "reg", 4, 0, params={"ec": 0.1, "gamma": 0.3}, **kw)
    p_free = free["method_stats"]["ones_fraction"]
    p_reg = reg["method_stats"]["ones_fraction"]
    assert p_reg < p_free - 0.1, (p_free, p_reg)
    assert reg["test_acc"] > 0.5


def test_block_regularizer_value_occupancy_and_gradient():
    """Group lasso on relu(w + margin) per PE x SIMD block: the value by hand, the share
    of blocks holding a 1 of B, and no pull at all on a block already empty."""
    import torch

    from bnnforge.models.methods.binary_domain import BlockSparsityRegularizer

    m = build_method_model("binary_domain", hidden=(4, 4), input_shape=(1, 2, 4), num_classes=2,
                           blocks=[[2, 4], [2, 2]], block_lambda=0.5, block_margin=0.1, gamma=0.0)
    l0, l1 = [x for x in m.modules() if isinstance(x, BinaryDomainLinear)]
    with torch.no_grad():
        l0.latent_weight.copy_(torch.full((4, 8), -0.5))
        l0.latent_weight[0, 1] = 0.3                      # block (0, 0) holds a 1
        l1.latent_weight.copy_(torch.full((4, 4), 0.2))   # every block holds 1s
    reg = BlockSparsityRegularizer([[2, 4], [2, 2]], block_lambda=0.5, block_margin=0.1)
    assert reg.occupancy(m) == [0.25, 1.0]
    expect = 0.5 * ((0.4 + 0 + 0 + 0) / 4 + (4 * 0.3 * 2) / 4)   # per-block L2 norms, mean per layer
    assert float(reg(m)) == pytest.approx(expect, rel=1e-5)
    assert float(m.regularization(torch.tensor(1.0))) == pytest.approx(expect, rel=1e-5)  # registered on the model
    l0.latent_weight.grad = None
    reg(m).backward()
    g = l0.latent_weight.grad
    assert torch.all(g[2:, :] == 0) and torch.all(g[:, 4:] == 0)   # empty blocks: no pull
    assert g[0, 1] > 0 and torch.count_nonzero(g[:2, :4]) == 1      # only the positive weight is pushed down


def test_block_regularizer_bad_blocks_refused():
    with pytest.raises(BnnforgeError, match=r"blocks\[0\] = \[3, 4\] does not tile layer 0 \(16 x 64\)"):
        build_method_model("binary_domain", hidden=(16, 8), blocks=[[3, 4], [2, 2]])
    with pytest.raises(BnnforgeError, match="blocks gives 1 \\[PE, SIMD\\] pairs for 2"):
        build_method_model("binary_domain", hidden=(16, 8), blocks=[[2, 4]])
