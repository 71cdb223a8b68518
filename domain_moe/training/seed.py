"""Seeding for reproducible runs."""

from __future__ import annotations

import os

import lightning as L
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int, deterministic: bool = True, workers: bool = True) -> int:
    """Seed Python, NumPy and torch (Lightning's ``seed_everything``) and optionally ask for determinism.

    With ``deterministic=True`` this also calls ``torch.use_deterministic_algorithms(True,
    warn_only=True)`` (ops without a deterministic kernel warn instead of failing), turns off the cuDNN
    autotuner and sets ``CUBLAS_WORKSPACE_CONFIG`` unless already set. These are process-wide settings;
    ``deterministic=False`` leaves them as they are.

    Args:
        seed: the seed.
        deterministic: request deterministic algorithms.
        workers: derive distinct, reproducible seeds for ``DataLoader`` workers.

    Returns:
        The seed used.

    Example:
        >>> seed_everything(0, deterministic=False)
        0
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed_everything: seed must be an int, got {type(seed).__name__}")
    seed = L.seed_everything(seed, workers=workers, verbose=False)
    if deterministic:
        # cuBLAS needs a fixed workspace for deterministic GEMMs; it is read when CUDA initialises.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return seed
