"""Conv forms of the methods: conv blocks, pools after the activation, binary-domain and
grouped convs in torch and in the exported QONNX graph, block sparsity in hardware order."""
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantIdentity
from onnx import helper, numpy_helper

from bnnforge.models.errors import BnnforgeError
from bnnforge.models.export import check_export
from bnnforge.models.methods import METHODS, build_method_model, load_method_config
from bnnforge.models.methods.binary_domain import (BinaryDomainConv2d, BinaryDomainLayer, BinaryDomainLinear,
                                          BlockSparsityRegularizer, SparsityRegularizer)
from bnnforge.models.methods.export import export_method_qonnx, read_method_metadata, recover_binary_domain
from bnnforge.models.methods.ftbnn import FPReLU, GroupedBinaryLinear
from bnnforge.models.methods.train import method_stats
from tests.models.methods.helpers import images, random_method_model

SMALL = dict(conv=(8, 16), pool_after=(1,), hidden=(32,))   # 8x8 -> 6 -> 4 -> pool 2: FC fan-in 16*2*2


def _graph(path):
    g = onnx.load(str(path)).graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    return g, producer, inits


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("name", METHODS)
def test_conv_net_forward_backward_shapes_and_pool_after_activation(name):
    torch.manual_seed(0)
    m = build_method_model(name, **SMALL)
    mods = list(m.layers)
    assert sum(isinstance(x, (QuantConv2d, BinaryDomainConv2d)) for x in mods) == 2
    pools = [i for i, x in enumerate(mods) if isinstance(x, torch.nn.MaxPool2d)]
    assert len(pools) == 1
    # the compiler needs the pool right after the activation quantizer (here of conv 1)
    before = mods[pools[0] - 1]
    assert isinstance(before, QuantIdentity) or isinstance(before[-1], QuantIdentity)
    assert isinstance(mods[pools[0] + 1], torch.nn.Flatten)
    fc = mods[pools[0] + 2]
    assert getattr(fc, "in_features", None) == 16 * 2 * 2
    out = m(torch.rand(5, 1, 8, 8))
    assert out.shape == (5, 10)
    out.pow(2).sum().backward()
    convs = [x for x in mods if isinstance(x, (QuantConv2d, BinaryDomainConv2d))]
    for c in convs:
        w = c.latent_weight if isinstance(c, BinaryDomainConv2d) else \
            (c.parametrizations["weight"].original if hasattr(c, "parametrizations") else c.weight)
        assert w.grad is not None and float(w.grad.abs().sum()) > 0, (name, c)
    assert m.meta() == {"topology": "method_cnv", "method": name, "hidden": [32], "input_shape": [1, 8, 8],
                        "num_classes": 10, "conv": [8, 16], "pool_after": [1], "conv_pad": 0}


@pytest.mark.parametrize("name", METHODS)
def test_conv_net_export_matches_torch(tmp_path, name):
    m = random_method_model(name, seed=1, **SMALL)
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    r = check_export(m, path, images(8, seed=2))
    assert r["max_abs_diff"] <= 1e-5, r
    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 and all(_attrs(n)["pads"] == [0, 0, 0, 0] for n in convs)


def test_mlp_unchanged_without_conv():
    m = build_method_model("bipolar", hidden=(16,))
    assert isinstance(m.layers[1], torch.nn.Flatten) and m.spec.kind == "fc" and m.spec.conv == ()
    assert m.meta()["topology"] == "method_mlp" and "conv" not in m.meta()


