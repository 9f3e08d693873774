"""`bnnforge sim BUILD --images X.npy [--labels Y.npy]` and `bnnforge.simulate_dataset.simulate`:
a dataset through a finished build's RTL (bulk harness), against the golden model
computed here independently, on the bundled digits test split."""
import json

import numpy as np
import onnx
import pytest

from bnnforge.cli import main
from bnnforge.simulate_dataset import simulate
from bnnforge.sim.golden import execute, quantize_inputs
from tests.deploy.conftest import _build
from tests.flows.helpers import copy_with_inverted_classifier

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The deployment tests' digits MLP build (same seed: same Verilator model in the
    cache) and the digits test split as .npy files."""
    from bnnforge.models.data import load_digits

    tmp = tmp_path_factory.mktemp("simcmd")
    bdir = _build(tmp)
    test = load_digits().test
    np.save(tmp / "x.npy", test.x)
    np.save(tmp / "y.npy", test.y)
    streamlined = onnx.load(str(bdir / "intermediate_models" / "01_streamline.onnx"))
    golden = execute(onnx.load(str(bdir / "final_model.onnx")), quantize_inputs(streamlined, test.x))
    return {"build": bdir, "x": tmp / "x.npy", "y": tmp / "y.npy", "golden": np.asarray(golden), "labels": test.y,
            "tmp": tmp}


def test_cli_reports_accuracy_mismatches_and_cycles(digits, tmp_path, capsys):
    out = tmp_path / "new" / "figures.json"
    rc = main(["sim", str(digits["build"]), "--images", str(digits["x"]), "--labels", str(digits["y"]),
               "--json", str(out), "--chunk", "100"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    r = json.loads(out.read_text())
    n = len(digits["labels"])
    assert r["frames"] == n == 360 and r["chunks"] == 4 and r["labels"] == n
    assert r["frames_mismatching"] == 0 and r["rtl_beat_mismatches"] == 0 and r["tlast_correct"]
    want = float(np.mean(digits["golden"] == digits["labels"]))
    assert r["accuracy_golden"] == want and r["accuracy_rtl"] == want
    # the digits folding streams one frame per 64 cycles (MW 64 / SIMD 64 ... see estimates.json)
    est = json.loads((digits["build"] / "report" / "estimates.json").read_text())
    assert r["cycles_per_frame_ideal"] == est["cycles_per_frame_ideal"]
    assert abs(r["cycles_per_frame_measured"] - r["cycles_per_frame_ideal"]) <= 1
    assert r["latency_cycles_first_frame"] > 0 and r["fps_at_fclk"] > 0
    assert f"accuracy on {n} labels: RTL {want:.4f}, golden {want:.4f}" in text.out
    assert "mismatches against the golden model: 0 frames" in text.out
    # the progress bar moved chunk by chunk
    assert all(f"{k}/{n}" in text.err for k in (0, 100, 200, 300, n))


def test_api_limit_and_chunks_give_the_same_predictions(digits):
    whole = simulate(digits["build"], np.load(digits["x"]), limit=50)
    chunked = simulate(digits["build"], np.load(digits["x"])[:, 0], limit=50, chunk_size=7)  # (N, 8, 8) fits too
    assert whole["frames"] == chunked["frames"] == 50 and chunked["chunks"] == 8
    assert whole["predictions_rtl"] == chunked["predictions_rtl"] == digits["golden"][:50].tolist()
    assert "accuracy_rtl" not in whole


def test_corrupted_weights_are_reported_as_mismatches(digits, tmp_path, capsys):
    """The same build with the classifier's weights inverted (the memory images are
    read at run time): the command must report differing frames and fail."""
    bad = tmp_path / "bad"
    copy_with_inverted_classifier(digits["build"], bad)
    out = tmp_path / "bad.json"
    rc = main(["sim", str(bad), "--images", str(digits["x"]), "--labels", str(digits["y"]), "--limit", "100",
               "--json", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("bnnforge: error:") and "differs from the golden model" in err[-1]
    r = json.loads(out.read_text())
    assert r["frames"] == 100 and r["frames_mismatching"] > 0 and r["rtl_beat_mismatches"] == r["frames_mismatching"]


def _bad_inputs(digits, tmp):
    x = np.load(digits["x"])
    np.save(tmp / "wrong_shape.npy", np.zeros((5, 3, 8, 8), np.float32))
    np.save(tmp / "nan.npy", np.full((3, 1, 8, 8), np.nan, np.float32))
    np.save(tmp / "few_labels.npy", np.zeros(5, np.int64))
    np.save(tmp / "text_labels.npy", np.array(["a"] * len(x)))
    (tmp / "x.txt").write_text("1 2 3\n")
    (tmp / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    b, xs, ys = str(digits["build"]), str(digits["x"]), str(digits["y"])
    return {
        "missing build": ([str(tmp / "nope"), "--images", xs], "build directory not found"),
        "not a build": ([str(tmp), "--images", xs], "manifest.json: not found"),
        "images missing": ([b, "--images", str(tmp / "none.npy")], "images file not found"),
        "not .npy": ([b, "--images", str(tmp / "x.txt")], "must be a .npy file"),
        "broken .npy": ([b, "--images", str(tmp / "broken.npy")], "cannot read images"),
        "wrong shape": ([b, "--images", str(tmp / "wrong_shape.npy")], "do not fit the model's input [N, 1, 8, 8]"),
        "labels as images": ([b, "--images", ys], "do not fit the model's input"),
        "nan": ([b, "--images", str(tmp / "nan.npy")], "NaN"),
        "label count": ([b, "--images", xs, "--labels", str(tmp / "few_labels.npy")], "5 labels for 360 images"),
        "label dtype": ([b, "--images", xs, "--labels", str(tmp / "text_labels.npy")], "labels must be integers"),
        "limit": ([b, "--images", xs, "--limit", "0"], "--limit: must be a positive integer"),
        "json dir": ([b, "--images", xs, "--json", str(tmp)], "--json must name a file"),
    }


def test_bad_input_is_one_error_line(digits, tmp_path, capsys):
    for name, (args, msg) in _bad_inputs(digits, tmp_path).items():
        out = tmp_path / "figures.json"
        rc = main(["sim", *args, "--quiet"] + (["--json", str(out)] if "--json" not in args else []))
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("bnnforge: error:"), (name, err)
        assert msg in err[0], (name, err[0])
        assert not out.exists(), name


def test_accumulator_outputs_accuracy_from_bit_exact_frames(digits, tmp_path):
    """Without label select the RTL streams accumulators: accuracy is the golden
    argmax on frames the RTL reproduced bit for bit (the deployment tests' build)."""
    bdir = _build(tmp_path, seed=32, label_select=False)
    x, y = np.load(digits["x"])[:60], digits["labels"][:60]
    r = simulate(bdir, x, y, chunk_size=25)
    streamlined = onnx.load(str(bdir / "intermediate_models" / "01_streamline.onnx"))
    acc = execute(onnx.load(str(bdir / "final_model.onnx")), quantize_inputs(streamlined, x))
    assert r["frames_mismatching"] == 0 and r["tlast_correct"] and "predictions_rtl" not in r
    assert r["accuracy_rtl"] == r["accuracy_golden"] == float(np.mean(np.argmax(acc, axis=1) == y))
