"""A sample of the mutation fuzzer (benchmarks/mutation_fuzz.py runs 1,000+): every
mutated model either builds or fails with one `bnnforge: error:` line, exit status 2,
no traceback and nothing half written."""
import random

import pytest

import bnnforge
from bnnforge.mutate import MUTATIONS, mutate, run_case
from tests.flows.helpers import random_model

STEPS = "tidy_up,streamline,convert_to_hw,apply_folding,estimates,codegen"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("base")
    return bnnforge.export(random_model("tfc", "unipolar", seed=1), d / "tfc.onnx").read_bytes()


@pytest.mark.parametrize("kind", MUTATIONS)
def test_mutants_fail_in_one_line(tmp_path, base, kind):
    seeds = [s for s in range(200) if MUTATIONS[s % len(MUTATIONS)] == kind][:3]
    for seed in seeds:
        o = run_case(base, kind, seed, tmp_path, STEPS, timeout_s=120)
        assert not o.problems, (kind, seed, o.problems, o.stderr)


def test_the_checks_can_fail(tmp_path, base, monkeypatch):
    """A step that prints a traceback and leaves files behind must be reported."""
    import traceback

    import bnnforge.mutate
    from bnnforge.finn_flows import builder

    def broken(model, cfg):
        traceback.print_stack()
        (tmp_path / "case7" / "junk").write_text("half written")
        raise RuntimeError("boom")

    monkeypatch.setattr(builder, "step_function", lambda name: broken)
    monkeypatch.setattr(bnnforge.mutate, "mutate", lambda model, kind, rng: model)  # a valid model
    o = run_case(base, "unknown_op", 7, tmp_path, STEPS)
    assert "internal error in step tidy_up" in o.stderr
    assert any(p.startswith("stderr is not one error line") for p in o.problems)
    assert any(p.startswith("left behind: ['junk']") for p in o.problems)


def test_mutations_change_the_model(base):
    for i, kind in enumerate(MUTATIONS):
        assert mutate(base, kind, random.Random(i)) != base, kind
