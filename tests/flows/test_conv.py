"""Convolutional BNNs end to end: golden vs torch, RTL (Verilator) vs golden beat for
beat, measured cycles per frame, padding semantics, bad conv geometry, automatic folding."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bnnforge.errors import BnnforgeError
from bnnforge.finn_flows.builder import build
from bnnforge.finn_flows.config import load_config
from bnnforge.finn_flows.steps.target_fps_parallelization import choose_folding
from bnnforge.hw.stages.mvtu import mvtu_pipe_every
from bnnforge.models.export import export_qonnx
from bnnforge.models.topologies import build_custom_cnv, randomize_batchnorm
from bnnforge.sim.bulk import run_network_bulk
from bnnforge.sim.golden import execute, quantize_inputs
from tests.flows.helpers import HW_STEPS, export_and_build, random_model, torch_outputs

REPO = Path(__file__).resolve().parents[2]
FOLD = REPO / "configs" / "folding"
AUTO_STEPS = ["tidy_up", "streamline", "convert_to_hw", "target_fps_parallelization", "apply_folding", "estimates"]


def cifar_like(n, seed=0):
    """CIFAR-format inputs: 3x32x32 uint8 images scaled to [0, 1], smooth enough to be
    image-like (a random low-resolution image upsampled, plus pixel noise)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(n, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    img = np.clip(low + rng.integers(-24, 25, size=low.shape), 0, 255).astype(np.uint8)
    return img.astype(np.float32) / 255.0


def custom_cnv(act, pad, seed=3, shape=(2, 6, 6)):
    torch.manual_seed(seed)
    m = build_custom_cnv(shape, (8, 8), (16,), 10, act, pool_after=(1,), conv_pad=pad)
    randomize_batchnorm(m, torch.Generator().manual_seed(seed))
    return m.eval()


def _rtl(tmp_path, model, x, folding=None, expect_cycles=None, **cfg):
    streamlined, hw, bdir = export_and_build(model, tmp_path, steps=HW_STEPS + ["codegen"],
                                             folding_config_file=str(folding) if folding else None, **cfg)
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    assert np.array_equal(golden, torch_outputs(model, x).argmax(1))
    res = run_network_bulk(bdir / "rtl", q, golden, seed=5)
    assert res["output_beats"] == len(x) and res["rtl_mismatches"] == 0, res["first_mismatches"]
    assert res["tlast_correct"]
    assert np.array_equal(np.array(res["labels_rtl"]), golden)
    if expect_cycles is not None:
        assert res["cycles_per_frame_ideal"] == expect_cycles
        assert abs(res["cycles_per_frame_measured"] - expect_cycles) <= 0.02 * expect_cycles, res
    return res, bdir


@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_cnv_golden_argmax_equals_torch_on_200_inputs(tmp_path, act):
    m = random_model("cnv", act, seed=11)
    streamlined, hw, _ = export_and_build(m, tmp_path, folding_config_file=str(FOLD / "cnv_bnn_pynq.json"))
    x = cifar_like(200, seed=1)
    t = torch_outputs(m, x)
    assert len(np.unique(t.argmax(1))) > 1  # not a degenerate constant classifier
    q = quantize_inputs(streamlined, x)
    assert q.shape == (200, 32, 32 * 3) or q.reshape(200, -1).shape == (200, 3 * 32 * 32)
    assert q.min() >= -128 and q.max() <= 127
    for g in (streamlined, hw):
        assert np.array_equal(execute(g, q), t.argmax(1))


@pytest.mark.rtl
@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_cnv_bnn_pynq_folding_rtl_bit_exact_32768_cycles(tmp_path, act):
    m = random_model("cnv", act, seed=12)
    res, bdir = _rtl(tmp_path, m, cifar_like(20, seed=2), FOLD / "cnv_bnn_pynq.json", expect_cycles=32768)
    man = json.loads((bdir / "rtl" / "manifest.json").read_text())
    assert [s["kind"] for s in man["stages"]].count("window") == 6
    assert [s["kind"] for s in man["stages"]].count("pool") == 2


@pytest.mark.rtl
@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_digits_cnv_rtl_bit_exact(tmp_path, act):
    m = random_model("digits_cnv", act, seed=13)
    x = np.random.default_rng(4).random((60, 1, 8, 8), dtype=np.float32)
    _rtl(tmp_path, m, x, FOLD / "digits_cnv.json", expect_cycles=324)


@pytest.mark.rtl
def test_digits_cnv_rtl_under_backpressure(tmp_path):
    m = random_model("digits_cnv", "unipolar", seed=14)
    streamlined, hw, bdir = export_and_build(m, tmp_path, steps=HW_STEPS + ["codegen"],
                                             folding_config_file=str(FOLD / "digits_cnv.json"))
    # every stage names its source node as text (an ONNX string attribute arrives as bytes)
    man = json.loads((bdir / "rtl" / "manifest.json").read_text())
    assert all(isinstance(st["source"], str) and not st["source"].startswith("b'") for st in man["stages"])
    assert "b'" not in (bdir / "rtl" / f"{man['top']}.v").read_text()
    x = np.random.default_rng(5).random((40, 1, 8, 8), dtype=np.float32)
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    res = run_network_bulk(bdir / "rtl", q, golden, p_gap=0.4, p_stall=0.4, seed=9)
    assert res["output_beats"] == 40 and res["rtl_mismatches"] == 0 and res["tlast_correct"]


@pytest.mark.rtl
def test_unipolar_zero_padding_is_exact_in_rtl(tmp_path):
    """{0,1} activations pad with 0 exactly: torch == golden == RTL with padding 1."""
    m = custom_cnv("unipolar", pad=1)
    x = np.random.default_rng(6).random((40, 2, 6, 6), dtype=np.float32)
    res, bdir = _rtl(tmp_path, m, x, folding=None)
    hw = onnx.load(str(bdir / "final_model.onnx"))
    pads = [a.i for n in hw.graph.node if n.op_type == "SlidingWindow" for a in n.attribute if a.name == "PAD"]
    assert pads == [1, 1]


def test_bipolar_zero_padding_refused_with_advice(tmp_path):
    m = custom_cnv("bipolar", pad=1)
    p = export_qonnx(m, tmp_path / "m.onnx", (1, 2, 6, 6))
    cfg = load_config(None, model=str(p), output_dir=str(tmp_path / "b"), steps=HW_STEPS)
    with pytest.raises(BnnforgeError, match=r"node 'Conv_0' \(Conv\): zero padding on bipolar .*"
                                            r"train with padding=0 or with \{0,1\}"):
        build(cfg, progress=False)
    assert not (tmp_path / "b").exists()


def _conv_onnx(tmp_path, edit, act="unipolar"):
    m = custom_cnv(act, pad=0, shape=(2, 8, 8))
    p = export_qonnx(m, tmp_path / "m.onnx", (1, 2, 8, 8))
    model = onnx.load(str(p))
    conv = [n for n in model.graph.node if n.op_type == "Conv"][1]
    edit(model, conv)
    q = tmp_path / "edited.onnx"
    onnx.save(model, str(q))
    return q, conv.name


def _set(node, name, ints):
    for a in node.attribute:
        if a.name == name:
            a.ints[:] = ints
            return
    node.attribute.append(onnx.helper.make_attribute(name, ints))


@pytest.mark.parametrize("what, edit, message", [
    ("dilation", lambda m, c: _set(c, "dilations", [2, 2]), r"dilations \[2, 2\] are not supported"),
    ("strides", lambda m, c: _set(c, "strides", [1, 2]), r"strides \[1, 2\] differ per axis"),
    ("pads", lambda m, c: _set(c, "pads", [0, 1, 0, 1]), r"asymmetric pads \[0, 1, 0, 1\]"),
])
def test_unsupported_conv_geometry_names_the_layer(tmp_path, what, edit, message):
    path, _ = _conv_onnx(tmp_path, edit)
    cfg = load_config(None, model=str(path), output_dir=str(tmp_path / "b"), steps=HW_STEPS)
    with pytest.raises(BnnforgeError) as e:
        build(cfg, progress=False)
    msg = str(e.value)
    # the second conv, by its name in the build's intermediate models (qonnx makes names unique)
    assert "\n" not in msg and "node 'Conv_1' (Conv)" in msg, msg
    import re
    assert re.search(message, msg), msg
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("group, message", [
    (2, r"node 'Conv_1' \(Conv\): weights for 8 input channels per group x group=2 do not match the 8 input"),
    (3, r"node 'Conv_1' \(Conv\): group=3 does not divide its 8 input channels"),
])
def test_inconsistent_conv_group_refused_naming_the_layer(tmp_path, group, message):
    """Grouped convs compile (tests/flows/test_conv_methods.py); a group attribute that
    does not fit the weights or the channels is refused, naming the node."""
    def edit(model, conv):
        _set_group = [a for a in conv.attribute if a.name == "group"]
        if _set_group:
            _set_group[0].i = group
        else:
            conv.attribute.append(onnx.helper.make_attribute("group", group))
    path, _ = _conv_onnx(tmp_path, edit)
    cfg = load_config(None, model=str(path), output_dir=str(tmp_path / "b"), steps=HW_STEPS)
    with pytest.raises(BnnforgeError, match=message):
        build(cfg, progress=False)
    assert not (tmp_path / "b").exists()


def test_pool_that_does_not_tile_names_the_layer(tmp_path):
    m = custom_cnv("unipolar", pad=0, shape=(2, 9, 9))  # 9 -> 7 -> 5: a 2x2 pool does not tile 5x5
    p = export_qonnx(m, tmp_path / "m.onnx", (1, 2, 9, 9))
    cfg = load_config(None, model=str(p), output_dir=str(tmp_path / "b"), steps=HW_STEPS)
    with pytest.raises(BnnforgeError, match=r"\(MaxPool\): a 2x2 pool does not tile the 5x5 feature map"):
        build(cfg, progress=False)


def test_window_simd_must_divide_channels(tmp_path):
    m = random_model("digits_cnv", "unipolar", seed=1)
    with pytest.raises(BnnforgeError, match=r"MVTU_1\.SIMD = 9 must divide the 16 input channels"):
        export_and_build(m, tmp_path, folding={"MVTU_1": {"SIMD": 9}})
    with pytest.raises(BnnforgeError, match=r"SlidingWindow_1 has no folding of its own"):
        export_and_build(m, tmp_path, folding={"SlidingWindow_1": {"SIMD": 4}})


# --- automatic folding -------------------------------------------------------------

def _hw_unfolded(tmp_path, topology="cnv", act="unipolar"):
    m = random_model(topology, act, seed=15)
    _, hw, _ = export_and_build(m, tmp_path, steps=["tidy_up", "streamline", "convert_to_hw"])
    return hw


def test_auto_folding_meets_targets_respects_divisibility_and_grows_with_the_target(tmp_path):
    hw = _hw_unfolded(tmp_path)
    nodes = {n.name: n for n in hw.graph.node}
    prev = None
    for target in (100_000, 33_333, 10_000, 8_100):
        folding, plan = choose_folding(hw, target)
        assert max(r["cycles"] for r in plan) <= target
        for r in plan:
            assert r["MH"] % r["PE"] == 0 and r["MW"] % r["SIMD"] == 0
        # a conv MVTU's SIMD divides its window's channels
        order = list(nodes)
        for name, f in folding.items():
            if name == "Defaults":
                continue
            k = order.index(name)
            if nodes[order[k - 1]].op_type == "SlidingWindow":
                c = next(a.i for a in nodes[order[k - 1]].attribute if a.name == "C")
                assert c % f["SIMD"] == 0
        luts = sum(r["est_luts"] for r in plan)
        if prev is not None:
            assert luts >= prev  # a tighter target never costs less
        prev = luts


def test_auto_folding_is_cheapest_per_layer_among_all_legal_foldings(tmp_path):
    """Brute force over every (PE, SIMD) of one MVTU: no feasible folding has a lower cost."""
    from bnnforge.hw.hwgraph import get_attrs
    from bnnforge.finn_flows.operators.mvtu import mvtu_estimate as _mvtu_estimate

    hw = _hw_unfolded(tmp_path, "tfc")
    target = 200
    folding, plan = choose_folding(hw, target)
    for node in (n for n in hw.graph.node if n.op_type == "MVTU"):
        a = get_attrs(node)
        chosen = _mvtu_estimate(node.name, dict(a, **folding[node.name]))
        for pe in range(1, a["MH"] + 1):
            for simd in range(1, a["MW"] + 1):
                if a["MH"] % pe or a["MW"] % simd:
                    continue
                e = _mvtu_estimate(node.name, dict(a, PE=pe, SIMD=simd))
                if e["cycles"] <= target:
                    assert (e["est_luts"] / 53200 + e["est_bram18"] / 280
                            >= chosen["est_luts"] / 53200 + chosen["est_bram18"] / 280 - 1e-12)


def test_auto_folding_build_writes_editable_json_that_round_trips(tmp_path):
    m = random_model("digits_cnv", "unipolar", seed=16)
    onnx_path = export_qonnx(m, tmp_path / "m.onnx", (1, 1, 8, 8))
    cfg = load_config(None, model=str(onnx_path), output_dir=str(tmp_path / "auto"), steps=AUTO_STEPS,
                      target_cycles_per_frame=400)
    build(cfg, progress=False)
    auto = tmp_path / "auto" / "auto_folding.json"
    folding = json.loads(auto.read_text())
    assert set(folding) == {"Defaults", "MVTU_0", "MVTU_1", "MVTU_2", "MVTU_3"}
    est = json.loads((tmp_path / "auto" / "report" / "estimates.json").read_text())
    assert est["cycles_per_frame_ideal"] <= 400
    assert (tmp_path / "auto" / "report" / "estimates.png").stat().st_size > 5000
    plan = (tmp_path / "auto" / "report" / "auto_folding.md").read_text()
    assert "| MVTU_1 |" in plan and "registered every 'levels/clock' levels for the 10 ns clock" in plan
    # each row's levels per clock is what codegen gives the unit at that clock
    for name, f in folding.items():
        if name != "Defaults":
            row = next(r for r in plan.splitlines() if r.startswith(f"| {name} |"))
            assert row.split("|")[8].strip() == str(mvtu_pipe_every(f["SIMD"], 10.0)), row
    cfg2 = load_config(None, model=str(onnx_path), output_dir=str(tmp_path / "fed"), steps=HW_STEPS,
                       folding_config_file=str(auto))
    build(cfg2, progress=False)
    a = onnx.load(str(tmp_path / "auto" / "final_model.onnx"))
    b = onnx.load(str(tmp_path / "fed" / "final_model.onnx"))
    assert [(n.op_type, list(n.attribute)) for n in a.graph.node] == [(n.op_type, list(n.attribute)) for n in b.graph.node]


def test_auto_folding_rtl_meets_the_target(tmp_path):
    m = random_model("digits_cnv", "bipolar", seed=17)
    onnx_path = export_qonnx(m, tmp_path / "m.onnx", (1, 1, 8, 8))
    cfg = load_config(None, model=str(onnx_path), output_dir=str(tmp_path / "b"), steps=AUTO_STEPS + ["codegen"],
                      target_cycles_per_frame=700)
    build(cfg, progress=False)
    hw = onnx.load(str(tmp_path / "b" / "final_model.onnx"))
    x = np.random.default_rng(8).random((30, 1, 8, 8), dtype=np.float32)
    q = quantize_inputs(hw, x)
    golden = execute(hw, q)
    res = run_network_bulk(tmp_path / "b" / "rtl", q, golden)
    assert res["rtl_mismatches"] == 0 and res["output_beats"] == 30
    assert res["cycles_per_frame_measured"] <= 700 * 1.02


def test_auto_folding_bad_targets(tmp_path):
    m = random_model("digits_cnv", "unipolar", seed=18)
    onnx_path = export_qonnx(m, tmp_path / "m.onnx", (1, 1, 8, 8))
    base = dict(model=str(onnx_path), output_dir=str(tmp_path / "b"), steps=AUTO_STEPS)
    with pytest.raises(BnnforgeError, match=r"node 'MVTU_0': cannot reach 100 cycles per frame; its fastest "
                                            r"folding \(PE 16, SIMD 1\) needs 324 cycles \(SIMD must divide the 1 "):
        build(load_config(None, target_cycles_per_frame=100, **base), progress=False)
    with pytest.raises(BnnforgeError, match=r"node 'MVTU_0': synth_clk_period_ns = 3 leaves 1.50 ns"):
        build(load_config(None, target_cycles_per_frame=1000, synth_clk_period_ns=3, **base), progress=False)
    with pytest.raises(BnnforgeError, match="target_fps = -3 is not a positive number"):
        build(load_config(None, target_fps=-3, **base), progress=False)
    with pytest.raises(BnnforgeError, match="not both"):
        build(load_config(None, target_fps=10, target_cycles_per_frame=10, **base), progress=False)
    with pytest.raises(BnnforgeError, match="a folding is given together with a throughput target"):
        build(load_config(None, target_fps=1000, folding={"MVTU_0": {"PE": 1}}, **base), progress=False)
    with pytest.raises(BnnforgeError, match="needs the step target_fps_parallelization"):
        load_config(None, model=str(onnx_path), output_dir=str(tmp_path / "b"), steps=HW_STEPS, target_fps=10)
    assert not (tmp_path / "b").exists()
