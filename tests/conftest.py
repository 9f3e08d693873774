import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# for the shared test helpers (``tests.flows.helpers``); the code itself is imported
# as the installed ``bnnforge`` package, never from the source folders
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MNIST_T10K = REPO.parent / "shared" / "datasets" / "mnist-t10k"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests (large networks)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("BNNFORGE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or BNNFORGE_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
