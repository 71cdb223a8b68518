import pytest

from domain_moe.utils.imports import module_available, require


def test_module_available():
    assert module_available("torch")
    assert not module_available("definitely_not_a_module_xyz")


def test_require_names_the_extra():
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'domain-moe\[graph\]'") as info:
        require("definitely_not_a_module_xyz", extra="graph", feature="domain_moe.graph")
    assert "domain_moe.graph needs 'definitely_not_a_module_xyz'" in str(info.value)
    assert require("torch", extra="train").__name__ == "torch"
