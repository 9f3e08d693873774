"""One small digits-MLP build per session, shared by the deployment tests."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLD = REPO / "configs" / "folding"
STEPS = ["tidy_up", "streamline", "convert_to_hw", "apply_folding", "estimates", "codegen"]


def _build(tmp: Path, topology="digits_mlp", act="unipolar", folding="digits_mlp.json", seed=31, **cfg):
    from tests.flows.helpers import export_and_build, random_model

    model = random_model(topology, act, seed=seed)
    _, _, bdir = export_and_build(model, tmp, steps=STEPS, folding_config_file=str(FOLD / folding),
                                  name=topology, **cfg)
    return bdir


@pytest.fixture(scope="session")
def digits_build(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def digits_project(digits_build):
    from bnnforge.hw.vivado.project import write_project
    return write_project(digits_build, board="pynq-z2")


@pytest.fixture(scope="session")
def digits_acc_build(tmp_path_factory):
    """Without label select: the driver unpacks signed accumulators."""
    return _build(tmp_path_factory.mktemp("digits_acc"), seed=32, label_select=False)
