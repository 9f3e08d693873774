"""Models we did not write: Brevitas' own BNN-PYNQ examples (`brevitas_examples.bnn_pynq`,
the networks of FINN's end-to-end tests), random init with random BatchNorm statistics,
exported the documented way (`brevitas.export.export_qonnx`) with both exporters:
the default dynamo exporter and TorchScript (`dynamo=False`).

For each supported model: the build succeeds, the golden model's argmax equals qonnx's
execution of the exported file, the RTL equals the golden model beat for beat (bulk
Verilator harness), and the measured cycles per frame equal the ideal: every zoo
model, 1W1A, 1W2A and 2W2A (2-bit weights: the k-bit weight unit, mvtu_kbit).
TFC runs in CI; SFC, LFC and CNV in the slow set.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import bnnforge
from bnnforge.cli import main
from bnnforge.sim.bulk import run_network_bulk
from bnnforge.sim.golden import execute, quantize_inputs
from bnnforge.zoo import ZOO, folding_for, input_shape, qonnx_outputs, zoo_export

pytestmark = pytest.mark.rtl
STEPS = ["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"]


def check_zoo_model(tmp_path, name, exporter, n_golden, n_rtl):
    onnx_path = tmp_path / f"{name}_{exporter}.onnx"
    model, shape = zoo_export(name, exporter, onnx_path), input_shape(name)
    bnnforge.build(onnx_path, tmp_path / "build", folding=folding_for(name), steps=STEPS)
    b = tmp_path / "build"
    streamlined = onnx.load(str(b / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(b / "final_model.onnx"))
    x = np.random.default_rng(3).random((n_golden,) + shape[1:], dtype=np.float32)
    q = quantize_inputs(streamlined, x)
    golden = execute(hw, q)
    ref = qonnx_outputs(onnx_path, x)
    with torch.no_grad():
        assert np.allclose(model(torch.from_numpy(x)).numpy(), ref, atol=1e-4)  # qonnx runs the file like torch
    agree = int(np.sum(golden.reshape(-1) == ref.argmax(1)))
    assert agree == n_golden, f"golden argmax == qonnx on {agree} of {n_golden}"
    res = run_network_bulk(b / "rtl", q[:n_rtl], golden[:n_rtl], p_gap=0.2, p_stall=0.2, seed=1)
    assert res["rtl_mismatches"] == 0, res["first_mismatches"]
    assert res["tlast_correct"] and res["extra_beats"] == 0
    clean = run_network_bulk(b / "rtl", q[:n_rtl], golden[:n_rtl])  # no stalls: the ideal rate
    assert clean["rtl_mismatches"] == 0
    assert clean["cycles_per_frame_measured"] == clean["cycles_per_frame_ideal"]
    return clean


@pytest.mark.parametrize("name", ["tfc_1w1a", "tfc_1w2a", "tfc_2w2a"])
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_tfc(tmp_path, name, exporter):
    check_zoo_model(tmp_path, name, exporter, n_golden=200, n_rtl=200)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a"])
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_fc_1w1a_slow(tmp_path, name, exporter):
    check_zoo_model(tmp_path, name, exporter, n_golden=200, n_rtl=50)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnv_1w1a", "cnv_1w2a", "cnv_2w2a"])
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_cnv_slow(tmp_path, name, exporter):
    check_zoo_model(tmp_path, name, exporter, n_golden=40, n_rtl=10)


def test_2w2a_layers_use_the_kbit_unit(tmp_path):
    """FINN's W2A2: every layer's ternary weights (scattered zeros, not the whole-group
    blocks of a grouped layer) go to the k-bit weight unit, the hidden ones taking the
    signed 2-bit levels with their offset; the generated Verilog is lint-clean."""
    from bnnforge.hw.hwgraph import get_attrs, initializer

    onnx_path = tmp_path / "m.onnx"
    zoo_export("tfc_2w2a", "dynamo", onnx_path)
    bnnforge.build(onnx_path, tmp_path / "b", folding=folding_for("tfc_2w2a"), steps=STEPS)
    hw = onnx.load(str(tmp_path / "b" / "final_model.onnx"))
    units = [n for n in hw.graph.node if n.op_type.startswith("MVTU")]
    assert [n.op_type for n in units] == ["MVTUKbit"] * 4
    # the zoo's activations are narrow signed 2-bit (-1, 0, +1): on the wire level = value + 1
    assert [get_attrs(n).get("input_offset", 0) for n in units] == [0, 1, 1, 1]
    for n in units:
        w = initializer(hw, n.input[1])
        assert get_attrs(n)["weight_bits"] == 2 and set(np.unique(w).tolist()) == {-1, 0, 1}
    import json

    from bnnforge.sim.runner import lint

    rtl = tmp_path / "b" / "rtl"
    manifest = json.loads((rtl / "manifest.json").read_text())
    assert [st["module"] for st in manifest["stages"]] == ["mvtu_kbit"] * 4
    assert lint([rtl / f for f in manifest["files"]], manifest["top"]) == []   # generated Verilog


# CI: the TFC with binary and with 2-bit weights (the other kernel, mvtu_kbit); the rest slow
@pytest.mark.parametrize("name", [n if n in ("tfc_1w1a", "tfc_2w2a") else pytest.param(n, marks=pytest.mark.slow)
                                  for n in ZOO])
def test_deploy_images_and_rtlsim_inputs(tmp_path, capsys, name):
    """Host-side input quantization of every zoo model (the FC ones flatten before their
    input quantizer and compute 2x - 1 in the graph; CNV takes 8-bit RGB): the rtlsim
    step on given images and the deployment package's driver check on given images,
    both against the golden model. TFC in CI, the rest in the slow set."""
    import json

    from bnnforge.finn_flows.builder import build
    from bnnforge.finn_flows.config import load_config

    n = 4 if name.startswith("cnv") else 24  # CNV: 32,768 cycles per frame
    onnx_path = tmp_path / "m.onnx"
    zoo_export(name, "dynamo", onnx_path)
    x = np.random.default_rng(5).random((n,) + input_shape(name)[1:], dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(n) % 10)
    (tmp_path / "folding.json").write_text(json.dumps(folding_for(name)))
    cfg = load_config(None, model=str(onnx_path), output_dir=str(tmp_path / "b"), rtlsim_inputs=str(tmp_path / "x.npy"),
                      rtlsim_count=n, folding_config_file=str(tmp_path / "folding.json"), steps=STEPS + ["rtlsim"])
    build(cfg, progress=False)
    sim = json.loads((tmp_path / "b" / "report" / "rtlsim.json").read_text())
    assert sim["frames"] == n and sim["rtl_mismatches"] == 0 and sim["tlast_correct"]
    assert main(["deploy", str(tmp_path / "b"), "--out", str(tmp_path / "pkg"), "--samples", str(n),
                 "--images", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]) == 0
    assert f"driver on simulated RTL: {n} inputs, 0 differ from the golden model" in capsys.readouterr().out
    # one frame: the simulated DMA must wait out the pipeline's fill (CNV: its stages' frame times sum to 7.7
    # intervals, 251,152 cycles, against a one-frame budget of 110,544 before the fix)
    assert main(["deploy", str(tmp_path / "b"), "--out", str(tmp_path / "pkg1"), "--samples", "1",
                 "--images", str(tmp_path / "x.npy")]) == 0
    assert "driver on simulated RTL: 1 inputs, 0 differ from the golden model" in capsys.readouterr().out
    sample = np.load(tmp_path / "pkg" / "sample" / "sample.npz")
    streamlined = onnx.load(str(tmp_path / "b" / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(tmp_path / "b" / "final_model.onnx"))
    q = quantize_inputs(streamlined, x)
    # the packaged inputs are the host-quantized images, and their golden labels are qonnx's
    assert np.array_equal(sample["x"].reshape(n, -1), q.reshape(n, -1))
    assert np.array_equal(execute(hw, q).reshape(-1), qonnx_outputs(onnx_path, x).argmax(1))


def test_negative_tensor_norm_scale(tmp_path):
    """The zoo ends in a TensorNorm, one scale for all logits; a negative one reverses
    the argmax, which the compiler absorbs by negating the last layer's weights."""
    def negate(model):
        tn = next(m for m in model.modules() if type(m).__name__ == "TensorNorm")
        with torch.no_grad():
            tn.weight.copy_(-tn.weight.abs().clamp(min=0.1))

    onnx_path = tmp_path / "m.onnx"
    zoo_export("tfc_1w1a", "dynamo", onnx_path, seed=4, edit=negate)
    bnnforge.build(onnx_path, tmp_path / "b", steps=["tidy_up", "streamline", "convert_to_hw"])
    streamlined = onnx.load(str(tmp_path / "b" / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(tmp_path / "b" / "final_model.onnx"))
    x = np.random.default_rng(1).random((100, 1, 28, 28), dtype=np.float32)
    ref = qonnx_outputs(onnx_path, x).argmax(1)
    assert len(np.unique(ref)) > 1  # not a network collapsed onto one label
    assert np.array_equal(execute(hw, quantize_inputs(streamlined, x)).reshape(-1), ref)



@pytest.mark.parametrize("name,exporter", [("tfc_1w2a", "dynamo"), ("tfc_2w2a", "torchscript")])
def test_qonnx_cleaned_export(tmp_path, name, exporter):
    """A user who runs qonnx's cleanup (`qonnx-cleanup`: shape inference, constant folding,
    unique names) before bnnforge gets the same network: golden argmax == qonnx's
    execution of the original export."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    onnx_path, clean_path = tmp_path / "m.onnx", tmp_path / "m_clean.onnx"
    zoo_export(name, exporter, onnx_path)
    cleanup_model(ModelWrapper(str(onnx_path))).save(str(clean_path))
    bnnforge.build(clean_path, tmp_path / "b", folding=folding_for(name), steps=STEPS[:-1])
    streamlined = onnx.load(str(tmp_path / "b" / "intermediate_models" / "01_streamline.onnx"))
    hw = onnx.load(str(tmp_path / "b" / "final_model.onnx"))
    x = np.random.default_rng(8).random((200,) + input_shape(name)[1:], dtype=np.float32)
    ref = qonnx_outputs(onnx_path, x).argmax(1)
    assert len(np.unique(ref)) > 1
    assert np.array_equal(execute(hw, quantize_inputs(streamlined, x)).reshape(-1), ref)
