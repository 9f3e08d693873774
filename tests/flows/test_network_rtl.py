"""Whole networks in RTL (Verilator + cocotb): every output beat bit-exact with the
golden model, golden argmax equal to torch on every input, and the measured
steady-state cycles per frame against the ideal (BNN-PYNQ / finn-examples foldings)."""
import json
from pathlib import Path

import numpy as np
import pytest

from sim.golden import execute, quantize_inputs
from sim.network import run_network
from tests.flows.helpers import HW_STEPS, export_and_build, random_model, torch_outputs

REPO = Path(__file__).resolve().parents[2]
FOLD = REPO / "configs" / "folding"


def _check(tmp_path, model, folding, n=200, p=0.0, expect_cycles=None, name="net"):
    streamlined, hw, bdir = export_and_build(model, tmp_path, steps=HW_STEPS + ["codegen"],
                                             folding_config_file=str(folding), name=name)
    x = np.random.default_rng(7).random((n,) + model.spec.input_shape, dtype=np.float32)
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    assert np.array_equal(golden, torch_outputs(model, x).argmax(1))
    res = run_network(bdir / "rtl", q, golden, p_gap=p, p_stall=p, seed=3)
    assert res["output_beats"] == n
    assert res["rtl_mismatches"] == 0, res["first_mismatches"]
    assert res["tlast_correct"]
    assert np.array_equal(np.array(res["labels_rtl"]), golden)
    if expect_cycles is not None:
        assert res["cycles_per_frame_ideal"] == expect_cycles
        assert abs(res["cycles_per_frame_measured"] - expect_cycles) <= 0.02 * expect_cycles, res
    return res


@pytest.mark.rtl
@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_digits_mlp_rtl_bit_exact(tmp_path, act):
    _check(tmp_path, random_model("digits_mlp", act, seed=21), FOLD / "digits_mlp.json", expect_cycles=64)


@pytest.mark.rtl
def test_digits_mlp_rtl_under_backpressure(tmp_path):
    _check(tmp_path, random_model("digits_mlp", "unipolar", seed=22), FOLD / "digits_mlp.json", n=60, p=0.3)


@pytest.mark.rtl
@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_tfc_finn_examples_folding_64_cycles(tmp_path, act):
    _check(tmp_path, random_model("tfc", act, seed=23), FOLD / "tfc_finn_examples.json", expect_cycles=64)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_lfc_bnn_pynq_folding_512_cycles(tmp_path, act):
    _check(tmp_path, random_model("lfc", act, seed=24), FOLD / "lfc_bnn_pynq.json", expect_cycles=512)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_sfc_rtl_bit_exact(tmp_path, act):
    folding = tmp_path / "sfc.json"
    folding.write_text(json.dumps({"MVTU_0": {"PE": 16, "SIMD": 49}, "MVTU_1": {"PE": 16, "SIMD": 16},
                                   "MVTU_2": {"PE": 16, "SIMD": 16}, "MVTU_3": {"PE": 10, "SIMD": 16}}))
    _check(tmp_path, random_model("sfc", act, seed=25), folding, expect_cycles=256)
