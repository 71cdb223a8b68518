"""The ``Example:`` sections of ``domain_moe.timeseries`` run as doctests."""

import doctest
import importlib
import pkgutil

import pytest

import domain_moe.timeseries

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(domain_moe.timeseries.__path__, prefix="domain_moe.timeseries.")
    if not info.name.endswith(("__main__", "benchmark"))
)


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