def test_binary_domain_conv_weights_two_values_and_conv_math():
    torch.manual_seed(3)
    layer = BinaryDomainConv2d(4, 6, padding=1, q=8)
    assert layer.latent_weight.shape == (6, 4, 3, 3)
    with torch.no_grad():
        layer.ratio.fill_(-0.3)
    w = layer.quant_weight().detach()
    ints, m, scale = layer.integer_weight()
    assert m == round(-0.3 * 8)
    assert set(w.unique().tolist()) == {np.float32(layer.alpha), np.float32(layer.beta)}
    b = (layer.latent_weight > 0).to(torch.float32)
    assert torch.equal(w, torch.tensor(scale, dtype=torch.float32) * (8 * b + m))
    assert torch.equal(ints, (8 * b + m).to(torch.int64))
    x = torch.randn(2, 4, 5, 5)
    y = layer(x)
    assert y.shape == (2, 6, 5, 5)
    assert torch.allclose(y, F.conv2d(x, w, padding=1), atol=1e-6)
    y.sum().backward()
    for p in (layer.latent_weight, layer.log_c, layer.ratio):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_binary_domain_conv_net_exports_quant_on_constant_and_recovers(tmp_path):
    model = random_method_model("binary_domain", seed=4, conv=(8, 16), pool_after=(1,), conv_pad=1, hidden=(32,))
    layers = [x for x in model.modules() if isinstance(x, BinaryDomainLayer)]
    assert [type(x) for x in layers] == [BinaryDomainConv2d, BinaryDomainConv2d, BinaryDomainLinear]
    assert layers[2].in_features == 16 * 4 * 4   # padding 1 keeps 8x8; one pool -> 4x4
    with torch.no_grad():
        layers[0].ratio.fill_(0.0)     # ints {0, 8}
        layers[1].ratio.fill_(-0.3)    # ints {-2, 6}
    for layer in layers[:2]:           # the defining property, per conv layer
        w = layer.quant_weight().detach()
        assert w.unique().numel() == 2
    path = export_method_qonnx(model, tmp_path / "m.onnx")
    r = check_export(model, path, images(8, seed=5))
    assert r["max_abs_diff"] <= 1e-5, r
    g, producer, inits = _graph(path)
    convs = [n for n in g.node if n.op_type == "Conv"]
    assert len(convs) == 2
    for node, layer in zip(convs, layers):
        assert _attrs(node)["pads"] == [1, 1, 1, 1] and _attrs(node)["group"] == 1
        q = producer[node.input[1]]
        assert q.op_type == "Quant" and all(i in inits for i in q.input)
        assert float(inits[q.input[3]]) > 1                                 # bit width: not a 1-bit weight
        assert inits[q.input[0]].shape == (layer.out_channels, layer.in_channels, 3, 3)
        assert np.float32(inits[q.input[1]]) == np.float32(layer.integer_weight()[2])
    proto = onnx.load(str(path))
    assert read_method_metadata(proto)["binary_domain_q"] == 8
    rec = recover_binary_domain(proto)
    assert len(rec) == 3
    for layer, got in zip(layers, rec):
        assert got["B"].shape == tuple(layer.latent_weight.shape)
        assert np.array_equal(got["B"], (layer.latent_weight > 0).numpy().astype(np.uint8))
        assert got["m"] == layer.integer_weight()[1] and got["q"] == 8
    assert [g["m"] for g in rec[:2]] == [0, -2]


def test_sparsity_counts_and_stats_include_conv_layers():
    model = random_method_model("binary_domain", seed=6, **SMALL)
    layers = [x for x in model.modules() if isinstance(x, BinaryDomainLayer)]
    ones = sum(int((x.latent_weight > 0).sum()) for x in layers)
    total = sum(x.latent_weight.numel() for x in layers)
    assert float(SparsityRegularizer().ones_fraction(model).detach()) == pytest.approx(ones / total)
    stats = method_stats(model)
    assert len(stats["layers"]) == 3 and stats["ones_fraction"] == pytest.approx(ones / total)


def _effective_weight(conv):
    """The dense [out, in, 3, 3] weight a 3x3 conv applies, measured by feeding it every
    one-hot 3x3 patch (one output pixel each)."""
    c = conv.in_channels
    basis = torch.eye(c * 9).reshape(c * 9, c, 3, 3)
    with torch.no_grad():
        out = conv(basis)              # [c*9, out, 1, 1]
    return out[:, :, 0, 0].T.reshape(conv.out_channels, c, 3, 3)


def test_ftbnn_conv_groups_block_diagonal_and_first_conv_dense():
    torch.manual_seed(7)
    m = build_method_model("ftbnn", groups=2, **SMALL)
    convs = [x for x in m.modules() if isinstance(x, QuantConv2d)]
    assert [c.groups for c in convs] == [1, 2]
    assert convs[1].weight.shape == (16, 4, 3, 3)
    assert set(_effective_weight(convs[0]).unique().tolist()) == {-1.0, 1.0}
    w = _effective_weight(convs[1])
    assert torch.all(w[:8, 4:] == 0) and torch.all(w[8:, :4] == 0)
    assert set(w[:8, :4].unique().tolist()) == {-1.0, 1.0} and set(w[8:, 4:].unique().tolist()) == {-1.0, 1.0}
    # the first FC takes binary activations here, so it is grouped too
    fcs = [x for x in m.modules() if isinstance(x, GroupedBinaryLinear)]
    assert len(fcs) == 1 and fcs[0].in_features == 64 and fcs[0].groups == 2


