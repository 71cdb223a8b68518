"""Choosing the dispatch backend, once and visibly.

Order: the explicit ``backend=`` argument, then the innermost :func:`use_backend` context, then the
``DOMAIN_MOE_BACKEND`` environment variable, then ``"auto"``. An explicit request that cannot run
raises; it never silently falls back. The resolved choice is returned, never stored globally.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["BACKENDS", "ENV_VAR", "current_backend", "resolve_backend", "triton_available", "use_backend"]

BACKENDS = ("auto", "torch_loop", "torch_grouped", "bmm", "dense_all", "triton")
ENV_VAR = "DOMAIN_MOE_BACKEND"

# A ContextVar (not a module global) so threads and asyncio tasks each see their own setting.
_CONTEXT: contextvars.ContextVar[str | None] = contextvars.ContextVar("domain_moe_backend", default=None)


def _check_name(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {name!r}")
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the enclosed MoE layers on ``name`` unless a layer was built with an explicit backend.

    Args:
        name: one of :data:`BACKENDS`.

    Example:
        >>> from domain_moe.core.dispatch import use_backend
        >>> with use_backend("torch_loop"):
        ...     pass
    """
    token = _CONTEXT.set(_check_name(name, "use_backend(name)"))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_backend(requested: str | None = None) -> str:
    """The backend name in force before auto resolution (argument, context, environment, ``"auto"``).

    Args:
        requested: the layer's own ``backend`` argument; ``None`` or ``"auto"`` defers.
    """
    if requested is not None and requested != "auto":
        return _check_name(requested, "backend")
    ctx = _CONTEXT.get()
    if ctx is not None and ctx != "auto":
        return ctx
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_name(env, f"environment variable {ENV_VAR}")
    return "auto"


def triton_available(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on ``device``, or ``None`` when they can."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return f"the triton backend runs on CUDA (or under TRITON_INTERPRET=1); the input is on {device}"
    try:
        # A plain import statement (not importlib) so torch.compile can trace through this check.
        import domain_moe.core.dispatch.triton as module
    except ImportError as err:
        return f"the triton kernels cannot be imported ({err}); install them with: pip install 'domain-moe[triton]'"
    reason: str | None = getattr(module, "UNAVAILABLE_REASON", None)
    return reason


def resolve_backend(
    requested: str | None,
    *,
    x: Tensor,
    supported: Sequence[str],
    preferred: str | None = None,
    reasons: dict[str, str | None] | None = None,
) -> str:
    """Pick the backend for one call.

    Args:
        requested: the layer's ``backend`` argument (``None``/``"auto"`` defers to context and environment).
        x: the input, for its device and dtype.
        supported: backends the experts and router can run on.
        preferred: the backend the router or experts would choose under ``"auto"`` (``bmm`` for uniform
            groups, ``dense_all`` for experts that are not row-wise).
        reasons: per-backend reason it cannot run on this input (``None`` = it can); consulted both to
            reject explicit requests and to skip candidates under ``"auto"``.

    Returns:
        A concrete backend name (never ``"auto"``).

    Raises:
        ValueError: an explicit backend that is unknown, unsupported by these experts/router, or unable
            to run on this input.
    """
    reasons = dict(reasons or {})
    name = current_backend(requested)
    # Only look for the kernels when they could be used: the import is not traceable by torch.compile.
    wants_triton = name == "triton" or (name == "auto" and x.device.type == "cuda" and "triton" in supported)
    if wants_triton and "triton" not in reasons:
        reasons["triton"] = triton_available(x.device)
    if name != "auto":
        if name not in supported:
            raise ValueError(f"backend={name!r} is not supported by this layer; it supports {tuple(supported)}")
        why = reasons.get(name)
        if why is not None:
            raise ValueError(f"backend={name!r} cannot run here: {why}")
        return name
    order = ([preferred] if preferred else []) + ["triton", "torch_grouped", "torch_loop", "dense_all"]
    for candidate in order:
        if candidate == "triton" and (x.device.type != "cuda" or "triton" not in reasons):
            continue  # the interpreter is for tests, never chosen automatically
        if candidate in supported and reasons.get(candidate) is None:
            return candidate
    raise ValueError(f"no backend among {tuple(supported)} can run this input: {reasons}")
