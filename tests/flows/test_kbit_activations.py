"""k-bit activations between layers (the margin-aware method: sign weights, unsigned
k-bit activations with one positive scale): streamline -> MultiThreshold, MVTU
out_mode "multithreshold", golden vs torch, RTL (bulk Verilator) vs golden beat for
beat with width converters, measured cycles per frame, a short-trained model, a small
conv net (k-bit levels through padding, sliding window and max pool), and the refusals.

On golden vs torch: the hardware's label select takes the argmax of exact integer
accumulators (lowest index on a tie). Torch computes the last layer in float32 on
level * scale with a non-power-of-two scale (2/3 at init), so two classes whose
integer accumulators are equal can come out one float32 ulp apart, and torch's argmax
then picks one of the tied classes by rounding noise. The checks below are therefore:
hidden-layer levels equal torch's exactly (every unit of every frame); the last
layer's golden accumulators are torch's logits up to one positive scale and one bias
(residual at float32 noise, far below one accumulator step); labels are equal on every
frame whose maximum is unique, and on tied frames torch's label is one of the tied
maxima.
"""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bnnforge.errors import BnnforgeError
from bnnforge.finn_flows.builder import build
from bnnforge.finn_flows.config import load_config
from bnnforge.hw.hwgraph import get_attrs, hw_nodes, initializer
from bnnforge.models.methods.export import export_method_qonnx
from bnnforge.sim.golden import execute, quantize_inputs
from tests.flows.helpers import HW_STEPS, torch_outputs
from tests.models.methods.helpers import images, random_method_model

# PE/SIMD > 1 everywhere; producer PE*k != consumer SIMD*k, so both links get a width
# converter (up 4k -> 8k, down 4k -> 2k). Ideal: max(16*4, 8*8, 2*16) = 64 cycles/frame.
FOLD_64_32 = {"MVTU_0": {"PE": 4, "SIMD": 16}, "MVTU_1": {"PE": 4, "SIMD": 8}, "MVTU_2": {"PE": 5, "SIMD": 2}}


def _margin_model(act_bits, seed, hidden=(64, 32)):
    """Random-init margin model (random BatchNorm from random_method_model) with each
    k-bit activation scale moved off its init, so the layers differ."""
    m = random_method_model("margin", seed=seed, hidden=hidden, act_bits=act_bits)
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("scaling_impl.value") and not name.startswith("layers.0."):
                p.add_(torch.randn((), generator=g) * 0.3)
    return m.eval()


def _build(onnx_path, tmp, steps=HW_STEPS, folding=None, **cfg):
    if folding is not None:
        (tmp / "folding.json").write_text(json.dumps(folding))
        cfg["folding_config_file"] = str(tmp / "folding.json")
    config = load_config(None, model=str(onnx_path), output_dir=str(tmp / "build"), steps=steps, **cfg)
    build(config, progress=False)
    b = tmp / "build"
    return (onnx.load(str(b / "intermediate_models" / "01_streamline.onnx")),
            onnx.load(str(b / "final_model.onnx")), b)


def _hidden_levels(model, x, onnx_path):
    """Torch's hidden activations as integer levels: each k-bit QuantIdentity's output
    divided by its scale, read from the exported graph's Quant nodes (in order)."""
    from brevitas.nn import QuantIdentity

    exported = onnx.load(str(onnx_path))
    q_nodes = [n for n in exported.graph.node if n.op_type == "Quant"][1:]
    scales = [float(initializer(exported, n.input[1])) for n in q_nodes]
    outs = []
    h = torch.from_numpy(np.asarray(x, dtype=np.float32))
    with torch.no_grad():
        for i, mod in enumerate(model.layers):
            h = mod(h)
            if i > 0 and isinstance(mod, QuantIdentity):
                outs.append(h.numpy().astype(np.float64))
    assert len(outs) == len(scales)
    levels = []
    for y, s in zip(outs, scales):
        lv = np.rint(y / s)
        assert np.allclose(lv * s, y, rtol=0, atol=1e-6 * s)   # torch's output is level * scale
        levels.append(lv.astype(np.int64))
    return levels


