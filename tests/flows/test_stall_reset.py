"""Stall and reset tests on every reference network (bulk Verilator harness):
random input gaps and output backpressure at five duty cycles, and a reset in the
middle of a frame; nothing lost, duplicated or altered, and the frames fed after the
reset come out exactly as the golden model says."""
import numpy as np
import pytest

from bnnforge.sim.bulk import run_network_bulk
from bnnforge.sim.golden import execute, quantize_inputs
from tests.flows.helpers import HW_STEPS, export_and_build, random_model
from tests.flows.test_network_rtl import FOLD, _sfc_folding

DUTY = (0.1, 0.3, 0.5, 0.7, 0.9)   # probability of a gap on the input / a stall on the output


def _stall_and_reset(tmp_path, topology, act, folding, frames):
    m = random_model(topology, act, seed=41)
    streamlined, hw, bdir = export_and_build(m, tmp_path, steps=HW_STEPS + ["codegen"],
                                             folding_config_file=str(folding))
    x = np.random.default_rng(9).random((frames,) + m.spec.input_shape, dtype=np.float32)
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    rtl = bdir / "rtl"
    for k, p in enumerate(DUTY):
        r = run_network_bulk(rtl, q, golden, p_gap=p, p_stall=p, seed=k)
        assert r["rtl_mismatches"] == 0 and r["output_beats"] == frames and r["tlast_correct"], (p, r["first_mismatches"])
    # reset in the middle of a frame: pick a cycle well inside the stream
    clean = run_network_bulk(rtl, q, golden)
    at = int(clean["cycles_per_frame_ideal"] * frames * 0.4) + 3
    r = run_network_bulk(rtl, q, golden, p_gap=0.2, p_stall=0.2, seed=11, reset_at_cycle=at)
    info = r["reset"]
    assert 0 < info["restart_frame"] < frames
    assert r["outputs"][:info["beats_before_reset"]] == clean["outputs"][:info["beats_before_reset"]]
    assert r["outputs"][info["beats_before_reset"]:] == [int(v) for v in golden[info["restart_frame"]:]]


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
