"""The ``Example:`` sections of the distillation modules run as doctests."""

import doctest
import importlib
import pkgutil

import pytest

import domain_moe.distill

MODULES = sorted(info.name for info in pkgutil.walk_packages(domain_moe.distill.__path__, prefix="domain_moe.distill."))


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