def _compare_with_torch(acc, labels, logits):
    """Golden last-layer accumulators/labels vs torch logits (see the module docstring).
    Returns (frames, tied frames, label agreement)."""
    acc = np.asarray(acc, dtype=np.int64)
    # logits = a * acc + b with one a > 0 and one b for all classes and frames
    a, b = np.polyfit(acc.ravel().astype(np.float64), logits.ravel().astype(np.float64), 1)
    resid = np.abs(a * acc + b - logits).max()
    tol = 1e-5 * max(1.0, float(np.abs(logits).max()))
    assert a > 0 and tol < a / 100, (a, tol)       # one accumulator step is far above the noise
    assert resid <= tol, f"golden accumulators are not torch's logits: residual {resid} (a = {a})"
    tl = logits.argmax(1)
    top = acc == acc.max(1, keepdims=True)
    tied = top.sum(1) > 1
    assert np.array_equal(labels, acc.argmax(1))                     # lowest index among maxima
    assert np.array_equal(labels[~tied], tl[~tied])                  # unique maximum: same label
    assert np.all(top[np.arange(len(tl)), tl])                       # tie: torch picked a tied max
    return len(acc), int(tied.sum()), float((labels == tl).mean())


@pytest.mark.parametrize("act_bits", [2, 3])
def test_streamline_and_hw_graphs_match_torch(tmp_path, act_bits):
    m = _margin_model(act_bits, seed=act_bits)
    path = export_method_qonnx(m, tmp_path / "model.onnx")
    streamlined, hw, _ = _build(path, tmp_path)

    mts = [n for n in streamlined.graph.node if n.op_type == "MultiThreshold"]
    assert len(mts) == 2 and not any(n.op_type == "Threshold" for n in streamlined.graph.node)
    for i, n in enumerate(mts):
        t = initializer(streamlined, n.input[1])
        assert get_attrs(n)["out_bits"] == act_bits and t.shape == (m.spec.hidden[i], 2 ** act_bits - 1)
        assert np.all(np.diff(t, axis=1) >= 0)
    mms = [n for n in streamlined.graph.node if n.op_type == "BinaryMatMul"]
    for n in mms[1:]:   # layers after a k-bit activation take unsigned k-bit integers
        a = get_attrs(n)
        assert (a["input_kind"].decode(), a["input_bits"], a["input_signed"]) == ("int", act_bits, 0)
    mv = hw_nodes(hw, "MVTU")
    assert [get_attrs(n)["out_mode"].decode() for n in mv] == ["multithreshold"] * 2 + ["accumulator"]
    assert [get_attrs(n).get("out_bits") for n in mv[:2]] == [act_bits] * 2
    assert [get_attrs(n)["mode"].decode() for n in mv] == ["addsub"] * 3

    # some weight rows were flipped (negative BatchNorm gammas): levels non-increasing in acc
    w_torch = np.sign(m.layers[2].weight.detach().numpy())
    w_s = initializer(streamlined, mms[0].input[1])
    flipped = np.all(w_s == -w_torch, axis=1)
    assert flipped.any() and (~flipped).any() and np.all(flipped | np.all(w_s == w_torch, axis=1))

    x = images(200, seed=2)
    logits = torch_outputs(m, x)
    assert len(np.unique(logits.argmax(1))) > 1
    q = quantize_inputs(streamlined, x)
    torch_levels = _hidden_levels(m, x, path)
    for tag, g in (("streamlined", streamlined), ("hardware", hw)):
        labels, env = execute(g, q, return_all=True)
        for i, lv in enumerate(torch_levels):
            assert np.array_equal(env[f"layer{i}_out"], lv), f"hidden layer {i} levels differ from torch"
            assert lv.max() == 2 ** act_bits - 1 and lv.min() == 0   # every level range end is used
        ls = next(n for n in g.graph.node if n.op_type == "LabelSelect")
        n, tied, agree = _compare_with_torch(env[ls.input[0]], labels, logits)
        print(f"k={act_bits} {tag}: {n} frames, {tied} tied maxima, label agreement {agree:.3f}")


