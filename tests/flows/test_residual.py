"""Residual networks through the graph compiler: forks, integer adds of two streams
quantized alike, requantizers after the add; golden == torch on every config, RTL ==
golden beat for beat (accumulators) at random foldings with measured cycles = ideal,
stalls at five duty cycles and a mid-frame reset; the refusals name the Add. k runs from 1
({0,1} and {-1,+1}) to 8 (above 4 the units' outputs go through the binary-search
requantizer)."""
import json

import numpy as np
import onnx
import pytest
import torch

from bnnforge.errors import BnnforgeError
from bnnforge.finn_flows.builder import build
from bnnforge.finn_flows.config import load_config
from bnnforge.hw.hwgraph import get_attrs
from bnnforge.models.export import export_qonnx
from bnnforge.sim.golden import execute, quantize_inputs
from tests.flows.helpers import HW_STEPS, torch_outputs
from bnnforge.fuzz_residual import activation, random_residual_net

CONFIGS = {  # name: ResidualNet arguments
    "k2_conv_id_down": dict(k=2, blocks=("id", "down")),
    "k1_unipolar_conv": dict(k=1, kind="unipolar", blocks=("id", "down")),
    "k1_bipolar_conv_1x1": dict(k=1, kind="bipolar", blocks=("down", "id")),
    "k3_conv_shortcut_first_bn": dict(k=3, blocks=("down",), shortcut_first=True, bn_after_add=True),
    "k4_fc": dict(k=4, conv=False, width=16, blocks=("id", "down")),
    "k1_bipolar_fc_bn": dict(k=1, kind="bipolar", conv=False, width=16, blocks=("id", "id"), bn_after_add=True),
    "k2_conv_three_blocks": dict(k=2, blocks=("id", "down", "id")),
    "k6_conv_down": dict(k=6, blocks=("down",)),             # wide: requantizers by binary search
    "k8_fc_bn": dict(k=8, conv=False, width=8, blocks=("id",), bn_after_add=True),
}


def _export(m, tmp, dynamo=True):
    return export_qonnx(m, tmp / "model.onnx", (1,) + m.input_shape)


def _build(path, tmp, steps, folding=None, label_select=False):
    cfg = {}
    if folding is not None:
        (tmp / "folding.json").write_text(json.dumps(folding))
        cfg["folding_config_file"] = str(tmp / "folding.json")
    config = load_config(None, model=str(path), output_dir=str(tmp / "build"), steps=steps,
                         label_select=label_select, **cfg)
    build(config, progress=False)
    b = tmp / "build"
    return onnx.load(str(b / "intermediate_models" / "01_streamline.onnx")), onnx.load(str(b / "final_model.onnx")), b


def _images(m, n, seed=0):
    return np.random.default_rng(seed).random((n,) + m.input_shape, dtype=np.float32)


def _check_golden(m, streamlined, hw, x):
    """Golden accumulators of the hardware graph equal the streamlined graph's, and are
    torch's logits up to one positive scale and a bias (float32 noise only)."""
    q = quantize_inputs(streamlined, x)
    acc = execute(streamlined, q)
    assert np.array_equal(acc, execute(hw, q))
    ref = torch_outputs(m, x).astype(np.float64)
    slope, icpt = np.polyfit(acc.reshape(-1).astype(np.float64), ref.reshape(-1), 1)
    assert slope > 0 and np.max(np.abs(acc * slope + icpt - ref)) < 1e-3 * max(1.0, np.abs(ref).max())
    return q, acc


def _random_folding(hw, rng):
    """Random PE | MH and SIMD | MW (and | the channels its sliding window streams)."""
    fold = {}
    window = {n.output[0]: get_attrs(n)["C"] for n in hw.graph.node if n.op_type == "SlidingWindow"}
    for n in hw.graph.node:
        if n.op_type == "MVTU":
            a = get_attrs(n)
            c = window.get(n.input[0], a["MW"])
            fold[n.name] = {"PE": int(rng.choice([d for d in range(1, a["MH"] + 1) if a["MH"] % d == 0])),
                            "SIMD": int(rng.choice([d for d in range(1, c + 1) if c % d == 0 and a["MW"] % d == 0]))}
    return fold


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_residual_golden_equals_torch(tmp_path, name):
    m = random_residual_net(seed=3, **CONFIGS[name])
    streamlined, hw, _ = _build(_export(m, tmp_path), tmp_path, HW_STEPS)
    ops = [n.op_type for n in hw.graph.node]
    sums = {n.output[0] for n in hw.graph.node if n.op_type == "StreamAdd"}
    requant = [n for n in hw.graph.node if n.op_type == "Thresholding" and n.input[0] in sums]
    assert ops.count("StreamAdd") == len(CONFIGS[name]["blocks"]) == len(requant)
    assert ops.count("StreamFork") >= 1
    _check_golden(m, streamlined, hw, _images(m, 200))


