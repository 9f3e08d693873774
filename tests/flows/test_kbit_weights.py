"""k-bit weights through the flow (finn_flows/kbit.py, hw/rtl/mvtu_kbit.v), beyond the
zoo's ternary W2A2 (tests/flows/test_bnn_pynq_zoo.py): a hand-written QONNX graph with
3-bit non-narrow weights under a per-output-channel scale (the scale and a BatchNorm
with negative gammas fold into the thresholds; a negated row of -4 needs 4 bits), a
signed 2-bit activation between the layers, and 4-bit narrow weights in the last layer.
qonnx's execution of the file is the reference for the golden model, the golden model
for the RTL; and the refusals."""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bnnforge.errors import BnnforgeError
from bnnforge.finn_flows.builder import build
from bnnforge.finn_flows.config import load_config
from bnnforge.finn_flows.kbit import split_kbit_weights, zero_blocks_structured
from bnnforge.hw.hwgraph import get_attrs, initializer
from bnnforge.sim.golden import execute, quantize_inputs
from tests.flows.helpers import HW_STEPS

QDOMAIN = "qonnx.custom_op.general"
FOLDING = {"MVTUKbit_0": {"PE": 4, "SIMD": 8}, "MVTUKbit_1": {"PE": 2, "SIMD": 6}}


def _kbit_graph(seed: int, w0_bits: int = 3, force_min_row_flip: bool = False) -> onnx.ModelProto:
    """x[1,32] -> Quant(signed 3-bit, 0.25) -> MatMul(Quant(W0: w0_bits, non-narrow,
    per-channel scale)) -> BatchNorm -> Quant(signed 2-bit, 0.5) -> MatMul(Quant(W1:
    4-bit narrow, one scale)) -> Mul(0.3) -> logits[1,16]."""
    rng = np.random.default_rng(seed)
    lo0, hi0 = -(1 << (w0_bits - 1)), (1 << (w0_bits - 1)) - 1
    i0 = rng.integers(lo0, hi0 + 1, size=(32, 24))
    i0[:, 0] = lo0                      # every value occurs, the most negative in a whole row
    s0 = rng.uniform(0.05, 0.4, size=(1, 24))
    gamma = rng.normal(size=24)
    gamma[0] = -abs(gamma[0]) if force_min_row_flip else gamma[0]   # row of lo0 negated
    beta, mean, var = rng.normal(size=24), rng.normal(size=24) * 3, rng.uniform(0.5, 4, size=24)
    i1 = rng.integers(-7, 8, size=(24, 16))
    inits = {
        "in_s": 0.25, "zero": 0.0, "b3": 3.0, "w0f": i0 * s0, "w0_s": s0, "w0_b": float(w0_bits),
        "bn_g": gamma, "bn_b": beta, "bn_m": mean, "bn_v": var, "a_s": 0.5, "b2": 2.0,
        "w1f": i1 * 0.07, "w1_s": 0.07, "b4": 4.0, "out_s": 0.3,
    }
    nodes = [
        helper.make_node("Quant", ["x", "in_s", "zero", "b3"], ["xq"], name="in_quant", domain=QDOMAIN,
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Quant", ["w0f", "w0_s", "zero", "w0_b"], ["w0q"], name="w0_quant", domain=QDOMAIN,
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("MatMul", ["xq", "w0q"], ["h0"], name="fc0"),
        helper.make_node("BatchNormalization", ["h0", "bn_g", "bn_b", "bn_m", "bn_v"], ["h1"], name="bn0"),
        helper.make_node("Quant", ["h1", "a_s", "zero", "b2"], ["a0"], name="act0", domain=QDOMAIN,
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Quant", ["w1f", "w1_s", "zero", "b4"], ["w1q"], name="w1_quant", domain=QDOMAIN,
                         signed=1, narrow=1, rounding_mode="ROUND"),
        helper.make_node("MatMul", ["a0", "w1q"], ["h2"], name="fc1"),
        helper.make_node("Mul", ["h2", "out_s"], ["y"], name="out_scale"),
    ]
    graph = helper.make_graph(
        nodes, "kbit_weights", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QDOMAIN, 1)])
    model.ir_version = 8
    return model


def _build(path, tmp, steps, **keys):
    (tmp / "folding.json").write_text(json.dumps(FOLDING))
    cfg = load_config(None, model=str(path), output_dir=str(tmp / "build"), steps=steps, label_select=False,
                      folding_config_file=str(tmp / "folding.json"), **keys)
    build(cfg, progress=False)
    b = tmp / "build"
    return onnx.load(str(b / "intermediate_models" / "01_streamline.onnx")), onnx.load(str(b / "final_model.onnx")), b


