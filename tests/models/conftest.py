"""Make the repository root importable (``import models``) whatever way
pytest was started, and run torch single-threaded per worker."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def pytest_configure(config):
    # pytest-xdist runs one worker per core; torch's default of one thread
    # per core in every worker oversubscribes the CPU, and OpenMP spin-waits
    # then make tiny models 10-100x slower.  One thread per worker is fastest.
    try:
        import torch
    except ImportError:  # data tests do not need torch
        return
    torch.set_num_threads(1)
