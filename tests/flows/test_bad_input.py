"""Every bad input: a one-line error naming the node/file/field, non-zero exit, no
half-written build directory; nothing from the ONNX file reaches Verilog unsanitized."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from bnnforge.errors import BnnforgeError
from bnnforge.finn_flows.builder import build
from bnnforge.finn_flows.config import load_config
from bnnforge.hw.codegen import comment_safe, generate, sanitize_identifier
from bnnforge.models.export import export_qonnx
from tests.flows.helpers import HW_STEPS, random_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tfc_onnx(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfc")
    m = random_model("tfc", "unipolar", seed=1)
    return export_qonnx(m, d / "tfc.onnx", (1, 1, 28, 28))


def _build(model, out, **kw):
    cfg = load_config(None, model=str(model), output_dir=str(out), steps=kw.pop("steps", HW_STEPS), **kw)
    return build(cfg, progress=False)


def _assert_clean(out: Path):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_folding_that_does_not_divide(tmp_path, tfc_onnx):
    with pytest.raises(BnnforgeError, match=r"MVTU_0\.SIMD = 50 does not divide MW = 784"):
        _build(tfc_onnx, tmp_path / "b", folding={"MVTU_0": {"SIMD": 50}})
    with pytest.raises(BnnforgeError, match=r"MVTU_1\.PE = 7 does not divide MH = 64"):
        _build(tfc_onnx, tmp_path / "b", folding={"MVTU_1": {"PE": 7}})
    _assert_clean(tmp_path / "b")


def test_folding_unknown_layer_and_key(tmp_path, tfc_onnx):
    with pytest.raises(BnnforgeError, match="unknown layer 'MVTU_9'"):
        _build(tfc_onnx, tmp_path / "b", folding={"MVTU_9": {"PE": 1}})
    with pytest.raises(BnnforgeError, match="MVTU_0.ram_style is not a folding key"):
        _build(tfc_onnx, tmp_path / "b", folding={"MVTU_0": {"ram_style": "block"}})
    _assert_clean(tmp_path / "b")


def test_missing_and_corrupt_model(tmp_path):
    with pytest.raises(BnnforgeError, match="model file not found"):
        _build(tmp_path / "nope.onnx", tmp_path / "b")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(BnnforgeError, match="bad.onnx: not a valid ONNX model"):
        _build(bad, tmp_path / "b")
    _assert_clean(tmp_path / "b")


def test_unsupported_op_names_node(tmp_path, tfc_onnx):
    m = onnx.load(str(tfc_onnx))
    # put a Relu between the first BatchNormalization and its consumer
    bn = next(n for n in m.graph.node if n.op_type == "BatchNormalization")
    relu = onnx.helper.make_node("Relu", [bn.output[0]], ["relu_out"], name="evil relu ../x")
    for n in m.graph.node:
        for k, i in enumerate(n.input):
            if i == bn.output[0]:
                n.input[k] = "relu_out"
    m.graph.node.insert(list(m.graph.node).index(bn) + 1, relu)
    p = tmp_path / "relu.onnx"
    onnx.save(m, str(p))
    with pytest.raises(BnnforgeError, match="unsupported op Relu"):
        _build(p, tmp_path / "b")
    _assert_clean(tmp_path / "b")


def test_non_binary_weights_refused(tmp_path, tfc_onnx):
    m = onnx.load(str(tfc_onnx))
    bq = next(n for n in m.graph.node if n.op_type == "BipolarQuant")
    w = next(t for t in m.graph.initializer if t.name == bq.input[0])
    # turn the weight quantizer into a 5-bit Quant (the k-bit weight unit takes 2..4 bits)
    arr = onnx.numpy_helper.to_array(w)
    names = [f"q4_{k}" for k in range(3)]
    m.graph.initializer.extend([onnx.numpy_helper.from_array(np.array(v, dtype=np.float32), nm)
                                for v, nm in zip([0.1, 0.0, 5.0], names)])
    q = onnx.helper.make_node("Quant", [bq.input[0]] + names, [bq.output[0]], name="five_bit_weights",
                              domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND")
    idx = list(m.graph.node).index(bq)
    m.graph.node.remove(bq)
    m.graph.node.insert(idx, q)
    assert arr.size
    p = tmp_path / "w5.onnx"
    onnx.save(m, str(p))
    with pytest.raises(BnnforgeError, match="weights are not binary"):
        _build(p, tmp_path / "b")
    _assert_clean(tmp_path / "b")


def test_threshold_overflowing_accumulator_refused(tmp_path, tfc_onnx):
    _build(tfc_onnx, tmp_path / "b")
    hw = onnx.load(str(tmp_path / "b" / "final_model.onnx"))
    t = next(x for x in hw.graph.initializer if x.name == "mvtu0_thresholds")
    arr = onnx.numpy_helper.to_array(t).copy()
    arr[3] = 1 << 20
    t.CopyFrom(onnx.numpy_helper.from_array(arr, t.name))
    with pytest.raises(BnnforgeError, match="threshold 1048576 of output 3 overflows"):
        generate(hw, tmp_path / "rtl")


@pytest.mark.parametrize("name", ["module", "../x", "my net", "Ωmega", "1st", "", "a*/b/*c", "wire"])
def test_names_are_sanitized(name):
    ident = sanitize_identifier(name)
    assert ident and (ident[0].isalpha() or ident[0] == "_")
    assert all(c.isalnum() or c == "_" for c in ident) and ident.isascii()
    assert ident not in {"module", "wire", "input", "output"}
    c = comment_safe(name + "*/\nmodule evil;")
    assert "*/" not in c and "\n" not in c and c.isascii()


def test_hostile_node_names_never_reach_verilog(tmp_path, tfc_onnx):
    m = onnx.load(str(tfc_onnx))
    for n in m.graph.node:
        n.name = "endmodule */ ../../evil Ω\n" + n.name
    p = tmp_path / "hostile.onnx"
    onnx.save(m, str(p))
    _build(p, tmp_path / "b", steps=HW_STEPS + ["codegen"], name="module ../x")
    rtl = tmp_path / "b" / "rtl"
    files = sorted(f.name for f in rtl.iterdir())
    assert all(f.isascii() and "/" not in f and " " not in f for f in files)
    top = json.loads((rtl / "manifest.json").read_text())["top"]
    assert top == "module_x_top"
    text = (rtl / f"{top}.v").read_text()
    assert text.isascii() and text.count("endmodule") == 1
    assert all(line.lstrip().startswith("//") for line in text.splitlines() if "evil" in line)


def test_cli_errors_are_one_line(tmp_path):
    cmd = [sys.executable, "-m", "bnnforge.cli"]
    r = subprocess.run(cmd + ["export", "--topology", "resnet", "--out", str(tmp_path / "m.onnx")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "unknown topology 'resnet'; choices: cnv, digits_cnv, digits_mlp, lfc, sfc, tfc" in r.stderr
    r = subprocess.run(cmd + ["build", "--model", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "b")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "model file not found" in r.stderr
    assert not (tmp_path / "b").exists()
