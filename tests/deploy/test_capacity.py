"""Capacity check before Vivado: the verdict logic, and (slow) a real Yosys estimate."""
import json

import pytest

from bnnforge.errors import BnnforgeError
from bnnforge.hw.vivado.capacity import ALLOWANCE, estimate, format_report, require_fit


def _report(lut, bram18=10):
    caps = {"lut": 53200, "ff": 106400, "bram18": 280, "dsp": 220}
    accel = {"lut": lut, "ff": 1000, "bram18": bram18, "dsp": 0}
    total = {k: accel[k] + ALLOWANCE[k] for k in accel}
    pct = {k: round(100.0 * total[k] / caps[k], 1) for k in total}
    over = [k for k in total if total[k] > caps[k]]
    return {"part": "xc7z020clg400-1", "accelerator_yosys": accel, "allowance_dma_interconnect": dict(ALLOWANCE),
            "total": total, "capacity": caps, "percent": pct, "fits": not over, "over": over,
            "warn": [k for k in total if k not in over and pct[k] > 80]}


def test_does_not_fit_names_numbers(tmp_path):
    r = _report(lut=50000)
    with pytest.raises(BnnforgeError, match=r"does not fit xc7z020clg400-1: LUT 55,000 of 53,200 \(103%"):
        require_fit(r, tmp_path)
    assert "DOES NOT FIT (lut)" in format_report(r)


def test_warns_above_80_percent_and_passes_small():
    assert require_fit(_report(lut=40000), ".") == ["warning: LUT 45,000 of 53,200 (85%) on xc7z020clg400-1: "
                                                     "Vivado may not close timing"]
    assert require_fit(_report(lut=10000), ".") == []
    with pytest.raises(BnnforgeError, match="BRAM18 290 of 280"):
        require_fit(_report(lut=100, bram18=284), ".")


@pytest.mark.slow
def test_yosys_estimate_of_wrapper_and_accelerator(digits_project):
    r = estimate(digits_project)
    assert r["fits"] and r["accelerator_yosys"]["lut"] > 1000
    assert json.loads((digits_project / "capacity.json").read_text())["total"]["lut"] == \
        r["accelerator_yosys"]["lut"] + ALLOWANCE["lut"]