@pytest.mark.parametrize("act", ["bipolar", "unipolar"])
def test_ftbnn_conv_net_exports_grouped_conv(tmp_path, act):
    m = random_method_model("ftbnn", seed=8, groups=2, act=act, **SMALL)
    if act == "unipolar":   # threshold before the FPReLU, so the FPReLU meets the {0,1} step at 0
        kinds = [type(x).__name__ for x in list(m.layers)[1:6]]
        assert kinds == ["QuantConv2d", "BatchNorm2d", "ChannelThreshold", "FPReLU", "QuantIdentity"]
    with torch.no_grad():   # negative slopes on some channels: the export flips them (a 4-D Mul)
        for f in m.modules():
            if isinstance(f, FPReLU):
                neg = torch.arange(f.a.numel()) % 3 == 0
                f.a[neg], f.b[neg] = -f.a[neg], -f.b[neg]
    path = export_method_qonnx(m, tmp_path / "m.onnx")
    r = check_export(m, path, images(8, seed=9))
    assert r["max_abs_diff"] <= 1e-5, r
    g, producer, inits = _graph(path)
    convs = [n for n in g.node if n.op_type == "Conv"]
    assert [_attrs(n)["group"] for n in convs] == [1, 2]
    q = producer[convs[1].input[1]]
    assert q.op_type == "BipolarQuant" and inits[q.input[0]].shape == (16, 4, 3, 3)


