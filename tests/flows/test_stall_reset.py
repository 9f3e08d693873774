"""Stall and reset tests on every reference network (bulk Verilator harness):
random input gaps and output backpressure at five duty cycles, and a reset in the
middle of a frame; nothing lost, duplicated or altered, and the frames fed after the
reset come out exactly as the golden model says."""
import numpy as np
import onnx
import pytest

from bnnforge.sim.bulk import run_network_bulk
from bnnforge.sim.golden import execute, quantize_inputs
from tests.flows.helpers import HW_STEPS, build_method, export_and_build, random_model
from tests.models.methods.helpers import images
from tests.flows.test_network_rtl import FOLD, _sfc_folding

DUTY = (0.1, 0.3, 0.5, 0.7, 0.9)   # probability of a gap on the input / a stall on the output


def _stall_and_reset(tmp_path, topology, act, folding, frames):
    m = random_model(topology, act, seed=41)
    streamlined, hw, bdir = export_and_build(m, tmp_path, steps=HW_STEPS + ["codegen"],
                                             folding_config_file=str(folding))
    x = np.random.default_rng(9).random((frames,) + m.spec.input_shape, dtype=np.float32)
    _stall_and_reset_built(streamlined, hw, bdir, x)


def _stall_and_reset_built(streamlined, hw, bdir, x):
    """The five duty cycles and a mid-frame reset on a built design; every output beat
    (labels, or every accumulator word when the network ends without label select)
    compared as integers with the golden model."""
    import json

    from bnnforge.sim.network import expected_beats

    frames = len(x)
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    rtl = bdir / "rtl"
    manifest = json.loads((rtl / "manifest.json").read_text())
    expected = [int(v) for v in expected_beats(golden, manifest)]
    out_bpf = manifest["out_beats_per_frame"]
    assert len(expected) == frames * out_bpf
    for k, p in enumerate(DUTY):
        r = run_network_bulk(rtl, q, golden, p_gap=p, p_stall=p, seed=k)
        assert r["rtl_mismatches"] == 0 and r["output_beats"] == frames * out_bpf and r["tlast_correct"], \
            (p, r["first_mismatches"])
        assert [int(v) for v in r["outputs"]] == expected
    # reset in the middle of a frame: pick a cycle well inside the stream
    clean = run_network_bulk(rtl, q, golden)
    at = int(clean["cycles_per_frame_ideal"] * frames * 0.4) + 3
    r = run_network_bulk(rtl, q, golden, p_gap=0.2, p_stall=0.2, seed=11, reset_at_cycle=at)
    info = r["reset"]
    assert 0 < info["restart_frame"] < frames
    assert r["outputs"][:info["beats_before_reset"]] == clean["outputs"][:info["beats_before_reset"]]
    assert [int(v) for v in r["outputs"][info["beats_before_reset"]:]] == expected[info["restart_frame"] * out_bpf:]
    return manifest


@pytest.mark.rtl
@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_tfc_stalls_and_reset(tmp_path, act):
    _stall_and_reset(tmp_path, "tfc", act, FOLD / "tfc_finn_examples.json", frames=60)


@pytest.mark.rtl
def test_digits_mlp_stalls_and_reset(tmp_path):
    _stall_and_reset(tmp_path, "digits_mlp", "bipolar", FOLD / "digits_mlp.json", frames=60)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("topology", ["sfc", "lfc"])
def test_large_networks_stalls_and_reset(tmp_path, topology):
    folding = _sfc_folding(tmp_path) if topology == "sfc" else FOLD / "lfc_bnn_pynq.json"
    _stall_and_reset(tmp_path, topology, "unipolar", folding, frames=30)


# --- every network kind, raw accumulator outputs (no label select) -----------------

def _conv_raw(tmp_path):
    from tests.flows.test_conv import custom_cnv

    m = custom_cnv("unipolar", pad=1, seed=43)
    fold = {"MVTU_0": {"PE": 4, "SIMD": 2}, "MVTU_1": {"PE": 2, "SIMD": 4}, "MVTU_2": {"PE": 4, "SIMD": 8},
            "MVTU_3": {"PE": 5, "SIMD": 4}}
    streamlined, hw, bdir = _build_plain(m, tmp_path, fold, (2, 6, 6))
    return streamlined, hw, bdir, np.random.default_rng(9).random((24, 2, 6, 6), dtype=np.float32)


