"""Optional dependencies: one check, one error message naming the pip extra."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["module_available", "require"]


def module_available(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(name: str, *, extra: str, feature: str | None = None) -> ModuleType:
    """Import an optional package or raise one clear error naming the extra that installs it.

    Args:
        name: importable module name (``"torch_geometric"``).
        extra: the ``domain-moe`` extra that provides it (``"graph"``).
        feature: what needs it, for the message (default: the calling subpackage's name).

    Returns:
        The imported module.

    Raises:
        ModuleNotFoundError: ``"<feature> needs '<name>'. Install it with: pip install 'domain-moe[<extra>]'"``.

    Example:
        >>> require("torch", extra="train").__name__
        'torch'
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        who = feature or "domain_moe"
        raise ModuleNotFoundError(
            f"{who} needs '{name}'. Install it with: pip install 'domain-moe[{extra}]'", name=name
        ) from err