def test_block_sparsity_on_conv_uses_hardware_column_order():
    m = build_method_model("binary_domain", conv=(4, 8), pool_after=(1,), hidden=(8,), gamma=0.0)
    l0, l1, l2 = [x for x in m.modules() if isinstance(x, BinaryDomainLayer)]
    pe, simd = 4, 2
    with torch.no_grad():
        for layer in (l0, l1, l2):
            layer.latent_weight.fill_(0.2)
        # hardware block (row block 1, column block 5): out channels 4..7, columns 10, 11 of
        # the (ky, kx, c) matrix = kernel position (0, 2), channels 2 and 3
        l1.latent_weight[4:8, 2:4, 0, 2] = -0.5
    reg = BlockSparsityRegularizer([[2, 1], [pe, simd], [4, 8]], block_lambda=1.0, block_margin=0.1)

    def manual(latent, order):
        o, c, k, _ = latent.shape
        cols = [(ky, kx, ch) for ky in range(k) for kx in range(k) for ch in range(c)] if order == "hw" else \
               [(ky, kx, ch) for ch in range(c) for ky in range(k) for kx in range(k)]
        full = 0
        blocks = [(r, j) for r in range(o // pe) for j in range(len(cols) // simd)]
        for r, j in blocks:
            vals = [latent[row, ch, ky, kx] for row in range(r * pe, (r + 1) * pe)
                    for ky, kx, ch in cols[j * simd:(j + 1) * simd]]
            full += any(v > 0 for v in vals)
        return full / len(blocks)

    occ = reg.occupancy(m)
    assert manual(l1.latent_weight.detach(), "hw") == 35 / 36
    assert occ[1] == pytest.approx(35 / 36)
    assert manual(l1.latent_weight.detach(), "torch") == 1.0   # in torch's (c, ky, kx) order no block is empty
    assert occ[0] == 1.0 and occ[2] == 1.0
    reg(m).backward()
    g = l1.latent_weight.grad
    assert torch.all(g[4:8, 2:4, 0, 2] == 0)           # the empty block gets no pull
    mask = torch.ones_like(g, dtype=torch.bool)
    mask[4:8, 2:4, 0, 2] = False
    assert torch.all(g[mask] > 0)


def test_block_sparsity_conv_simd_must_divide_channels():
    with pytest.raises(BnnforgeError, match=r"blocks\[1\] = \[4, 3\]: layer 1 is a 3x3 convolution over 4 "
                                            r"channels; SIMD must divide the channel count"):
        build_method_model("binary_domain", conv=(4, 8), pool_after=(1,), hidden=(8,),
                           blocks=[[2, 1], [4, 3], [4, 8]])
    with pytest.raises(BnnforgeError, match=r"blocks\[0\] = \[3, 1\] does not tile layer 0 \(4 x 9\)"):
        build_method_model("binary_domain", conv=(4, 8), pool_after=(1,), hidden=(8,),
                           blocks=[[3, 1], [4, 4], [4, 8]])


@pytest.mark.parametrize("kw,msg", [
    (dict(name="ftbnn", conv=(6, 8), groups=3),
     r"conv 1 \(6 -> 8 channels\): groups=3 must divide in_channels=6 and out_channels=8"),
    (dict(name="ftbnn", conv=(4, 4), hidden=(30,), groups=4),
     r"hidden layer 0 \(64 -> 30\): groups=4 must divide in_features=64 and out_features=30"),
    (dict(name="bipolar", conv=(4,), pool_after=(0,), input_shape=(1, 9, 9)),
     r"pool after conv 0: the 2x2 max pool needs an even map size, got 7x7"),
    (dict(name="bipolar", conv=(4, 4, 4, 4)),
     r"conv 3: a 3x3 convolution with padding 0 on a 2x2 map leaves no output"),
    (dict(name="bipolar", conv=(4, 4), pool_after=(2,)),
     r"pool_after \[2\]: each entry must be a distinct conv index in 0\.\.1"),
    (dict(name="bipolar", pool_after=(0,)), r"pool_after and conv_pad need convs"),
    (dict(name="bipolar", conv=(4,), conv_pad=-1), r"conv_pad must be a non-negative integer, got -1"),
])
def test_conv_build_errors(kw, msg):
    kw = dict(kw)
    with pytest.raises(BnnforgeError, match=msg):
        build_method_model(kw.pop("name"), **kw)


def test_cnv_configs_build_the_mnist_net():
    for name, method in (("bipolar_cnv", "bipolar"), ("binary_domain_cnv", "binary_domain"), ("ftbnn_cnv", "ftbnn")):
        cfg = load_method_config(name)
        assert cfg["method"] == method and cfg["conv"] == [16, 32, 32] and cfg["pool_after"] == [1, 2]
        m = build_method_model(method, hidden=cfg["hidden"], input_shape=(1, 28, 28), conv=cfg["conv"],
                               pool_after=cfg["pool_after"], conv_pad=cfg["conv_pad"], **cfg["params"])
        assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)
        if method == "ftbnn":
            assert [c.groups for c in m.modules() if isinstance(c, QuantConv2d)] == [1, 2, 2]
            fc = next(x for x in m.modules() if isinstance(x, GroupedBinaryLinear))
            assert (fc.in_features, fc.out_features) == (800, 64)
    assert load_method_config("bipolar")["conv"] == [] and load_method_config("bipolar")["conv_pad"] == 0


def test_train_method_passes_conv_config_through(tmp_path):
    import json

    from bnnforge.models.data import load_dataset
    from bnnforge.models.methods import train_method

    data = load_dataset("digits")
    cfg = {"method": "bipolar", "conv": [4, 8], "pool_after": [1], "conv_pad": 0, "hidden": [16],
           "train": {"batch_size": 256, "lr": 0.01}}
    res = train_method("bipolar", data, tmp_path / "cnv", 1, 0, config=cfg)
    assert res["model"].spec.conv == (4, 8) and res["model"].spec.pool_after == (1,)
    meta = json.loads((tmp_path / "cnv" / "metrics.json").read_text())["meta"]
    assert meta["topology"] == "method_cnv" and meta["conv"] == [4, 8]
    mlp = train_method("bipolar", data, tmp_path / "mlp", 1, 0, config=cfg, conv=())
    assert mlp["model"].spec.conv == () and mlp["model"].meta()["topology"] == "method_mlp"
    padded = train_method("bipolar", data, tmp_path / "pad", 1, 0, config=cfg, conv_pad=1, pool_after=(0, 1))
    assert padded["model"].spec.conv_pad == 1 and padded["model"].spec.pool_after == (0, 1)


def test_block_sparsity_of_the_fc_after_the_convs_uses_the_streamed_order():
    """The first FC layer after the convs sees the map flattened by torch as (c, y, x),
    the hardware streams it as (y, x, c) (streamline permutes the weight columns), so its
    blocks are cut in the streamed order: an empty hardware block stays empty."""
    import torch
    from bnnforge.models.methods.binary_domain import BinaryDomainLinear, BlockSparsityRegularizer

    m = build_method_model("binary_domain", conv=(4, 8), pool_after=(1,), hidden=(16,))
    fc = next(l for l in m.modules() if isinstance(l, BinaryDomainLinear))
    assert fc.input_chw == (8, 2, 2)
    with torch.no_grad():
        fc.latent_weight.fill_(0.5)
        # hardware block (PE 4 rows 0..3, SIMD 4 = pixel (0, 1), channels 4..7) in torch's (c, y, x)
        for c in range(4, 8):
            fc.latent_weight[0:4, c * 4 + 0 * 2 + 1] = -0.5
    reg = BlockSparsityRegularizer([[4, 1], [4, 4], [4, 4]])
    occ = reg.occupancy(m)
    assert occ[2] == 1 - 1 / (4 * 8)
