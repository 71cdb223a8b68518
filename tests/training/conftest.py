"""Shared fixtures of the Lightning glue tests (skipped without the ``train`` extra)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("sklearn")


@pytest.fixture(autouse=True)
def _global_torch_flags():
    """One intra-op thread, and undo the process-wide flags that ``deterministic=True`` sets.

    The test models are tiny: with several threads every op pays OpenMP synchronisation, which on a
    busy 2-core machine costs more than the op itself.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark


@pytest.fixture
def quiet_trainer_kwargs(tmp_path):
    """Trainer arguments for fast CPU tests that write only into ``tmp_path``."""
    return {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(tmp_path),
    }
