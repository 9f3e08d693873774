"""The bulk RTL path (sim/bulk.py: compiled C++ harness) against the cocotb path
(sim/network.py): same stimulus (same seeded gaps/stalls), so the same output
beats at the same cycles; bit-exact with golden; wide (> 64-bit) tdata both ways;
and a corrupted weight image must show up as mismatches.

One test per design, so that pytest-xdist workers never build the same design twice.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bnnforge.sim.bulk import run_network_bulk
from bnnforge.sim.golden import execute, quantize_inputs
from bnnforge.sim.network import run_network
from tests.flows.helpers import HW_STEPS, export_and_build, random_model

REPO = Path(__file__).resolve().parents[2]
FOLD = REPO / "configs" / "folding"
SWEEP = [0.1, 0.3, 0.5, 0.7, 0.9]

pytestmark = pytest.mark.rtl


def _design(tmp_path, topology, act, folding, seed, label_select=True):
    model = random_model(topology, act, seed=seed)
    streamlined, hw, bdir = export_and_build(model, tmp_path, steps=HW_STEPS + ["codegen"],
                                             folding_config_file=str(folding), label_select=label_select)
    return model, streamlined, hw, bdir / "rtl"


def _inputs(model, streamlined, hw, n, seed=7):
    x = np.random.default_rng(seed).random((n,) + model.spec.input_shape, dtype=np.float32)
    q = quantize_inputs(streamlined, x)
    return q, execute(hw, q)


def _ok(res, n, out_bpf=1):
    assert res["rtl_mismatches"] == 0, res["first_mismatches"]
    assert res["output_beats"] == n * out_bpf
    assert res["tlast_correct"] and res["extra_beats"] == 0


def _same(bulk, coco):
    """Beat for beat and cycle for cycle: both paths see the same stimulus."""
    assert bulk["outputs"] == coco["outputs"]
    assert bulk["rtl_mismatches"] == coco["rtl_mismatches"] == 0
    assert bulk["tlast_correct"] and coco["tlast_correct"]
    assert bulk["cycles_total"] == coco["cycles_total"]
    assert bulk["latency_cycles_first_frame"] == coco["latency_cycles_first_frame"]
    assert abs(bulk["cycles_per_frame_measured"] - coco["cycles_per_frame_measured"]) <= 1.0
    assert set(bulk) == set(coco)


def test_digits_mlp_unipolar_bulk_equals_cocotb_with_backpressure_and_reset(tmp_path):
    model, s, hw, rtl = _design(tmp_path, "digits_mlp", "unipolar", FOLD / "digits_mlp.json", seed=41)
    q, golden = _inputs(model, s, hw, 100)
    bulk = run_network_bulk(rtl, q, golden)
    _ok(bulk, 100)
    assert np.array_equal(np.array(bulk["labels_rtl"]), golden)
    assert bulk["cycles_per_frame_ideal"] == 64 and bulk["cycles_per_frame_measured"] == 64
    _same(bulk, run_network(rtl, q, golden))
    # every duty cycle on both paths (a smaller frame count keeps cocotb quick)
    for k, p in enumerate(SWEEP):
        b = run_network_bulk(rtl, q[:30], golden[:30], p_gap=p, p_stall=p, seed=k)
        _ok(b, 30)
        _same(b, run_network(rtl, q[:30], golden[:30], p_gap=p, p_stall=p, seed=k))
    # gaps and stalls do slow it down
    assert b["cycles_per_frame_measured"] > 64
    # mid-stream reset: frames fed after it are exact, the abandoned ones are gone
    ref = run_network_bulk(rtl, q, golden, p_gap=0.2, p_stall=0.2, seed=5)
    for at in (0, 200, 1000, 3001):
        r = run_network_bulk(rtl, q, golden, p_gap=0.2, p_stall=0.2, seed=5, reset_at_cycle=at)
        info = r["reset"]
        assert r["rtl_mismatches"] == 0 and r["tlast_correct"], (at, r["first_mismatches"])
        assert r["output_beats"] == info["beats_before_reset"] + (100 - info["restart_frame"])
        assert r["outputs"][:info["beats_before_reset"]] == ref["outputs"][:info["beats_before_reset"]]
        assert r["outputs"][info["beats_before_reset"]:] == [int(v) for v in golden[info["restart_frame"]:]]
        if at > 0:
            assert info["restart_frame"] >= 1 and info["frames_abandoned"] >= 1


def test_digits_mlp_bipolar_wide_input_bulk_equals_cocotb(tmp_path):
    """SIMD 32 x 4-bit inputs: a 128-bit s_axis_tdata (VlWide on the C++ side)."""
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"MVTU_0": {"PE": 16, "SIMD": 32}, "MVTU_1": {"PE": 32, "SIMD": 32},
                                "MVTU_2": {"PE": 2, "SIMD": 32}}))
    model, s, hw, rtl = _design(tmp_path, "digits_mlp", "bipolar", fold, seed=42)
    assert json.loads((rtl / "manifest.json").read_text())["in_width"] > 64
    q, golden = _inputs(model, s, hw, 60)
    for p, seed in ((0.0, 0), (0.5, 9)):
        bulk = run_network_bulk(rtl, q, golden, p_gap=p, p_stall=p, seed=seed)
        _ok(bulk, 60)
        assert np.array_equal(np.array(bulk["labels_rtl"]), golden)
        _same(bulk, run_network(rtl, q, golden, p_gap=p, p_stall=p, seed=seed))


def test_tfc_no_label_select_wide_outputs_bulk_equals_cocotb_and_catches_corruption(tmp_path):
    """TFC at the finn-examples folding without label select: the last layer's ten
    8-bit accumulators leave as one 80-bit beat per frame."""
    model, s, hw, rtl = _design(tmp_path, "tfc", "unipolar", FOLD / "tfc_finn_examples.json", seed=43,
                                label_select=False)
    manifest = json.loads((rtl / "manifest.json").read_text())
    assert manifest["out_width"] > 64 and not manifest["label_select"]
    q, golden = _inputs(model, s, hw, 200)
    bulk = run_network_bulk(rtl, q, golden)
    _ok(bulk, 200)
    assert bulk["cycles_per_frame_ideal"] == 64 and abs(bulk["cycles_per_frame_measured"] - 64) <= 1
    _same(bulk, run_network(rtl, q, golden))
    b = run_network_bulk(rtl, q[:60], golden[:60], p_gap=0.3, p_stall=0.3, seed=2)
    _ok(b, 60)
    _same(b, run_network(rtl, q[:60], golden[:60], p_gap=0.3, p_stall=0.3, seed=2))
    for k, p in enumerate(SWEEP):
        _ok(run_network_bulk(rtl, q, golden, p_gap=p, p_stall=0.0, seed=k), 200)
        _ok(run_network_bulk(rtl, q, golden, p_gap=0.0, p_stall=p, seed=k), 200)
        _ok(run_network_bulk(rtl, q, golden, p_gap=p, p_stall=p, seed=k), 200)

    # flip one weight bit (last layer, output 0, input 0) in a copy of the design
    bad = tmp_path / "rtl_bad"
    shutil.copytree(rtl, bad, ignore=shutil.ignore_patterns("rtlsim"))
    last = manifest["layers"][-1]
    mem = bad / last["WEIGHT_FILE"]
    lines = mem.read_text().splitlines()
    lines[0] = lines[0][:-1] + format(int(lines[0][-1], 16) ^ 1, "x")
    mem.write_text("\n".join(lines) + "\n")
    r = run_network_bulk(bad, q, golden)
    assert r["rtl_mismatches"] > 0 and r["output_beats"] == 200
    # exactly the frames whose layer-3 input 0 is 1 differ, in field 0 only, by 2
    acc = manifest["acc_bits"]
    mask = (1 << acc) - 1
    for k in range(200):
        g, o = bulk["outputs"][k], r["outputs"][k]
        assert (g >> acc) == (o >> acc), k
        diff = ((o & mask) - (g & mask)) % (1 << acc)
        assert diff in (0, 2, (1 << acc) - 2), (k, diff)
    assert r["rtl_mismatches"] == sum(bulk["outputs"][k] != r["outputs"][k] for k in range(200))
