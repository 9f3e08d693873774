"""bnnforge sweep: sweep-file validation, the serial and the local-Ray paths, resume,
failed candidates, and a worker killed mid-candidate."""
import csv
import json
from pathlib import Path

import pytest

from bnnforge import sweep as sweep_mod
from bnnforge.cli import main
from bnnforge.errors import BnnforgeError
from tests.flows.helpers import random_model


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    import bnnforge

    return bnnforge.export(random_model("digits_mlp", "unipolar"), tmp_path_factory.mktemp("sweep") / "model.onnx")


def write_sweep(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


def attempts(out: Path) -> list[str]:
    log = out / "attempts.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


BAD = [
    ("model: {onnx: M}\nspace: {target_cycles: [64]}\ncolour: red\n", "sweep: unknown key 'colour'"),
    ("model: {onnx: M}\nspace: {target_cycle: [64]}\n", "space: unknown key 'target_cycle'"),
    ("model: {onnx: M}\nspace: {}\n", "space: the candidate set is empty"),
    ("model: {onnx: M}\nspace: {target_cycles: [64]}\nsampling: {mode: random, count: 0}\n",
     "space: the candidate set is empty"),
    ("model: {onnx: M}\nspace: {target_cycles: []}\n", "space.target_cycles: must be a non-empty list"),
    ("model: {onnx: M}\nspace: {folding: [{MVTU_0: {PE: 7, SIMD: 8}}]}\n",
     "space.folding inline0: folding: MVTU_0.PE = 7 does not divide MH = 256"),
    ("model: {onnx: M}\nspace: {folding: [{MVTU_9: {PE: 1}}]}\n", "folding names unknown layer 'MVTU_9'"),
    ("model: {onnx: M}\nspace: {target_cycles: [64], method: [sibnn]}\n",
     "space.method: needs a training spec"),
    ("model: {onnx: missing.onnx}\nspace: {target_cycles: [64]}\n", "model.onnx: missing.onnx: file not found"),
    ("model: {train: {dataset: digits}}\nspace: {method: [nosuch]}\n", "space.method: unknown method 'nosuch'"),
    ("model: {onnx: M}\nspace: {target_cycles: [64]}\nstages: {rtlsim: {images: 0}}\n",
     "stages.rtlsim.images: 0 is not a positive integer"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_sweep_file_is_one_line_before_any_work(tmp_path, capsys, onnx_model, text, message):
    path = write_sweep(tmp_path, text.replace("{onnx: M}", f"{{onnx: {onnx_model}}}"))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-ray", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnnforge: error: ") and message in err[0], err
    assert not out.exists()


def test_unreachable_cluster_address(tmp_path, capsys, onnx_model):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_sweep(tmp_path, f"model: {{onnx: {onnx_model}}}\nspace: {{target_cycles: [64]}}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--address", f"127.0.0.1:{port}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bnnforge: error: --address 127.0.0.1:{port}: cannot reach"), err
    assert not out.exists()


def test_grid_and_random_sampling(tmp_path, onnx_model):
    grid = sweep_mod.load_sweep(write_sweep(
        tmp_path, "model: {train: {dataset: digits, epochs: 1}}\n"
                  "space: {target_cycles: [32, 64], method: [sibnn, margin], act_bits: [1, 2]}\n"))
    assert len(grid.candidates) == 8
    assert {"target_cycles": 32, "method": "margin", "params": {"act_bits": 2}} in grid.candidates
    rand = sweep_mod.load_sweep(write_sweep(
        tmp_path, "model: {train: {dataset: digits, epochs: 1}}\n"
                  "space: {target_cycles: [32, 64], method: [sibnn, margin], act_bits: [1, 2]}\n"
                  "sampling: {mode: random, count: 3, seed: 4}\n"))
    assert len(rand.candidates) == 3 and all(c in grid.candidates for c in rand.candidates)
    again = sweep_mod.load_sweep(rand.path)
    assert again.candidates == rand.candidates  # seeded


def test_serial_sweep_resume_and_failed_candidate(tmp_path, onnx_model, monkeypatch, capsys):
    """Without Ray: the same candidates one by one; a failing candidate is a row with
    its error; a rerun reads everything back."""
    monkeypatch.setattr(sweep_mod, "ray_available", lambda: False)
    real_stages = sweep_mod._run_stages

    def stages_failing_at_128(job, work):
        if job["candidate"].get("target_cycles") == 128:
            raise BnnforgeError("codegen: MVTU_1: simulated failure")
        return real_stages(job, work)

    monkeypatch.setattr(sweep_mod, "_run_stages", stages_failing_at_128)
    path = write_sweep(tmp_path, f"model: {{onnx: {onnx_model}}}\nspace: {{target_cycles: [64, 128]}}\n"
                                 "stages: {accuracy: {images: 50}}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Ray is not installed" in printed and "running 2 candidates serially" in printed
    assert "1 failed; serial" in printed
    rows = {int(r["target_cycles"]): r for r in csv.DictReader(open(out / "results.csv"))}
    assert rows[64]["status"] == "ok" and int(rows[64]["cycles_per_frame_ideal"]) <= 64
    assert int(rows[64]["est_luts"]) > 0 and float(rows[64]["fps"]) == pytest.approx(
        100e6 / int(rows[64]["cycles_per_frame_ideal"]), rel=1e-3)
    assert int(rows[64]["golden_images"]) == 50 and 0.0 <= float(rows[64]["accuracy_golden"]) <= 1.0
    assert rows[128]["status"] == "failed" and rows[128]["error"] == "codegen: MVTU_1: simulated failure"
    assert json.loads((out / "results.json").read_text())[1]["error"] == rows[128]["error"]
    assert (out / "pareto.png").stat().st_size > 0
    assert len(attempts(out)) == 2

    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    assert "(0 computed, 2 read back, 1 failed" in capsys.readouterr().out
    assert len(attempts(out)) == 2  # nothing recomputed
    monkeypatch.setattr(sweep_mod, "_run_stages", real_stages)
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--retry-failed"]) == 0
    assert "(1 computed, 1 read back, 0 failed" in capsys.readouterr().out
    assert len(attempts(out)) == 3


def test_pareto_front():
    pts = [(100, 10.0), (200, 30.0), (150, 5.0), (300, 30.0), (50, 1.0)]
    assert sweep_mod.pareto_front(pts) == [4, 0, 1]


needs_ray = pytest.mark.skipif(not sweep_mod.ray_available(), reason="Ray not installed (bnnforge[cluster])")


@needs_ray
def test_local_ray_sweep_and_resume(tmp_path, onnx_model):
    """Three candidates on local Ray, then a rerun that recomputes nothing."""
    path = write_sweep(tmp_path, f"model: {{onnx: {onnx_model}}}\nspace: {{target_cycles: [64, 128, 256]}}\n"
                                 "stages: {accuracy: {images: 40}}\n")
    out = tmp_path / "out"
    r = sweep_mod.run_sweep(path, out, workers=2, progress=False, say=lambda m: None)
    assert r["mode"] == "ray" and r["computed"] == 3
    for row, target in zip(r["rows"], (64, 128, 256)):
        assert row["status"] == "ok", row["error"]
        assert row["target_cycles"] == target and row["cycles_per_frame_ideal"] <= target
        assert row["golden_images"] == 40
    assert r["rows"][0]["est_luts"] > r["rows"][2]["est_luts"]  # more parallel, more LUT
    assert sorted(attempts(out)) == sorted(row["key"] for row in r["rows"])
    again = sweep_mod.run_sweep(path, out, workers=2, progress=False, say=lambda m: None)
    assert again["computed"] == 0 and again["reused"] == 3 and again["rows"] == r["rows"]
    assert len(attempts(out)) == 3


@needs_ray
@pytest.mark.slow
@pytest.mark.rtl
def test_ray_sweep_simulates_rtl_bit_exactly(tmp_path, onnx_model):
    """With the rtlsim stage every candidate's RTL (Verilator bulk harness) matches the
    golden model on every frame (a Verilator build per design: minutes)."""
    path = write_sweep(tmp_path, f"model: {{onnx: {onnx_model}}}\nspace: {{target_cycles: [128, 256]}}\n"
                                 "stages: {rtlsim: {images: 8}}\n")
    out = tmp_path / "out"
    r = sweep_mod.run_sweep(path, out, workers=2, progress=False, say=lambda m: None)
    for row in r["rows"]:
        assert row["status"] == "ok", row["error"]
        assert row["rtl_mismatches"] == 0 and row["images"] == 8
        assert row["cycles_per_frame_measured"] >= row["cycles_per_frame_ideal"]
    assert sorted(attempts(out)) == sorted(row["key"] for row in r["rows"])
    again = sweep_mod.run_sweep(path, out, workers=2, progress=False, say=lambda m: None)
    assert again["computed"] == 0 and again["reused"] == 2 and again["rows"] == r["rows"]
    assert len(attempts(out)) == 2


@needs_ray
def test_worker_killed_mid_candidate_is_retried(tmp_path, onnx_model, monkeypatch):
    """Every candidate's first attempt kills its own worker process (SIGKILL); Ray
    reruns it on a new worker and the sweep completes with every result."""
    markers = tmp_path / "killed"
    monkeypatch.setenv("BNNFORGE_SWEEP_KILL_ONCE", str(markers))
    path = write_sweep(tmp_path, f"model: {{onnx: {onnx_model}}}\nspace: {{target_cycles: [64, 128]}}\n")
    out = tmp_path / "out"
    r = sweep_mod.run_sweep(path, out, workers=2, progress=False, say=lambda m: None)
    keys = sorted(row["key"] for row in r["rows"])
    assert all(row["status"] == "ok" for row in r["rows"]), [row.get("error") for row in r["rows"]]
    assert sorted(p.name for p in markers.iterdir()) == keys  # each was killed once ...
    assert sorted(attempts(out)) == sorted(keys * 2)  # ... and ran again to the end
    pids = {}
    for line in (out / "attempts.log").read_text().splitlines():
        key, pid = line.split()[:2]
        pids.setdefault(key, []).append(pid)
    assert all(len(set(p)) == 2 for p in pids.values())  # the retry ran in another process
    again = sweep_mod.run_sweep(path, out, workers=2, progress=False, say=lambda m: None)
    assert again["computed"] == 0 and len(attempts(out)) == 4
