"""The PYNQ driver, unchanged, backed by the simulated wrapper + accelerator RTL: every
output compared exactly with the golden model (sim/golden.py)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bnnforge.deploy import SimDMAError, SimIO, golden_outputs, sample_inputs, verify_with_sim
from bnnforge.hw.pynq_driver import BnnOverlay, DriverInputError, StreamLayout
from bnnforge.sim.network import expected_beats, frame_beats

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.mark.rtl
def test_driver_on_simulated_rtl_matches_golden(digits_build, digits_project):
    lay = json.loads((digits_project / "accel.json").read_text())
    x = sample_inputs(lay, 150, seed=4)
    exp = golden_outputs(digits_build, x)
    r = verify_with_sim(digits_project, x, exp, batch_size=64)   # 3 batches: 64, 64, 22
    assert r["frames"] == 150 and r["batches"] == 3
    assert r["mismatches"] == 0 and np.array_equal(r["outputs"], exp)
    assert len(np.unique(exp)) > 1  # not a constant network


@pytest.mark.rtl
def test_driver_under_stalls_and_image_shaped_inputs(digits_build, digits_project):
    lay = json.loads((digits_project / "accel.json").read_text())
    x = sample_inputs(lay, 40, seed=5)
    exp = golden_outputs(digits_build, x)
    io = SimIO(digits_project, p_gap=0.4, p_stall=0.4, seed=9)
    ol = BnnOverlay(io, digits_project / "accel.json")
    assert np.array_equal(ol.classify(x.reshape(40, 1, 8, 8)), exp)


@pytest.mark.rtl
def test_batch_tlast_over_several_sends(digits_build, digits_project):
    """Three sends into one receive: the wrapper must close each batch with TLAST."""
    L = StreamLayout.load(digits_project / "accel.json")
    x = sample_inputs(json.loads((digits_project / "accel.json").read_text()), 30, seed=6)
    io = SimIO(digits_project)
    out = io.run(L.pack(x), 30 * L.out_frame_bytes, batches=3)
    assert np.array_equal(L.unpack(out, 30), golden_outputs(digits_build, x))
    # a receive that expects one batch sees the wrapper's TLAST after the first send
    with pytest.raises(SimDMAError, match="TLAST early at beat 9 of a 30-beat receive"):
        io.run(L.pack(x), 30 * L.out_frame_bytes, batches=3, expect_batches=1)
    # a receive longer than what was sent never completes on the board
    with pytest.raises(SimDMAError, match="did not complete"):
        io.run(L.pack(x[:10]), 11 * L.out_frame_bytes)


@pytest.mark.rtl
def test_accumulator_outputs_signed(digits_acc_build):
    from bnnforge.hw.vivado.project import write_project
    proj = write_project(digits_acc_build)
    lay = json.loads((proj / "accel.json").read_text())
    assert not lay["output"]["label_select"] and lay["output"]["signed"]
    x = sample_inputs(lay, 100, seed=7)
    exp = golden_outputs(digits_acc_build, x)
    assert exp.shape == (100, 10) and exp.min() < 0
    r = verify_with_sim(proj, x, exp)
    assert r["mismatches"] == 0 and np.array_equal(r["outputs"], exp)


def test_pack_matches_stream_contract(digits_build, digits_project):
    """Driver bytes == the testbenches' beat packer (sim.network.frame_beats), padded."""
    L = StreamLayout.load(digits_project / "accel.json")
    m = json.loads((digits_build / "rtl" / "manifest.json").read_text())
    x = sample_inputs(json.loads((digits_project / "accel.json").read_text()), 7, seed=8)
    beats = frame_beats(x, m["layers"][0]["SIMD"], m["in_element_bits"])
    want = b"".join(b.to_bytes(L.in_beat_bytes, "little") for b in beats)
    assert L.pack(L.check_inputs(x)).tobytes() == want


def test_unpack_signed_accumulators(digits_acc_build):
    from bnnforge.hw.vivado.wrapper import stream_layout
    m = json.loads((digits_acc_build / "rtl" / "manifest.json").read_text())
    L = StreamLayout(stream_layout(m, 100.0))
    vals = np.random.default_rng(0).integers(-(1 << (m["acc_bits"] - 1)), 1 << (m["acc_bits"] - 1), size=(5, 10))
    raw = b"".join(b.to_bytes(L.out_beat_bytes, "little") for b in expected_beats(vals, m))
    assert np.array_equal(L.unpack(np.frombuffer(raw, np.uint8), 5), vals)


@pytest.mark.parametrize("x,msg", [
    (np.zeros((3, 64), np.float32), "dtype float32; the accelerator takes integers"),
    (np.zeros((3, 63), np.int64), r"shape \(3, 63\); expected \(N, 64\) or \(N, 1, 8, 8\)"),
    (np.full((2, 64), 16), "input value 16 at frame 0, element 0 is outside unsigned 4-bit integers"),
    (np.zeros((0, 64), np.int8), "no frames"),
])
def test_driver_input_errors(digits_project, x, msg):
    L = StreamLayout.load(digits_project / "accel.json")
    with pytest.raises(DriverInputError, match=msg):
        L.check_inputs(x)


def test_driver_imports_without_torch_qonnx_cocotb_onnx():
    code = ("import sys\n"
            "for m in ('torch', 'qonnx', 'cocotb', 'onnx', 'onnxruntime', 'brevitas', 'bnnforge', 'sim', 'hw'):\n"
            "    sys.modules[m] = None\n"
            f"sys.path.insert(0, {str(REPO / 'hw')!r})\n"
            "import pynq_driver\n"
            "print(pynq_driver.BnnOverlay.__name__)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "BnnOverlay", p.stderr


@pytest.mark.rtl
def test_driver_on_simulated_conv_network(tmp_path):
    """A conv network (sliding windows, pool) behind the DMA wrapper: the driver takes
    channels-last integer images (H, W, C) and classifies exactly as the golden model."""
    from bnnforge.hw.vivado.project import write_project
    from tests.deploy.conftest import _build

    bdir = _build(tmp_path, topology="digits_cnv", act="bipolar", folding="digits_cnv.json", seed=33)
    proj = write_project(bdir, board="pynq-z1")
    lay = json.loads((proj / "accel.json").read_text())
    assert lay["input"]["shape"] == [8, 8, 1] and lay["input"]["elements"] == 64
    assert lay["cycles_per_frame_ideal"] == 324
    x = sample_inputs(lay, 100, seed=8)
    exp = golden_outputs(bdir, x)
    r = verify_with_sim(proj, x, exp, batch_size=50)
    assert r["frames"] == 100 and r["mismatches"] == 0 and np.array_equal(r["outputs"], exp)
    assert len(np.unique(exp)) > 1
