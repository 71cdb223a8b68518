"""Skip decorators for tests that need a GPU, Triton or an optional package."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

from domain_moe.utils.imports import module_available

__all__ = ["only_cuda", "requires", "requires_triton"]

F = TypeVar("F", bound=Callable[..., Any])


def _skipif(condition: bool, reason: str) -> Callable[[F], F]:
    import pytest

    return pytest.mark.skipif(condition, reason=reason)  # type: ignore[no-any-return]


def only_cuda(fn: F) -> F:
    """Skip unless a CUDA device is present (combine with ``@pytest.mark.gpu``)."""
    return _skipif(not torch.cuda.is_available(), "needs a CUDA device")(fn)


def requires_triton(fn: F) -> F:
    """Skip unless the ``triton`` package is importable."""
    return _skipif(not module_available("triton"), "needs the triton package")(fn)


def requires(*packages: str) -> Callable[[F], F]:
    """Skip unless every named package is importable."""
    missing = [p for p in packages if not module_available(p)]
    return _skipif(bool(missing), f"needs {', '.join(missing)}")
