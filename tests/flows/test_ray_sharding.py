"""`--ray` for bulk RTL verification (`bnnforge sim`, `bnnforge.simulate`) and for the
fuzz benchmark: the work sharded over local Ray workers gives the same figures as
the serial run; without Ray, or with an unreachable address, one error line before
any work."""
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bnnforge import cluster
from bnnforge.cli import main
from bnnforge.errors import BnnforgeError
from bnnforge.simulate_dataset import simulate
from tests.deploy.conftest import _build
from tests.flows.helpers import copy_with_inverted_classifier

REPO = Path(__file__).resolve().parents[2]
needs_ray = pytest.mark.skipif(not cluster.ray_available(), reason="Ray not installed (bnnforge[cluster])")
TIMING = {"quantize_golden_seconds", "sim_seconds", "total_seconds", "ray_workers"}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The deployment tests' digits MLP build (same Verilator model in the cache) and
    the digits test split (360 images)."""
    from bnnforge.models.data import load_digits

    tmp = tmp_path_factory.mktemp("raysim")
    test = load_digits().test
    np.save(tmp / "x.npy", test.x)
    np.save(tmp / "y.npy", test.y)
    return {"build": _build(tmp), "x": tmp / "x.npy", "y": tmp / "y.npy", "tmp": tmp}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 worker CPUs for the module (the commands join it)."""
    if not cluster.ray_available():
        pytest.skip("Ray not installed (bnnforge[cluster])")
    with cluster.ray_session(workers=2) as ray:
        yield ray


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def not_ray():
    """HOST:PORT of a listener that accepts connections and closes them (something
    that is not a Ray head: ray.init would retry on it for minutes)."""
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    srv.close()


@pytest.mark.rtl
@needs_ray
def test_sim_on_ray_equals_serial(digits, local_ray, tmp_path, capsys):
    serial = simulate(digits["build"], digits["x"], digits["y"], chunk_size=60)
    out = tmp_path / "ray.json"
    assert main(["sim", str(digits["build"]), "--images", str(digits["x"]), "--labels", str(digits["y"]),
                 "--chunk", "60", "--ray", "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    sharded = json.loads(out.read_text())
    assert sharded["chunks"] == 6 and sharded["frames"] == 360 and sharded["frames_mismatching"] == 0
    assert 1 <= sharded["ray_workers"] <= 2 and "Ray worker process(es)" in text
    assert {k: v for k, v in sharded.items() if k not in TIMING} == \
        {k: v for k, v in serial.items() if k not in TIMING | {"predictions_rtl"}}
    api = simulate(digits["build"], np.load(digits["x"]), np.load(digits["y"]), chunk_size=60, ray=True)
    assert api["predictions_rtl"] == serial["predictions_rtl"]


@pytest.mark.rtl
@needs_ray
def test_sharded_sim_reports_the_same_mismatches(digits, local_ray, tmp_path):
    """The classifier's weights inverted in a copy of the build (memory images are read
    at run time and travel to the workers with the Verilog): the workers see the
    corrupted weights, and the mismatching frames are the serial run's."""
    bad = tmp_path / "bad"
    copy_with_inverted_classifier(digits["build"], bad)
    serial = simulate(bad, digits["x"], digits["y"], limit=120, chunk_size=30)
    sharded = simulate(bad, digits["x"], digits["y"], limit=120, chunk_size=30, ray=True)
    assert serial["frames_mismatching"] > 0
    assert {k: v for k, v in sharded.items() if k not in TIMING} == {k: v for k, v in serial.items() if k not in TIMING}


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnnforge: error: "), err
    return err[0]


def test_sim_without_ray_installed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cluster, "ray_available", lambda: False)
    out = tmp_path / "figures.json"
    assert main(["sim", str(tmp_path / "nope"), "--images", str(tmp_path / "x.npy"), "--ray",
                 "--json", str(out)]) == 2
    assert "--ray: needs Ray, which is not installed (pip install 'bnnforge[cluster]')" in _one_error(capsys)
    assert not out.exists()


@pytest.mark.rtl
@needs_ray
def test_sim_unreachable_address_before_any_work(digits, tmp_path, capsys):
    port = _unused_port()
    copy = tmp_path / "build"
    shutil.copytree(digits["build"], copy, ignore=shutil.ignore_patterns("rtlsim"))
    t0 = time.perf_counter()
    assert main(["sim", str(copy), "--images", str(digits["x"]), "--ray", "--address", f"127.0.0.1:{port}"]) == 2
    assert time.perf_counter() - t0 < 20
    assert f"--address 127.0.0.1:{port}: cannot reach a Ray cluster there" in _one_error(capsys)
    assert not (copy / "rtl" / "rtlsim").exists()   # nothing simulated
    assert main(["sim", str(copy), "--images", str(digits["x"]), "--workers", "2"]) == 2
    assert "--workers: only with --ray" in _one_error(capsys)


@needs_ray
def test_address_check_tells_a_ray_head_from_anything_else(local_ray, not_ray):
    cluster.check_address(local_ray.get_runtime_context().gcs_address)   # a Ray head: accepted
    t0 = time.perf_counter()
    with pytest.raises(BnnforgeError, match=f"--address {not_ray}: no Ray cluster answers there"):
        cluster.check_address(not_ray)
    with pytest.raises(BnnforgeError, match="expected HOST:PORT"):
        cluster.check_address("http://127.0.0.1:80")
    assert time.perf_counter() - t0 < 15


@needs_ray
def test_address_check_with_token_authentication(local_ray, monkeypatch, tmp_path):
    """A head with token authentication (Ray's default for a new cluster): refused
    with a wrong token or without one, in one line each; accepted with this machine's."""
    import os

    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        pytest.skip("this Ray runs without token authentication (RAY_AUTH_MODE)")
    gcs = local_ray.get_runtime_context().gcs_address
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 32)
    with pytest.raises(BnnforgeError, match="refused this machine's authentication token"):
        cluster.check_address(gcs)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no_token"))
    with pytest.raises(BnnforgeError, match="requires its authentication token"):
        cluster.check_address(gcs)


