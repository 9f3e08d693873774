"""The residual BNN family (models/residual.py): the shared-quantizer idiom in torch and in
the QONNX graphs of both exporters, torch == qonnx execution, bad parameters, training."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model

from bnnforge.models.errors import BnnforgeError
from bnnforge.models.export import check_export, export_qonnx
from bnnforge.models.methods.train import train_method
from bnnforge.models.residual import (ResidualBlock, ResidualFPReLU, build_residual_model, parameter_counts,
                                      residual_adds)
from bnnforge.models.topologies import randomize_batchnorm
from tests.conftest import MNIST_T10K

TINY = dict(stem=4, stages=[[4, 1], [8, 1], [8, 1]])   # 3 blocks, two of them downsampling


@torch.no_grad()
def random_residual(seed=0, input_shape=(1, 12, 12), **params):
    """A residual net with random BatchNorm statistics, thresholds, scales and FPReLU slopes
    (a third of the channels with both slopes negative), in eval mode."""
    torch.manual_seed(seed)
    m = build_residual_model(input_shape=input_shape, **dict(TINY, **params))
    g = torch.Generator().manual_seed(seed)
    randomize_batchnorm(m, g, calibration=torch.rand((32,) + tuple(input_shape), generator=g))
    for mod in m.modules():
        for attr, sd in (("threshold", 0.3), ("log_scale", 0.5)):
            p = getattr(mod, attr, None)
            if isinstance(p, torch.nn.Parameter) and p.requires_grad and p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * sd)
        if isinstance(mod, ResidualFPReLU):
            neg = torch.rand(mod.a.shape, generator=g) < 0.33
            mod.a.copy_(torch.where(neg, -mod.a.abs() - 0.1, mod.a.abs() + 0.1))
            mod.b.copy_(torch.where(neg, -mod.b.abs() - 0.1, mod.b.abs() + 0.1))
    return m.eval()


def _blocks(m):
    return [b for b in m.modules() if isinstance(b, ResidualBlock)]


CASES = [
    dict(block="sibnn"),
    dict(block="ftbnn"),
    dict(block="sibnn", binary_act="bipolar"),
    dict(block="ftbnn", binary_act="bipolar", head="global_pool", input_quant="uint4"),
    dict(block="sibnn", act_bits=2, head="global_pool"),
    dict(block="ftbnn", act_bits=4, input_quant="int8"),
    dict(block="sibnn", act_bits=8, input_quant="uint4"),
]


@pytest.mark.parametrize("params", CASES, ids=lambda p: "-".join(f"{v}" for v in p.values()))
def test_shared_quantizer_in_torch_and_torchscript_export(tmp_path, params):
    m = random_residual(seed=3, **params)
    blocks = _blocks(m)
    assert len(blocks) == 3 and [b.projection for b in blocks] == [False, True, True]
    # identity shortcut: the block's add quantizer is the very instance that produced its input
    assert blocks[0].add_quant is m.stem[-1]
    assert blocks[1].add_quant is not blocks[0].out_quant and blocks[2].add_quant is not blocks[1].out_quant
    x = np.random.default_rng(4).random((6, 1, 12, 12), dtype=np.float32)
    path = export_qonnx(m, tmp_path / "m.onnx", (1, 1, 12, 12))
    r = check_export(m, path, x)
    assert r["max_abs_diff"] <= 1e-5 and r["argmax_agreement"] == 1.0, r
    for proto in (onnx.load(str(path)), cleanup_model(ModelWrapper(str(path))).model):
        adds = residual_adds(proto)
        assert len(adds) == 3, adds
        assert all(a["bit_width"] == params.get("act_bits", 1) for a in adds)
    pads = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Pad"]
    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    conv_pads = [list(next(a.ints for a in n.attribute if a.name == "pads")) for n in convs]
    n3x3 = 7 if params["block"] == "sibnn" else 4
    if params.get("binary_act") == "bipolar":
        # {-1,+1} streams have no 0: their 3x3 convs pad with -1 by a Pad node; a 4-bit image has the level 0
        zero_padded_stem = int(params.get("input_quant", "binary") != "binary")
        assert len(pads) == n3x3 - zero_padded_stem
        assert sum(p == [1, 1, 1, 1] for p in conv_pads) == zero_padded_stem
    else:
        assert not pads and sum(p == [1, 1, 1, 1] for p in conv_pads) == n3x3


@pytest.mark.parametrize("params", [CASES[0], CASES[3], dict(block="ftbnn", act_bits=3)],
                         ids=["sibnn", "ftbnn-bipolar-pool", "ftbnn-k3"])
def test_dynamo_export_keeps_the_idiom_and_matches_torch(tmp_path, params):
    m = random_residual(seed=5, **params)
    path = export_qonnx(m, tmp_path / "m.onnx", (1, 1, 12, 12), dynamo=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]    # one self-contained file
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Relu" not in ops and ops & {"Quant", "BipolarQuant"}, ops   # quantizers, not decomposed math
    assert len(residual_adds(cleanup_model(ModelWrapper(str(path))).model)) == 3
    r = check_export(m, path, np.random.default_rng(6).random((6, 1, 12, 12), dtype=np.float32))
    assert r["max_abs_diff"] <= 1e-5 and r["argmax_agreement"] == 1.0, r


def test_cifar_shape_and_more_blocks_per_stage(tmp_path):
    m = random_residual(seed=7, input_shape=(3, 32, 32), stem=4, stages=[[4, 2], [8, 2]], block="sibnn",
                        act_bits=3, input_quant="int8")
    assert [b.projection for b in _blocks(m)] == [False, False, True, False]
    assert m.output_map == (8, 16, 16)
    path = export_qonnx(m, tmp_path / "m.onnx", (1, 3, 32, 32))
    adds = residual_adds(path)
    assert len(adds) == 4
    # the identity block after the downsampling one shares that block's output quantizer
    assert _blocks(m)[3].add_quant is _blocks(m)[2].out_quant
    r = check_export(m, path, np.random.default_rng(8).random((3, 3, 32, 32), dtype=np.float32))
    assert r["max_abs_diff"] <= 1e-5, r


def test_idiom_check_refuses_a_float_shortcut_and_mismatched_scales(tmp_path):
    path = export_qonnx(random_residual(seed=1, block="sibnn", act_bits=2), tmp_path / "m.onnx", (1, 1, 12, 12))
    proto = cleanup_model(ModelWrapper(str(path))).model
    add = next(n for n in proto.graph.node if n.op_type == "Add")
    producer = {o: n for n in proto.graph.node for o in n.output}
    q = producer[add.input[0]]
    scale = next(t for t in proto.graph.initializer if t.name == q.input[1])
    proto.graph.initializer.append(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) * 2, "scale2"))
    q.input[1] = "scale2"
    with pytest.raises(BnnforgeError, match=f"Add node '{add.name}'.*quantized differently"):
        residual_adds(proto)
    add.input[0] = q.input[0]    # the float tensor in front of the quantizer
    with pytest.raises(BnnforgeError, match=f"Add node '{add.name}'.*not from activation quantizers"):
        residual_adds(proto)


@pytest.mark.parametrize("kw, match", [
    (dict(act_bits=9), "act_bits must be an integer in 1..8"),
    (dict(act_bits=0), "act_bits must be an integer in 1..8"),
    (dict(block="resnet"), "unknown block 'resnet'"),
    (dict(binary_act="ternary"), "unknown binary_act"),
    (dict(stages=[]), "stages must be a non-empty list"),
    (dict(stages=[[8, 0]]), r"stages\[0\] blocks must be an integer"),
    (dict(stages=[[4, 1]] * 6), "stage 5 would halve a 1x1 map"),
    (dict(head="max"), "unknown head"),
    (dict(input_shape=(1, 12, 10)), "H == W"),
    (dict(widths=[4]), "unknown parameter"),
    (dict(scale_init=0), "scale_init must be positive"),
])
def test_bad_parameters_are_one_line_errors(kw, match):
    with pytest.raises(BnnforgeError, match=match):
        build_residual_model(**{**TINY, "input_shape": (1, 12, 12), **kw})


def test_v_shaped_fprelu_before_a_kbit_activation_refuses_export_and_writes_nothing(tmp_path):
    m = random_residual(seed=2, block="ftbnn", act_bits=2)
    f = next(x for x in m.modules() if isinstance(x, ResidualFPReLU))
    with torch.no_grad():
        f.a[1], f.b[1] = 0.5, -0.5
    with pytest.raises(BnnforgeError, match="FPReLU channel 1: .*V-shaped"):
        export_qonnx(m, tmp_path / "out" / "m.onnx", (1, 1, 12, 12))
    assert not (tmp_path / "out").exists()


def test_fprelu_export_slope_is_exact_before_an_unsigned_quantizer():
    f = ResidualFPReLU(4, next_kind="unsigned")
    with torch.no_grad():
        f.a.copy_(torch.tensor([0.7, -0.3, -0.2, 0.0]))
        f.b.copy_(torch.tensor([0.2, 0.4, -1.5, 0.0]))
    s = f.sign_equivalent()
    assert s.tolist() == pytest.approx([0.7, 0.0, -1.5, 0.0])
    x = torch.linspace(-3, 3, 61).view(1, 1, -1).expand(1, 4, -1).contiguous()
    relu_q = lambda t: torch.clamp(torch.round(t / 0.25), 0, 3)    # noqa: E731  (an unsigned 2-bit quantizer)
    assert torch.equal(relu_q(f(x)), relu_q(x * s.view(1, -1, 1)))


def test_training_keeps_fprelu_monotonic_before_unipolar_and_kbit_quantizers():
    for kw in (dict(act_bits=1, binary_act="unipolar"), dict(act_bits=3)):
        m = build_residual_model(input_shape=(1, 12, 12), block="ftbnn", **dict(TINY, **kw))
        fs = [f for f in m.modules() if isinstance(f, ResidualFPReLU)]
        with torch.no_grad():
            for f in fs:
                f.a.copy_(torch.tensor([0.5, -0.5, 0.5, -0.5] * (len(f.a) // 4)))
                f.b.copy_(torch.tensor([-0.3, -0.3, 0.3, 0.3] * (len(f.b) // 4)))
        m.clip_latent_weights()
        for f in fs:
            assert f.b.tolist() == pytest.approx([0.0, -0.3, 0.3, 0.3] * (len(f.b) // 4))
            f.sign_equivalent()      # exportable


def test_parameter_counts_and_meta():
    m = build_residual_model(input_shape=(1, 28, 28), stem=16, stages=[[16, 1], [32, 1], [32, 1]])
    counts = parameter_counts(m)
    # stem 9*16, block0 2*9*16*16, block1 9*16*32 + 9*32*32 + 16*32, block2 2*9*32*32 + 32*32, FC 32*7*7*10
    assert counts["binary_weights"] == 144 + 4608 + 4608 + 9216 + 512 + 18432 + 1024 + 15680
    assert m.meta()["stages"] == [[16, 1], [32, 1], [32, 1]] and m.output_map == (32, 7, 7)
    json.dumps(m.meta())
    from bnnforge.models.methods import build_method_model
    chain = build_method_model("ftbnn", hidden=(64,), input_shape=(1, 28, 28), conv=(16, 32, 32), pool_after=(1, 2))
    # conv 0 ungrouped, convs 1-2 in 2 groups, FC 800 -> 64 block-diagonal (2 blocks), last 64 -> 10
    assert parameter_counts(chain)["binary_weights"] == 144 + 2304 + 4608 + 25600 + 640


def test_train_method_on_digits_learns_and_exports(tmp_path):
    from bnnforge.models.data import load_digits

    data = load_digits(seed=0)
    res = train_method("sibnn_resnet", data, tmp_path / "run", 3, seed=0, params=dict(TINY, stages=[[8, 1], [8, 1]]),
                       export=True)
    assert res["test_acc"] > 0.5, res["test_acc"]      # chance is 0.1
    assert res["export_check"]["max_abs_diff"] <= 1e-5
    assert len(residual_adds(res["onnx"])) == 2


def test_cli_trains_the_residual_method(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "bnnforge", "train", "--method", "ftbnn_resnet", "--dataset", "digits",
                        "--epochs", "1", "--param", "stem=4", "--param", "stages=[[4, 1], [4, 1]]", "--out", str(out),
                        "--quiet"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "ftbnn_resnet: test accuracy" in p.stdout and (out / "checkpoint.pt").is_file()
    p = subprocess.run([sys.executable, "-m", "bnnforge", "train", "--method", "ftbnn_resnet", "--dataset", "digits",
                        "--param", "block=sibnn", "--out", str(tmp_path / "bad"), "--quiet"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "bnnforge: error: method 'ftbnn_resnet': block 'sibnn' does not match; the block is 'ftbnn'"]
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_mnist_residual_beats_chance_by_far(tmp_path):
    if not MNIST_T10K.is_dir():
        pytest.skip(f"real MNIST t10k files not present at {MNIST_T10K}")
    from bnnforge.models.data import load_mnist

    with pytest.warns(UserWarning, match="t10k"):
        data = load_mnist(MNIST_T10K)
    assert (len(data.train), len(data.test)) == (8000, 2000)
    res = train_method("sibnn_resnet", data, tmp_path / "run", 1, seed=0, params=dict(stem=8, stages=[[8, 1], [16, 1],
                                                                                                       [16, 1]]))
    assert res["test_acc"] > 0.85, res["test_acc"]
