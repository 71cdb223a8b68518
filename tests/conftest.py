"""Test configuration: interpreter mode for Triton, seeds, markers, data location."""

from __future__ import annotations

import os
import random
from pathlib import Path

# The Triton interpreter must be chosen before any kernel module is imported (decoration time).
try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a hard dependency
    _HAS_CUDA = False
if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same RNG state, so failures reproduce."""
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - code under test may use the legacy global RNG
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root of the shared datasets (``DOMAIN_MOE_DATA``, default ``../shared/data``)."""
    return Path(os.environ.get("DOMAIN_MOE_DATA", REPO_ROOT.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    """GPU tests are skipped (not only deselected) when no CUDA device is present, even with ``-m gpu``."""
    if _HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