def test_residual_torchscript_export_matches(tmp_path):
    from brevitas.export import export_qonnx as brevitas_export

    m = random_residual_net(seed=4, k=2, blocks=("id", "down"))
    path = tmp_path / "ts.onnx"
    brevitas_export(m, torch.rand((1,) + m.input_shape), str(path), dynamo=False)
    streamlined, hw, _ = _build(path, tmp_path, HW_STEPS)
    _check_golden(m, streamlined, hw, _images(m, 100))


def _rtl_case(tmp_path, name, seed):
    from bnnforge.sim.bulk import run_network_bulk

    m = random_residual_net(seed=seed, **CONFIGS[name])
    path = _export(m, tmp_path)
    _, hw, _ = _build(path, tmp_path / "plain", HW_STEPS)
    fold = _random_folding(hw, np.random.default_rng(seed))
    streamlined, hw, b = _build(path, tmp_path, HW_STEPS + ["codegen"], folding=fold)
    x = _images(m, 24, seed)
    q, acc = _check_golden(m, streamlined, hw, x)
    res = run_network_bulk(b / "rtl", q, acc, seed=seed)
    man = json.loads((b / "rtl" / "manifest.json").read_text())
    assert res["rtl_mismatches"] == 0 and res["tlast_correct"], res["first_mismatches"]
    assert res["output_beats"] == len(x) * man["out_beats_per_frame"]
    # ideal initiation interval: the skip FIFOs hold the branch's lag
    assert res["cycles_per_frame_measured"] <= 1.02 * res["cycles_per_frame_ideal"], (fold, res)
    return streamlined, hw, b, x


@pytest.mark.rtl
@pytest.mark.parametrize("name,seed", [("k2_conv_id_down", 1), ("k1_bipolar_fc_bn", 2), ("k1_unipolar_conv", 3)])
def test_residual_rtl_equals_golden_at_ideal_rate(tmp_path, name, seed):
    _rtl_case(tmp_path, name, seed)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("name,seed", [("k3_conv_shortcut_first_bn", 4), ("k4_fc", 5), ("k1_bipolar_conv_1x1", 6),
                                       ("k2_conv_three_blocks", 7), ("k6_conv_down", 9), ("k8_fc_bn", 10)])
def test_residual_rtl_equals_golden_more(tmp_path, name, seed):
    _rtl_case(tmp_path, name, seed)


@pytest.mark.rtl
def test_residual_stalls_and_reset(tmp_path):
    from tests.flows.test_stall_reset import _stall_and_reset_built

    streamlined, hw, b, x = _rtl_case(tmp_path, "k2_conv_id_down", 8)
    _stall_and_reset_built(streamlined, hw, b, x)


# ---------------------------------------------------------------- refusals

class _TwoQuantizers(torch.nn.Module):
    """Add of two streams from different quantizers (different scales)."""

    def __init__(self, float_shortcut=False):
        super().__init__()
        from brevitas.nn import QuantLinear

        from bnnforge.models.quantizers import BinaryWeightNoScale, Uint4InputQuant
        from brevitas.nn import QuantIdentity
        self.input_shape = (16,)
        self.inq = QuantIdentity(act_quant=Uint4InputQuant, return_quant_tensor=False)
        self.l1 = QuantLinear(16, 8, bias=False, weight_quant=BinaryWeightNoScale)
        self.l2 = QuantLinear(8, 8, bias=False, weight_quant=BinaryWeightNoScale)
        self.qa, self.qb = activation(2, max_val=2.0), activation(2, max_val=3.0)
        self.fc = QuantLinear(8, 4, bias=False, weight_quant=BinaryWeightNoScale)
        self.float_shortcut = float_shortcut

    def forward(self, x):
        a = self.qa(self.l1(self.inq(x)))
        b = self.l2(a) if self.float_shortcut else self.qb(self.l2(a))
        return self.fc(self.qa(a + b))


