"""One module per operator kind: every hardware op has its compiler module
(finn_flows/operators/), its Verilog stage (hw/stages/) and its golden computation
(sim/golden_ops/), found by scanning those packages; the generic steps name no op of
their own (an operator is added by its modules, its RTL file and its tests)."""
import ast
from pathlib import Path

import pytest

from bnnforge.finn_flows.operators import hw_operators
from bnnforge.finn_flows.operators import _BY_STREAMLINED, _discover
from bnnforge.hw.stages import stage_kinds
from bnnforge.resources import rtl_dir
from bnnforge.sim.golden_ops import golden_op

REPO = Path(__file__).resolve().parents[2]
GENERIC = ["hw/codegen.py", "finn_flows/steps/convert_to_hw.py", "finn_flows/steps/apply_folding.py",
           "finn_flows/steps/estimates.py", "sim/golden.py"]
# the operators the graph compiler added: they must appear in their own modules only
ADDED = ["StreamAdd", "Thresholding", "StreamFork"]


def test_every_hardware_op_has_its_three_modules():
    stages, ops = stage_kinds(), hw_operators()
    assert set(ADDED) <= set(stages)
    for op, kind in stages.items():
        assert op in ops, f"{op}: no compiler operator module"
        assert golden_op(op) is not None
        for f in kind.files:
            assert (rtl_dir() / f).is_file(), f"{op}: {f} missing"
    _discover()
    for op in _BY_STREAMLINED:
        golden_op(op)   # every streamlined op computes in the golden model too


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


@pytest.mark.parametrize("rel", GENERIC)
def test_generic_steps_name_no_added_operator(rel):
    named = _string_constants(REPO / rel) & set(ADDED)
    assert not named, f"{rel} names {sorted(named)}: that belongs in the operator's own modules"
