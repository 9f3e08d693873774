"""Make the repository root importable (``import models``) whatever way
pytest was started, and keep torch to the 2 cores the CI machine has."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
