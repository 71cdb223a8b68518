"""The ``Example:`` sections of the torch-only packages run as doctests."""

import doctest
import importlib
import pkgutil

import pytest

import domain_moe

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(domain_moe.__path__, prefix="domain_moe.")
    if info.name.split(".")[1] in ("core", "testing", "utils") and "triton" not in info.name
)


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
