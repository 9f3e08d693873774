"""Deployment package, FINN interop (FINN-dependent parts skip without FINN), Docker."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from bnnforge.errors import BnnforgeError
from bnnforge.finn_flows.finn_interop import adapt_model, dataflow_config, finn_available, finn_folding

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.rtl
def test_deploy_package_and_validate_script(digits_build, tmp_path):
    from bnnforge.cli import main
    from bnnforge.deploy import SimIO

    out = tmp_path / "pkg"
    assert main(["deploy", str(digits_build), "--out", str(out), "--samples", "100", "--archive"]) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "manifest.json", "pynq_driver/__init__.py", "pynq_driver/accel.json",
                     "pynq_driver/driver.py", "pynq_driver/validate.py", "sample/sample.npz"]
    info = json.loads((out / "manifest.json").read_text())
    assert info["sim_check"]["frames"] == 100 and info["sim_check"]["mismatches"] == 0 and not info["bitfile"]
    assert (tmp_path / "pkg.tar.gz").is_file()
    # no Vivado run, no timing measured: the board clock is said to be assumed
    assert not info["throughput"]["fclk_met_in_vivado"]
    assert ("Throughput: 1,562,500 frames/s at an assumed 100 MHz (not measured), the FCLK0 the bitstream will run "
            "at (64 cycles/frame)") in (out / "README.md").read_text()
    # the packaged validation script, as on the board, with the simulated DMA as its io
    sys.path.insert(0, str(out))
    try:
        import importlib
        validate = importlib.import_module("pynq_driver.validate")
        io = SimIO(digits_build / "vivado")
        assert validate.main(["--dataset", str(out / "sample" / "sample.npz"),
                              "--layout", str(out / "pynq_driver" / "accel.json")], io=io) == 0
        bad = tmp_path / "bad.npz"
        d = dict(np.load(out / "sample" / "sample.npz"))
        d["expected"] = d["expected"].copy()
        d["expected"][3] = (d["expected"][3] + 1) % 10
        np.savez(bad, **d)
        assert validate.main(["--dataset", str(bad), "--layout", str(out / "pynq_driver" / "accel.json")], io=io) == 1
    finally:
        sys.path.remove(str(out))
        for m in [m for m in sys.modules if m.startswith("pynq_driver")]:
            del sys.modules[m]


@pytest.mark.parametrize("args,msg", [
    (["deploy", "{b}", "--samples", "0"], "--samples: must be a positive integer, got 0"),
    (["deploy", "{b}", "--images", "nope.npy"], "nope.npy: --images file not found"),
    (["deploy", "{b}", "--board", "ultra96"], "--board: unknown board 'ultra96'"),
    (["deploy", "/nonexistent/build"], "/nonexistent/build/rtl/manifest.json: not found"),
])
def test_deploy_bad_input_one_line_nothing_written(digits_build, tmp_path, capsys, args, msg):
    from bnnforge.cli import main
    out = tmp_path / "pkg"
    assert main([a.format(b=digits_build) for a in args] + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnnforge: error: ") and msg in err[0]
    assert not out.exists()


def test_adapt_model_is_exact_and_idempotent(digits_build):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    m = onnx.load(str(digits_build.parent / "model.onnx"))
    a, n = adapt_model(m)
    assert n == 3  # the 4-bit unsigned input quantizer and the two {0,1} activations
    assert adapt_model(a)[1] == 0
    mw, aw = (ModelWrapper(x).transform(InferShapes()) for x in (m, a))
    i, o = mw.graph.input[0].name, mw.graph.output[0].name
    rng = np.random.default_rng(0)
    for _ in range(8):
        x = (rng.random((1, 1, 8, 8), dtype=np.float32) * 24 - 6).astype(np.float32)
        assert np.array_equal(execute_onnx(mw, {i: x})[o], execute_onnx(aw, {i: x})[aw.graph.output[0].name])


@pytest.mark.parametrize("act,relus", [("unipolar", 4), ("bipolar", 0)])
def test_adapt_model_moves_input_flatten_in_front_of_the_quantizer(tmp_path, act, relus):
    """TFC flattens after its input quantizer; FINN needs the Flatten first (else a software
    Flatten sits between two HW layers). Exact: the (1,1,1,1) constants become 0-d."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    from bnnforge.models.export import export_qonnx
    from tests.flows.helpers import random_model

    net = random_model("tfc", act, seed=5)
    m = onnx.load(str(export_qonnx(net, tmp_path / "tfc.onnx", (1,) + net.spec.input_shape)))
    a, n = adapt_model(m)
    assert n == relus and a.graph.node[0].op_type == "Flatten" and a.graph.node[0].input[0] == a.graph.input[0].name
    again, n2 = adapt_model(a)
    assert n2 == 0 and [x.op_type for x in again.graph.node] == [x.op_type for x in a.graph.node]
    mw, aw = (ModelWrapper(x).transform(InferShapes()) for x in (m, a))
    quant_out = next(x.output[0] for x in aw.graph.node if x.op_type in ("Quant", "BipolarQuant")
                     and aw.get_initializer(x.input[0]) is None)
    assert aw.get_tensor_shape(quant_out) == [1, 784]
    rng = np.random.default_rng(1)
    for _ in range(4):
        x = rng.random((1, 1, 28, 28), dtype=np.float32)
        assert np.array_equal(execute_onnx(mw, {mw.graph.input[0].name: x})[mw.graph.output[0].name],
                              execute_onnx(aw, {aw.graph.input[0].name: x})[aw.graph.output[0].name])


