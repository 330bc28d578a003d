import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))


def data_path(name):
    """A real data file at the repository root, placed there by setup.sh."""
    path = os.path.join(ROOT, name)
    if not os.path.exists(path):
        pytest.fail(f"{name} is missing: run `bash setup.sh` first")
    return path