@pytest.mark.rtl
@needs_ray
def test_sim_joins_a_running_cluster_by_address(digits, local_ray, tmp_path):
    """`bnnforge sim --address` in another process joins the running Ray (the GCS
    address `ray start --head` would print) and gives the serial figures."""
    serial = simulate(digits["build"], digits["x"], digits["y"], chunk_size=90)
    out = tmp_path / "cluster.json"
    gcs = local_ray.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, "-m", "bnnforge", "sim", str(digits["build"]), "--images", str(digits["x"]),
                           "--labels", str(digits["y"]), "--chunk", "90", "--address", gcs, "--json", str(out),
                           "--quiet"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    joined = json.loads(out.read_text())
    assert joined["ray_workers"] >= 1 and joined["chunks"] == 4
    assert {k: v for k, v in joined.items() if k not in TIMING} == \
        {k: v for k, v in serial.items() if k not in TIMING | {"predictions_rtl"}}


@pytest.mark.rtl
@needs_ray
def test_sim_refuses_a_listener_that_is_not_ray(digits, not_ray, tmp_path, capsys):
    copy = tmp_path / "build"
    shutil.copytree(digits["build"], copy, ignore=shutil.ignore_patterns("rtlsim"))
    t0 = time.perf_counter()
    assert main(["sim", str(copy), "--images", str(digits["x"]), "--address", not_ray]) == 2
    assert time.perf_counter() - t0 < 20
    assert f"--address {not_ray}: no Ray cluster answers there" in _one_error(capsys)
    assert not (copy / "rtl" / "rtlsim").exists()


def _fuzz(out: Path, *extra) -> tuple[list[dict], str]:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fuzz.py"), "--graph", "--count", "2",
                           "--seed", "7", "--no-rtl", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    for r in rows:   # wall times differ from run to run
        r.pop("seconds")
        r.pop("build_seconds", None)
    table = proc.stdout[proc.stdout.index("per operator kind"):]
    return rows, table


@pytest.mark.slow     # about 35 s of one worker: CI keeps the sim comparison above
@needs_ray
def test_fuzz_on_ray_equals_serial(tmp_path):
    serial, serial_table = _fuzz(tmp_path / "serial", "--jobs", "1")
    sharded, sharded_table = _fuzz(tmp_path / "ray", "--ray", "--jobs", "2")
    assert [r["seed"] for r in sharded] == [7, 8] and all(r["ok"] for r in sharded)
    assert sharded == serial and sharded_table == serial_table


def test_fuzz_ray_refuses_an_unreachable_address(tmp_path):
    port = _unused_port()
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fuzz.py"), "--graph", "--count", "1",
                           "--no-rtl", "--ray", "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "f")],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    err = [l for l in proc.stderr.splitlines() if "Warning" not in l and "warnings.warn" not in l]
    assert proc.returncode == 2, proc.stderr[-2000:]
    expected = (f"--address 127.0.0.1:{port}: cannot reach" if cluster.ray_available()
                else "--ray: needs Ray, which is not installed")
    assert len(err) == 1 and err[0].startswith("bnnforge: error: ") and expected in err[0], err
    assert not (tmp_path / "f" / "results.jsonl").exists()
