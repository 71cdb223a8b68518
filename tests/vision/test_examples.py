"""The ``Example:`` sections of the vision modules run as doctests."""

import doctest
import importlib
import pkgutil

import pytest

import domain_moe.vision

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(domain_moe.vision.__path__, prefix="domain_moe.vision.")
    if not info.name.endswith(("__main__", "benchmark", "cli"))
)


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