@pytest.mark.rtl
@pytest.mark.parametrize("act_bits", [2, 3])
def test_rtl_bit_exact_with_width_converters(tmp_path, act_bits):
    from bnnforge.sim.bulk import run_network_bulk
    from bnnforge.sim.runner import lint

    m = _margin_model(act_bits, seed=10 + act_bits)
    path = export_method_qonnx(m, tmp_path / "model.onnx")
    # no label select: the RTL's output is the last layer's accumulators, every bit compared
    streamlined, hw, bdir = _build(path, tmp_path, steps=HW_STEPS + ["codegen"], folding=FOLD_64_32,
                                   label_select=False)
    rtl = bdir / "rtl"
    man = json.loads((rtl / "manifest.json").read_text())
    k = act_bits
    assert [(l["OUT_MODE"], l["OUT_BITS"]) for l in man["layers"]] == [(2, k), (2, k), (1, 1)]
    assert [l["INPUT_BITS"] for l in man["layers"]] == [4, k, k]
    widths = [(s["in_width"], s["out_width"]) for s in man["stages"]]
    assert widths[0][1] == 4 * k and widths[1] == (8 * k, 4 * k) and widths[2][0] == 2 * k
    top = (rtl / f"{man['top']}.v").read_text()
    assert f".IN_WIDTH({4 * k}), .OUT_WIDTH({8 * k})" in top and f".IN_WIDTH({4 * k}), .OUT_WIDTH({2 * k})" in top
    assert top.count(".OUT_MODE(2)") == 2 and top.count(f".OUT_BITS({k})") == 2
    assert lint([rtl / f for f in man["files"]], man["top"]) == []
    # the multi-threshold image is the one hw.memfiles writes for these thresholds
    from bnnforge.hw.memfiles import multithreshold_words
    mv0 = hw_nodes(hw, "MVTU")[0]
    a0 = get_attrs(mv0)
    words = [int(w, 16) for w in (rtl / "layer0_thresholds.mem").read_text().split()]
    assert words == multithreshold_words(initializer(hw, mv0.input[2]), a0["PE"], a0["acc_bits"])
    est = json.loads((bdir / "report" / "estimates.json").read_text())["layers"]
    assert [e["threshold_bits"] for e in est] == [64 * a0["acc_bits"] * (2 ** k - 1),
                                                  32 * est[1]["acc_bits"] * (2 ** k - 1), 0]

    x = images(60, seed=3 + k)
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    assert golden.shape == (60, 10)
    res = run_network_bulk(rtl, q, golden, seed=5)
    assert res["frames"] == 60 and res["output_beats"] == 60 * 2 and res["rtl_mismatches"] == 0, \
        res["first_mismatches"]
    assert res["tlast_correct"]
    assert res["cycles_per_frame_ideal"] == 64
    assert abs(res["cycles_per_frame_measured"] - 64) <= 0.02 * 64, res["cycles_per_frame_measured"]
    # and under random input gaps / output stalls
    res_bp = run_network_bulk(rtl, q, golden, p_gap=0.3, p_stall=0.3, seed=7)
    assert res_bp["rtl_mismatches"] == 0 and res_bp["tlast_correct"]
    print(f"k={k}: {res['frames']} frames, {res['rtl_mismatches']} mismatches, "
          f"{res['cycles_per_frame_measured']} cycles/frame (ideal {res['cycles_per_frame_ideal']})")


@pytest.mark.rtl
def test_trained_margin_model_rtl_and_accuracy(tmp_path):
    from bnnforge.models.data import load_dataset
    from bnnforge.models.methods.train import train_method
    from bnnforge.sim.bulk import run_network_bulk

    data = load_dataset("digits")
    r = train_method("margin", data, tmp_path / "train", epochs=2, hidden=(64, 64), export=True)
    m = r["model"].eval()
    fold = {"MVTU_0": {"PE": 8, "SIMD": 16}, "MVTU_1": {"PE": 8, "SIMD": 8}, "MVTU_2": {"PE": 2, "SIMD": 8}}
    streamlined, hw, bdir = _build(Path(r["onnx"]), tmp_path, steps=HW_STEPS + ["codegen"], folding=fold)
    x, y = np.asarray(data.test.x, dtype=np.float32), np.asarray(data.test.y)
    logits = torch_outputs(m, x)
    q = quantize_inputs(streamlined, x)
    labels, env = execute(hw, q, return_all=True)
    assert np.array_equal(labels, execute(streamlined, q))
    ls = next(n for n in hw.graph.node if n.op_type == "LabelSelect")
    n, tied, agree = _compare_with_torch(env[ls.input[0]], labels, logits)
    res = run_network_bulk(bdir / "rtl", q, labels, seed=3)
    assert res["output_beats"] == len(x) and res["rtl_mismatches"] == 0, res["first_mismatches"]
    assert res["tlast_correct"] and np.array_equal(np.array(res["labels_rtl"]), labels)
    assert abs(res["cycles_per_frame_measured"] - res["cycles_per_frame_ideal"]) <= 0.02 * res["cycles_per_frame_ideal"]
    acc_torch, acc_golden = float((logits.argmax(1) == y).mean()), float((labels == y).mean())
    acc_rtl = float((np.array(res["labels_rtl"]) == y).mean())
    assert acc_torch > 0.8 and abs(acc_golden - acc_torch) <= tied / n + 1e-12
    print(f"trained margin (k=2, 64-64, 2 epochs): {n} test frames, {tied} tied, agreement {agree:.4f}; "
          f"accuracy torch {acc_torch:.4f} golden {acc_golden:.4f} RTL {acc_rtl:.4f}; "
          f"{res['cycles_per_frame_measured']} cycles/frame (ideal {res['cycles_per_frame_ideal']})")


