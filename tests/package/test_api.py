"""The Python API and the CLI commands added with the package: `bnnforge.build`,
`bnnforge.synthesize` inputs, `bnnforge train --method`, export into new folders."""
from __future__ import annotations

import json
import re

import pytest
import torch

import bnnforge
from bnnforge.cli import main
from bnnforge.errors import BnnforgeError
from bnnforge.models.export import export_qonnx
from tests.flows.helpers import HW_STEPS, random_model


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnnforge: error: "), err
    return err[0]


def test_build_through_the_api(tmp_path):
    m = random_model("digits_mlp", "unipolar")
    onnx_path = bnnforge.export(m, tmp_path / "m" / "model.onnx")
    summary = bnnforge.build(onnx_path, tmp_path / "build", folding=bnnforge.shipped_folding("digits_mlp.json"),
                             steps=HW_STEPS + ["codegen"])
    assert summary["steps"] == HW_STEPS + ["codegen"]
    manifest = json.loads((tmp_path / "build" / "rtl" / "manifest.json").read_text())
    assert manifest["top"] and all((tmp_path / "build" / "rtl" / f).is_file() for f in manifest["files"])


def test_api_errors_are_one_line(tmp_path):
    with pytest.raises(BnnforgeError, match="no such shipped folding; shipped: .*digits_mlp.json"):
        bnnforge.shipped_folding("nope.json")
    with pytest.raises(BnnforgeError, match="model file not found"):
        bnnforge.build(tmp_path / "missing.onnx", tmp_path / "out")
    with pytest.raises(BnnforgeError, match="manifest.json: not found"):
        bnnforge.synthesize(tmp_path)
    assert not (tmp_path / "out").exists()


def test_export_creates_missing_folders(tmp_path, capsys):
    out = tmp_path / "new" / "dir" / "model.onnx"
    assert main(["export", "--topology", "digits_mlp", "--out", str(out)]) == 0
    assert out.is_file()


def test_failed_export_leaves_no_folders_behind(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        export_qonnx(Broken(), tmp_path / "a" / "b" / "model.onnx", (1, 4))
    assert list(tmp_path.iterdir()) == []


def test_train_with_a_method(tmp_path, capsys):
    out = tmp_path / "runs" / "sibnn"
    assert main(["train", "--method", "sibnn", "--epochs", "1", "--export", "--quiet", "--out", str(out),
                 "--param", "window_lo=-0.25"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("sibnn: test accuracy "), line
    assert float(re.search(r"max abs diff ([0-9.e+-]+)\)", line).group(1)) < 1e-5, line
    assert (out / "model.onnx").is_file() and (out / "checkpoint.pt").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--method", "nope"], "unknown method; methods: bipolar, unipolar, sibnn"),
    (["--method", "sibnn", "--topology", "tfc"], "--topology: not used with --method"),
    (["--method", "sibnn", "--param", "oops"], "expected name=value"),
    (["--config", "x.yaml"], "only with --method"),
])
def test_train_bad_arguments(tmp_path, capsys, argv, message):
    assert main(["train", "--out", str(tmp_path / "o"), *argv]) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_cli_build_reports_the_rtl_simulation(tmp_path, capsys):
    onnx_path = bnnforge.export(random_model("digits_mlp", "unipolar"), tmp_path / "model.onnx")
    assert main(["build", "--model", str(onnx_path), "--out", str(tmp_path / "b"), "--quiet",
                 "--folding", str(bnnforge.shipped_folding("digits_mlp.json")),
                 "--steps", ",".join(HW_STEPS + ["codegen", "rtlsim"])]) == 0
    out = capsys.readouterr().out
    assert re.search(r"RTL simulation \(Verilator\): 200 frames, 0 mismatches against the golden model, "
                     r"64\.0 cycles/frame \(ideal 64\)", out), out