@pytest.mark.rtl
def test_3bit_per_channel_weights_and_signed_activation_exact(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    from bnnforge.sim.bulk import run_network_bulk

    model = _kbit_graph(seed=3, force_min_row_flip=True)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    streamlined, hw, b = _build(path, tmp_path, HW_STEPS + ["codegen"])
    units = [n for n in hw.graph.node if n.op_type.startswith("MVTU")]
    assert [n.op_type for n in units] == ["MVTUKbit", "MVTUKbit"]
    a0, a1 = get_attrs(units[0]), get_attrs(units[1])
    assert a0["weight_bits"] == 4 and initializer(hw, units[0].input[1])[0].max() == 4   # -(-4) on the flipped row
    assert a1["weight_bits"] == 4 and a1["input_offset"] == 2 and a0.get("input_offset", 0) == 0
    x = np.random.default_rng(7).normal(size=(300, 32)).astype(np.float32) * 0.6
    q = quantize_inputs(streamlined, x)
    acc = execute(hw, q).astype(np.float64)
    w = cleanup_model(ModelWrapper(model))
    iname, oname = w.graph.input[0].name, w.graph.output[0].name
    ref = np.concatenate([execute_onnx(w, {iname: x[i:i + 1]})[oname] for i in range(len(x))]).astype(np.float64)
    # the logits are 0.3 * 0.07 * 0.5 * acc exactly (up to float32 rounding)
    assert np.max(np.abs(acc * (0.3 * 0.07 * 0.5) - ref)) < 1e-4 * max(1.0, np.abs(ref).max())
    assert len(np.unique(acc)) > 50   # not a degenerate network
    res = run_network_bulk(b / "rtl", q[:100], acc[:100].astype(np.int64), p_gap=0.3, p_stall=0.3, seed=2)
    assert res["rtl_mismatches"] == 0 and res["tlast_correct"], res["first_mismatches"]
    clean = run_network_bulk(b / "rtl", q[:100], acc[:100].astype(np.int64))
    assert clean["rtl_mismatches"] == 0
    assert clean["cycles_per_frame_measured"] == clean["cycles_per_frame_ideal"]


def test_weights_that_need_5_bits_after_a_row_flip_are_refused(tmp_path):
    """4-bit weights with -8 in a row whose BatchNorm gamma is negative: the negated row
    holds +8, which 4 signed bits cannot. One line naming the node; nothing written."""
    path = tmp_path / "m.onnx"
    onnx.save(_kbit_graph(seed=3, w0_bits=4, force_min_row_flip=True), str(path))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(BnnforgeError) as e:
        _build(path, tmp_path, HW_STEPS)
    msg = str(e.value)
    assert "\n" not in msg and re.search(r"node '[^']+': weights in \[-8, 8\] need 5 signed bits", msg), msg
    assert {p.name for p in tmp_path.iterdir()} == set(before) | {"folding.json"}, "something was written"


def test_zero_blocks_structured():
    rng = np.random.default_rng(0)
    signs = 2 * rng.integers(0, 2, (8, 12)) - 1
    grouped = np.kron(np.eye(2, dtype=np.int64), np.ones((4, 6), dtype=np.int64)) * signs
    assert zero_blocks_structured(grouped)
    assert zero_blocks_structured(signs)
    dense_ternary = rng.integers(-1, 2, (8, 12))
    assert not zero_blocks_structured(dense_ternary)


def test_split_kbit_weights():
    rng = np.random.default_rng(1)
    ints = rng.integers(-4, 4, (5, 3)).astype(np.float64)   # MatMul weight [in, out]
    s = np.array([[0.5, 0.25, 2.0]])
    got, scale = split_kbit_weights(ints * s, s, channel_axis=1, bits=3, signed=True)
    assert np.array_equal(got, ints) and np.allclose(scale, s.reshape(-1))
    assert split_kbit_weights(ints * s, s, channel_axis=1, bits=2, signed=True) is None       # -4 is not 2-bit
    assert split_kbit_weights(ints * s, s, channel_axis=1, bits=3, signed=False) is None
    assert split_kbit_weights(ints * 0.5, np.full((5, 1), 0.5) * np.arange(1, 6)[:, None], 1, 3, True) is None
    assert split_kbit_weights(ints * s, s, channel_axis=1, bits=5, signed=True) is None       # wider than the unit


def test_the_target_clock_pipelines_the_kbit_unit_and_a_faster_one_is_refused(tmp_path):
    """synth_clk_period_ns sets mvtu_kbit's PIPE_EVERY as it does mvtu's; a period too short
    for one adder level per clock is one line naming the node."""
    from bnnforge.hw.stages.mvtu import mvtu_pipe_every

    path = tmp_path / "m.onnx"
    onnx.save(_kbit_graph(seed=3), str(path))
    for period in (5.0, 10.0):
        _, hw, b = _build(path, tmp_path, HW_STEPS + ["codegen"], synth_clk_period_ns=period)
        manifest = json.loads((b / "rtl" / "manifest.json").read_text())
        kbit = [s for s in manifest["stages"] if s["module"] == "mvtu_kbit"]
        assert len(kbit) == 2
        for s in kbit:
            assert s["params"]["PIPE_EVERY"] == mvtu_pipe_every(s["params"]["SIMD"], period) >= 1
    (tmp_path / "fast").mkdir()
    with pytest.raises(BnnforgeError) as e:
        _build(path, tmp_path / "fast", HW_STEPS + ["codegen"], synth_clk_period_ns=4.0)
    assert "\n" not in str(e.value) and re.search(r"node 'MVTUKbit_\d+': synth_clk_period_ns = 4 ", str(e.value))
