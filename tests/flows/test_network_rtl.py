"""Whole networks in RTL (Verilator + cocotb): every output beat bit-exact with the
golden model, golden argmax equal to torch on every input, and the measured
steady-state cycles per frame against the ideal (BNN-PYNQ / finn-examples foldings)."""
import json
from pathlib import Path

import numpy as np
import pytest

from bnnforge.sim.golden import execute, quantize_inputs
from bnnforge.sim.network import run_network
from tests.flows.helpers import HW_STEPS, export_and_build, random_model, torch_outputs

REPO = Path(__file__).resolve().parents[2]
FOLD = REPO / "configs" / "folding"


def _check(tmp_path, model, folding, n=200, p=0.0, expect_cycles=None, name="net", x=None):
    streamlined, hw, bdir = export_and_build(model, tmp_path, steps=HW_STEPS + ["codegen"],
                                             folding_config_file=str(folding), name=name)
    if x is None:
        x = np.random.default_rng(7).random((n,) + model.spec.input_shape, dtype=np.float32)
    n = len(x)
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
    _check(tmp_path, random_model("sfc", act, seed=25), _sfc_folding(tmp_path), expect_cycles=256)


MNIST = REPO.parent / "shared" / "datasets" / "mnist-t10k"
FC_FOLDINGS = {"tfc": ("tfc_finn_examples.json", 64), "sfc": (None, 256), "lfc": ("lfc_bnn_pynq.json", 512)}


def _trained(tmp_path, topology, act, epochs):
    if not MNIST.is_dir():
        pytest.skip(f"real MNIST not found at {MNIST}")
    from bnnforge.models.data import load_mnist
    from bnnforge.models.topologies import build_model
    from bnnforge.models.train import train

    data = load_mnist(MNIST)
    model = build_model(topology, act)
    res = train(model, data, tmp_path / "train", epochs=epochs, batch_size=128, lr=0.005, seed=0,
                meta=model.meta(), progress=False, num_threads=1)
    return model.eval(), data, res


def _sfc_folding(tmp_path):
    f = tmp_path / "sfc.json"
    f.write_text(json.dumps({"MVTU_0": {"PE": 16, "SIMD": 49}, "MVTU_1": {"PE": 16, "SIMD": 16},
                             "MVTU_2": {"PE": 16, "SIMD": 16}, "MVTU_3": {"PE": 10, "SIMD": 16}}))
    return f


@pytest.mark.rtl
@pytest.mark.parametrize("topology,act", [
    ("tfc", "unipolar"),
    ("tfc", "bipolar"),
    pytest.param("sfc", "unipolar", marks=pytest.mark.slow),
    pytest.param("sfc", "bipolar", marks=pytest.mark.slow),
    pytest.param("lfc", "unipolar", marks=pytest.mark.slow),
    pytest.param("lfc", "bipolar", marks=pytest.mark.slow),
])
def test_trained_on_real_mnist_rtl_bit_exact(tmp_path, topology, act):
    """Trained on the real MNIST digits (8,000), then 200 real test digits through
    torch, golden and RTL: argmax equal, RTL bit-exact, accuracy recorded."""
    model, data, res = _trained(tmp_path, topology, act, epochs=2)
    assert res["test_acc"] >= 0.80, res
    name, cycles = FC_FOLDINGS[topology]
    folding = FOLD / name if name else _sfc_folding(tmp_path)
    (tmp_path / "hw").mkdir()
    out = _check(tmp_path / "hw", model, folding, expect_cycles=cycles, x=data.test.x[:200])
    rtl_acc = float(np.mean(np.array(out["labels_rtl"]) == data.test.y[:200]))
    print(f"{topology}/{act}: torch test acc (2,000 imgs) {res['test_acc']:.4f}, RTL acc on 200 {rtl_acc:.4f}, "
          f"cycles/frame {out['cycles_per_frame_measured']:.1f}")
    assert rtl_acc >= 0.75


@pytest.mark.rtl
def test_build_with_rtlsim_step_writes_report(tmp_path):
    """The rtlsim build step: images from an .npy quantized by the model's own input
    quantizer, simulated and compared; figures land in report/rtlsim.json."""
    m = random_model("digits_mlp", "unipolar", seed=31)
    images = np.random.default_rng(1).random((30, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "images.npy", images)
    _, _, bdir = export_and_build(m, tmp_path, steps=HW_STEPS + ["codegen", "rtlsim"],
                                  folding_config_file=str(FOLD / "digits_mlp.json"),
                                  rtlsim_inputs=str(tmp_path / "images.npy"), rtlsim_count=30)
    rep = json.loads((bdir / "report" / "rtlsim.json").read_text())
    assert rep["frames"] == 30 and rep["rtl_mismatches"] == 0 and rep["tlast_correct"]
