"""Generated top levels are lint-clean under `verilator --lint-only -Wall`."""
import json

import pytest

from bnnforge.sim.runner import lint
from tests.flows.helpers import HW_STEPS, export_and_build, random_model
from tests.flows.test_network_rtl import FOLD


@pytest.mark.parametrize("topology,act,folding", [
    ("digits_mlp", "unipolar", "digits_mlp.json"),
    ("tfc", "bipolar", "tfc_finn_examples.json"),
])
def test_generated_verilog_lint_clean(tmp_path, topology, act, folding):
    m = random_model(topology, act, seed=5)
    _, _, bdir = export_and_build(m, tmp_path, steps=HW_STEPS + ["codegen"], folding_config_file=str(FOLD / folding))
    rtl = bdir / "rtl"
    manifest = json.loads((rtl / "manifest.json").read_text())
    assert lint([rtl / f for f in manifest["files"]], manifest["top"]) == []


def test_accumulator_output_without_label_select_lint_clean(tmp_path):
    m = random_model("tfc", "unipolar", seed=6)
    _, _, bdir = export_and_build(m, tmp_path, steps=HW_STEPS + ["codegen"],
                                  folding_config_file=str(FOLD / "tfc_finn_examples.json"), label_select=False)
    rtl = bdir / "rtl"
    manifest = json.loads((rtl / "manifest.json").read_text())
    assert not manifest["label_select"]
    assert lint([rtl / f for f in manifest["files"]], manifest["top"]) == []