def _sparse_raw(tmp_path, method):
    from tests.flows.test_sparse_methods import FOLDINGS, MODELS

    m = MODELS[method](seed=44)
    _, streamlined, hw, bdir = build_method(m, tmp_path, FOLDINGS[method], steps=HW_STEPS + ["codegen"],
                                            label_select=False)
    assert any(n.op_type == "MVTUSparse" for n in hw.graph.node)
    return streamlined, hw, bdir, images(40, seed=9)


def _kbit_raw(tmp_path, act_bits):
    from tests.flows.test_kbit_activations import FOLD_64_32, _margin_model

    m = _margin_model(act_bits, seed=45)
    _, streamlined, hw, bdir = build_method(m, tmp_path, FOLD_64_32, steps=HW_STEPS + ["codegen"],
                                            label_select=False)
    assert any(n.op_type == "MVTU" and "multithreshold" in str(n.attribute) for n in hw.graph.node)
    return streamlined, hw, bdir, images(40, seed=9)


def _kbit_conv(tmp_path):
    from tests.flows.test_kbit_activations import _kbit_cnv

    m = _kbit_cnv(3, seed=46)
    fold = {"MVTU_0": {"PE": 4, "SIMD": 2}, "MVTU_1": {"PE": 4, "SIMD": 4}, "MVTU_2": {"PE": 2, "SIMD": 4}}
    streamlined, hw, bdir = _build_plain(m, tmp_path, fold, (2, 8, 8))
    return streamlined, hw, bdir, np.random.default_rng(9).random((24, 2, 8, 8), dtype=np.float32)


def _kbit_weights(tmp_path):
    """A conv net with 3-bit weights (conv and FC on mvtu_kbit) behind a block-sparse conv
    and a pool: the graph fuzzer's seed 1004 with raw accumulator outputs."""
    import dataclasses

    from bnnforge.fuzz import build_artifacts
    from bnnforge.fuzz_graph import export_graph_case, random_graph_case, unit_folding

    case = dataclasses.replace(random_graph_case(1004), label_select=False)
    x, _ = export_graph_case(case, tmp_path / "model.onnx")
    fold = unit_folding(tmp_path / "model.onnx", case.folding, tmp_path / "probe")
    streamlined, hw, bdir = build_artifacts(tmp_path / "model.onnx", fold, tmp_path / "build", False, 2)
    assert sum(n.op_type == "MVTUKbit" for n in hw.graph.node) == 2
    return streamlined, hw, bdir, x[:24]


def _build_plain(m, tmp_path, fold, input_shape):
    import json

    from bnnforge.finn_flows.builder import build
    from bnnforge.finn_flows.config import load_config
    from bnnforge.models.export import export_qonnx

    path = export_qonnx(m, tmp_path / "model.onnx", (1,) + tuple(input_shape))
    (tmp_path / "folding.json").write_text(json.dumps(fold))
    build(load_config(None, model=str(path), output_dir=str(tmp_path / "build"), steps=HW_STEPS + ["codegen"],
                      folding_config_file=str(tmp_path / "folding.json"), label_select=False), progress=False)
    b = tmp_path / "build"
    return (onnx.load(str(b / "intermediate_models" / "01_streamline.onnx")), onnx.load(str(b / "final_model.onnx")), b)


KINDS = {
    "conv_pad_pool": _conv_raw,
    "sparse01_binary_domain": lambda t: _sparse_raw(t, "binary_domain"),
    "pm1_blocks_ftbnn": lambda t: _sparse_raw(t, "ftbnn"),
    "kbit2_fc": lambda t: _kbit_raw(t, 2),
    "kbit3_conv": _kbit_conv,
    "kbit_weights_w3": _kbit_weights,
}
CI_KINDS = ("conv_pad_pool", "sparse01_binary_domain")


@pytest.mark.rtl
@pytest.mark.parametrize("kind", [k if k in CI_KINDS else pytest.param(k, marks=pytest.mark.slow) for k in KINDS])
def test_every_network_kind_stalls_and_reset_raw_outputs(tmp_path, kind):
    streamlined, hw, bdir, x = KINDS[kind](tmp_path)
    assert hw.graph.node[-1].op_type != "LabelSelect"
    manifest = _stall_and_reset_built(streamlined, hw, bdir, x)
    assert manifest["out_beats_per_frame"] >= 1