def test_finn_folding_names_and_config():
    ours = json.loads((REPO / "configs" / "folding" / "lfc_bnn_pynq.json").read_text())
    f = finn_folding(ours)
    assert f == {"Defaults": {}, "MVAU_hls_0": {"PE": 32, "SIMD": 56}, "MVAU_hls_1": {"PE": 64, "SIMD": 32},
                 "MVAU_hls_2": {"PE": 32, "SIMD": 64}, "MVAU_hls_3": {"PE": 10, "SIMD": 8}}
    with pytest.raises(BnnforgeError, match="entry 'Conv_0' has no FINN counterpart"):
        finn_folding({"Conv_0": {"PE": 1}})
    with pytest.raises(BnnforgeError, match="MVTUSparse_1 is a block-sparse layer .* FINN has no block-sparse unit"):
        finn_folding({"MVTU_0": {"PE": 1}, "MVTUSparse_1": {"PE": 2}})
    with pytest.raises(BnnforgeError, match="MVTU_1 must be an object with only PE/SIMD"):
        finn_folding({"MVTU_1": {"PE": 1, "ram_style": "block"}})
    cfg = dataflow_config(Path("o"), Path("f.json"), 100.0, "pynq-z1")
    assert cfg["board"] == "Pynq-Z1" and cfg["synth_clk_period_ns"] == 10.0
    assert cfg["steps"][1] == "step_qonnx_to_finn" and cfg["steps"][-1] == "step_generate_estimate_reports"
    assert cfg["enable_build_pdb_debug"] is False
    assert cfg["steps"].index("step_bnnforge_bipolar_qonnx_to_finn") == 2
    assert cfg["steps"].index("step_bnnforge_clip_xnor_thresholds") + 1 == cfg["steps"].index("step_minimize_bit_width")


FINN_OK, FINN_WHY = finn_available()


@pytest.mark.skipif(not FINN_OK, reason=f"FINN not importable ({FINN_WHY})")
@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_finn_accepts_config_and_estimates_match_ours(tmp_path, act):
    """With FINN importable: FINN's estimate steps on our TFC folding file, unchanged;
    cycles per layer equal; every folding entry used by FINN."""
    from tests.deploy.conftest import _build
    from bnnforge.finn_flows.finn_interop import compare_cycles, prepare, run_finn

    b = _build(tmp_path, "tfc", act, "tfc_finn_examples.json", seed=3)
    folding = json.loads((REPO / "configs" / "folding" / "tfc_finn_examples.json").read_text())
    prep = prepare(b.parent / "model.onnx", folding, tmp_path / "finn")
    run_finn(prep)
    rows = compare_cycles(prep["config"]["output_dir"], json.loads((b / "report" / "estimates.json").read_text()))
    assert len(rows) == 4 and all(r["finn_cycles"] == r["our_cycles"] for r in rows), rows
    inter = Path(prep["config"]["output_dir"]) / "intermediate_models"
    folded = onnx.load(str(inter / "step_apply_folding_config.onnx"))
    got = {n.name: {a.name: a.i for a in n.attribute if a.name in ("PE", "SIMD")}
           for n in folded.graph.node if n.op_type.startswith("MVAU")}
    assert got == {k: v for k, v in json.loads((tmp_path / "finn" / "folding_finn.json").read_text()).items()
                   if k != "Defaults"}


def test_dockerfiles_use_the_readme_install_entry_point():
    readme = (REPO / "README.md").read_text()
    quick = readme[readme.index("## Quick start"):readme.index("## A five-minute tour")]
    assert re.search(r"^make demo\b", quick, re.M) and re.search(r"^make test\b", quick, re.M)
    mk = (REPO / "Makefile").read_text()
    # demo and test both go through the install target's stamp
    assert re.search(r"^install: \$\(STAMP\)", mk, re.M)
    assert re.search(r"^demo: \$\(STAMP\)", mk, re.M) and re.search(r"^test: \$\(STAMP\)", mk, re.M)
    for d in ("bnnforge", "finn"):
        text = (REPO / "docker" / d / "Dockerfile").read_text()
        runs = [l for l in text.splitlines() if l.startswith("RUN ")]
        assert any(re.match(r"RUN make install\b", l) for l in runs), d
        assert not any("pip install" in l for l in runs), d  # no second, drifting install path
        assert (REPO / "docker" / d / "README.md").is_file()
    assert "FROM python:3.11-slim" in (REPO / "docker" / "bnnforge" / "Dockerfile").read_text()
