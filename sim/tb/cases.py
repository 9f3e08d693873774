"""Helpers for the pytest drivers: scenario dicts and running a stream case."""

from __future__ import annotations

import json
from pathlib import Path

from bnnforge.sim.runner import run_test


def scenario(name, in_beats, expected, p_gap=0.0, p_stall=0.0, seed=0) -> dict:
    return {"name": name, "in_beats": [int(b) for b in in_beats],
            "expected": [int(b) for b in expected],
            "p_gap": p_gap, "p_stall": p_stall, "seed": seed}


def run_case(sources, top, test_module, params, workdir: Path, case: dict):
    path = Path(workdir) / "case.json"
    path.write_text(json.dumps(case))
    res = run_test(sources, top, test_module, parameters=params, workdir=workdir,
                   extra_env={"TB_CASE": str(path)})
    # guard against a test module that silently collected nothing
    assert len(res.tests) >= 2 and not res.failed
    return res