def _refused(tmp_path, model: onnx.ModelProto, pattern):
    import re

    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    before = sorted(p.name for p in tmp_path.iterdir())
    config = load_config(None, model=str(path), output_dir=str(tmp_path / "build"), steps=HW_STEPS + ["codegen"])
    with pytest.raises(BnnforgeError) as e:
        build(config, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and re.search(pattern, msg), msg
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "something was written"


@pytest.mark.rtl
@pytest.mark.parametrize("bits, narrow", [(2, 0), (2, 1), (3, 0), (4, 1)])
def test_signed_multibit_activation_is_exact(tmp_path, bits, narrow):
    """Signed k-bit activations between layers (FINN's W1A2): every hidden Quant made
    signed (and narrow or not), so values run -2^(k-1)(+narrow)..2^(k-1)-1; the wire
    carries value + offset and the next unit subtracts it. The graph executed by qonnx
    is the reference: golden accumulators equal its logits up to the positive affine
    map of the last layer, and the RTL equals golden beat for beat."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    from bnnforge.sim.bulk import run_network_bulk

    path = export_method_qonnx(_margin_model(bits, seed=20 + bits + narrow), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    for q in [n for n in model.graph.node if n.op_type == "Quant"][1:]:
        for a in q.attribute:
            if a.name in ("signed", "narrow"):
                a.i = 1 if a.name == "signed" else narrow
    onnx.save(model, str(path))
    streamlined, hw, b = _build(path, tmp_path, steps=HW_STEPS + ["codegen"], folding=FOLD_64_32,
                                label_select=False)
    offsets = [get_attrs(n).get("input_offset", 0) for n in hw_nodes(hw, "MVTU")]
    assert offsets == [0] + [(1 << (bits - 1)) - narrow] * 2
    x = images(64, seed=5)
    q = quantize_inputs(streamlined, x)
    acc = execute(hw, q).astype(np.float64)
    w = cleanup_model(ModelWrapper(model))
    ref = np.concatenate([execute_onnx(w, {w.graph.input[0].name: x[i:i + 1]})[w.graph.output[0].name]
                          for i in range(len(x))]).astype(np.float64)
    # one positive scale and one bias map the integer accumulators onto qonnx's logits
    slope, icpt = np.polyfit(acc.reshape(-1), ref.reshape(-1), 1)
    assert slope > 0 and np.max(np.abs(acc * slope + icpt - ref)) < 1e-3 * max(1.0, np.abs(ref).max())
    res = run_network_bulk(b / "rtl", q, execute(hw, q), p_gap=0.3, p_stall=0.3, seed=2)
    assert res["rtl_mismatches"] == 0 and res["tlast_correct"], res["first_mismatches"]


def test_refuses_9bit_activation(tmp_path):
    path = export_method_qonnx(_margin_model(9, seed=21), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    path.unlink()
    _refused(tmp_path, model, r"node '[^']+' \(Quant\): 9-bit activation; at most 8-bit activations")



def _kbit_cnv(act_bits, seed):
    """Small conv net with k-bit activations: 2x8x8 uint4 input, conv 3x3 pad 1 (8 ch),
    BatchNorm, k-bit act, 2x2 max pool, conv 3x3 (16 ch), BatchNorm, k-bit act, FC 64 -> 10.
    BatchNorm statistics measured on random images, then random affine (negative gammas)."""
    from torch import nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
    from bnnforge.models.layers import PositiveScalarAffine
    from bnnforge.models.methods.margin import KBitActQuant
    from bnnforge.models.quantizers import BinaryWeightNoScale, Uint4InputQuant

    torch.manual_seed(seed)
    act = lambda: QuantIdentity(act_quant=KBitActQuant.let(bit_width=act_bits, max_val=2.0),  # noqa: E731
                                return_quant_tensor=False)
    m = nn.Sequential(
        QuantIdentity(act_quant=Uint4InputQuant, return_quant_tensor=False),
        QuantConv2d(2, 8, 3, padding=1, bias=False, weight_quant=BinaryWeightNoScale), nn.BatchNorm2d(8), act(),
        nn.MaxPool2d(2),
        QuantConv2d(8, 16, 3, bias=False, weight_quant=BinaryWeightNoScale), nn.BatchNorm2d(16), act(),
        nn.Flatten(), QuantLinear(64, 10, bias=False, weight_quant=BinaryWeightNoScale),
        PositiveScalarAffine(init_scale=0.1))
    g = torch.Generator().manual_seed(seed)
    bns = [mod for mod in m if isinstance(mod, nn.BatchNorm2d)]
    with torch.no_grad():
        m.train()
        for bn in bns:
            bn.momentum = None
        m(torch.rand(256, 2, 8, 8, generator=g))
        for bn in bns:
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.5)
    return m.eval()


@pytest.mark.rtl
def test_conv_kbit_activations_padding_pool_rtl(tmp_path):
    """k-bit levels through the sliding window (zero padding = level 0, exact for
    unsigned levels) and the max pool (EB = k, unsigned compare)."""
    from bnnforge.models.export import export_qonnx
    from bnnforge.sim.bulk import run_network_bulk

    k = 3
    m = _kbit_cnv(k, seed=30)
    path = export_qonnx(m, tmp_path / "model.onnx", (1, 2, 8, 8))
    fold = {"MVTU_0": {"PE": 4, "SIMD": 2}, "MVTU_1": {"PE": 4, "SIMD": 4}, "MVTU_2": {"PE": 2, "SIMD": 4}}
    streamlined, hw, bdir = _build(path, tmp_path, steps=HW_STEPS + ["codegen"], folding=fold)
    ops = [n.op_type for n in hw.graph.node]
    assert ops == ["SlidingWindow", "MVTU", "StreamingMaxPool", "SlidingWindow", "MVTU", "MVTU", "LabelSelect"]
    a = [get_attrs(n) for n in hw.graph.node]
    assert a[2]["EB"] == k and a[3]["EB"] == k and a[0]["EB"] == 4 and a[0]["PAD"] == 1
    x = np.random.default_rng(1).random((60, 2, 8, 8), dtype=np.float32)
    logits = torch_outputs(m, x)
    assert len(np.unique(logits.argmax(1))) > 1
    q = quantize_inputs(streamlined, x)
    for g in (streamlined, hw):
        labels, env = execute(g, q, return_all=True)
        ls = next(n for n in g.graph.node if n.op_type == "LabelSelect")
        _compare_with_torch(env[ls.input[0]], labels, logits)
    res = run_network_bulk(bdir / "rtl", q, labels, seed=2)
    assert res["output_beats"] == 60 and res["rtl_mismatches"] == 0 and res["tlast_correct"], res["first_mismatches"]
    ideal = res["cycles_per_frame_ideal"]
    assert abs(res["cycles_per_frame_measured"] - ideal) <= 0.02 * ideal


@pytest.mark.rtl
@pytest.mark.parametrize("act_bits", [6, 8])
def test_wide_activations_go_through_the_requantizer(tmp_path, act_bits):
    """k > 4: the MVTU streams accumulators into the binary-search requantizer
    (thresholding.v); hidden levels equal torch's, RTL equals golden beat for beat."""
    from bnnforge.sim.bulk import run_network_bulk

    m = _margin_model(act_bits, seed=30 + act_bits)
    path = export_method_qonnx(m, tmp_path / "model.onnx")
    streamlined, hw, bdir = _build(path, tmp_path, steps=HW_STEPS + ["codegen"], folding=FOLD_64_32,
                                   label_select=False)
    th = [n for n in hw.graph.node if n.op_type == "Thresholding"]
    assert len(th) == 2 and [get_attrs(n)["OUT_BITS"] for n in th] == [act_bits] * 2
    assert [get_attrs(n)["out_mode"].decode() for n in hw_nodes(hw, "MVTU")] == ["accumulator"] * 3
    x = images(40, seed=act_bits)
    q = quantize_inputs(streamlined, x)
    _, env = execute(hw, q, return_all=True)
    for i, lv in enumerate(_hidden_levels(m, x, path)):
        assert np.array_equal(env[f"layer{i}_out"], lv), f"hidden layer {i} levels differ from torch"
    golden = execute(hw, q)
    res = run_network_bulk(bdir / "rtl", q, golden, p_gap=0.2, p_stall=0.2, seed=3)
    assert res["rtl_mismatches"] == 0 and res["tlast_correct"] and res["output_beats"] == 40 * 2, \
        res["first_mismatches"]