@pytest.mark.parametrize("float_shortcut,needle", [(False, "quantized differently"), (True, "not a quantized stream")])
def test_residual_add_refusals_name_the_add(tmp_path, float_shortcut, needle):
    m = _TwoQuantizers(float_shortcut).eval()
    path = _export(m, tmp_path)
    with pytest.raises(BnnforgeError, match=needle) as ei:
        _build(path, tmp_path, HW_STEPS)
    assert "Add" in str(ei.value)
    assert not (tmp_path / "build" / "final_model.onnx").exists()


def test_graph_with_a_cycle_is_refused(tmp_path):
    m = random_residual_net(seed=0, k=2, conv=False, width=8, blocks=("id",))
    path = _export(m, tmp_path)
    g = onnx.load(str(path))
    add = next(n for n in g.graph.node if n.op_type == "Add")
    # feed the Add from the node right after it: a loop
    downstream = [n for n in g.graph.node][list(g.graph.node).index(add) + 1]
    add.input[1] = downstream.output[0]
    onnx.save(g, str(tmp_path / "loop.onnx"))
    with pytest.raises(BnnforgeError, match="cycle"):
        _build(tmp_path / "loop.onnx", tmp_path / "b", HW_STEPS)


def test_skip_fifo_over_budget_is_refused(tmp_path, monkeypatch):
    """A residual branch whose shortcut would need more than the skip FIFO budget is refused
    in one line naming the add, and the build leaves nothing behind."""
    import bnnforge.hw.codegen as codegen

    m = random_residual_net(seed=2, k=2, blocks=("id",))
    path = _export(m, tmp_path)
    monkeypatch.setattr(codegen, "SKIP_FIFO_BUDGET_BITS", 64)
    with pytest.raises(BnnforgeError, match=r"residual add from .*Add.*skip FIFO budget") as ei:
        _build(path, tmp_path, HW_STEPS + ["codegen"])
    assert "\n" not in str(ei.value)
    assert not (tmp_path / "build").exists()


def test_residual_fuzz_cases_round_trip_and_shrink_to_smaller_networks():
    from bnnforge.fuzz_residual import (ResidualCase, random_residual_case, residual_case_size,
                                        residual_shrink_candidates)

    for seed in range(100, 112):
        case = random_residual_case(seed)
        assert ResidualCase.from_json(json.loads(json.dumps(case.to_json()))) == case
        names = []
        for name, cand in residual_shrink_candidates(case):
            names.append(name)
            assert residual_case_size(cand) < residual_case_size(case), (name, case.summary())
            random_residual_net(seed=cand.seed, **cand.net)     # a network torch can build
        assert "fold_1" in names and "first_half" in names, names


@pytest.mark.slow
def test_residual_fuzz_shrinks_an_injected_fault(tmp_path, monkeypatch):
    """The test-only golden fault in a residual case: found, shrunk to a small network
    and a few inputs, saved; the reproducer fails with the fault on and passes off."""
    from bnnforge.fuzz import check_reproducer
    from bnnforge.fuzz_residual import random_residual_case, run_residual_case, shrink_and_save_residual
    from bnnforge.sim.golden import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, "mvtu_threshold_strict")
    case = random_residual_case(105)
    failure = run_residual_case(case, tmp_path / "run", rtl=False)
    assert not failure["ok"], failure
    d = shrink_and_save_residual(case, failure, tmp_path / "store", tmp_path / "work", rtl=False,
                                 injected_fault="mvtu_threshold_strict")
    info = json.loads((d / "case.json").read_text())
    assert len(info["case"]["image_rows"]) <= 8 and len(info["case"]["net"]["blocks"]) <= 1, info["summary"]
    assert not check_reproducer(d, tmp_path / "on", rtl=False)["ok"]
    monkeypatch.delenv(FAULT_ENV)
    assert check_reproducer(d, tmp_path / "off", rtl=False)["ok"]
