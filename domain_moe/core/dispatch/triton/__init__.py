"""Triton kernels of the ``triton`` dispatch backend: the only package of ``domain_moe`` that imports triton.

Importing this package never raises: when triton is missing (or too old), :data:`AVAILABLE` is ``False`` and
:data:`UNAVAILABLE_REASON` says why, which is what :func:`domain_moe.core.dispatch.triton_available` reports.
The kernels themselves live in submodules that are imported on first use, because ``@triton.jit`` reads
``TRITON_INTERPRET`` when a kernel is *decorated*: importing them eagerly here could bind them to the wrong
mode before a test harness has chosen the interpreter.

* ``kernels``: the ``@triton.jit`` bodies (``_<op>_kernel``).
* ``launch``: validation, allocation, grids and configs; launchers ``<op>_fwd`` / ``<op>_bwd`` and their
  ``torch.library.custom_op`` wrappers ``domain_moe::<op>``.
* ``autograd``: the expert MLP (and MLP + combine) as differentiable functions built from the launchers.
* ``reference_router``: the torch reference of the fused router kernel.
"""

from __future__ import annotations

__all__ = ["AVAILABLE", "MIN_TRITON", "UNAVAILABLE_REASON"]

#: Oldest triton release the kernels are tested with (the GPU image ships 3.6).
MIN_TRITON = (3, 0)


def _probe() -> str | None:
    try:
        import triton
        import triton.language
    except ImportError as err:
        return f"triton is not importable ({err}); install it with: pip install 'domain-moe[triton]'"
    parts = []
    for piece in triton.__version__.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    if tuple(parts) < MIN_TRITON:
        want = ".".join(map(str, MIN_TRITON))
        return f"triton>={want} is needed for the kernels, got {triton.__version__}"
    return None


#: Why the kernels cannot be used (``None`` = usable).
UNAVAILABLE_REASON: str | None = _probe()
#: Whether triton is importable and recent enough.
AVAILABLE: bool = UNAVAILABLE_REASON is None
