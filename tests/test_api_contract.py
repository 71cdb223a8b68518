"""Every public module documents its constructor (``Args:``), its shapes (``Shapes:``) and an ``Example:``."""

import importlib
import inspect
import pkgutil

import pytest
from torch import nn

import domain_moe
from domain_moe.utils.imports import module_available

OPTIONAL = {
    "training": "lightning",
    "graph": "torch_geometric",
    "timeseries": "statsmodels",
    "recsys": "lightning",
    "rl": "gymnasium",
    "vision": "timm",
    "distill": "lightning",
}


def _public_modules():
    found = {}
    for info in pkgutil.walk_packages(domain_moe.__path__, prefix="domain_moe."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]) or "triton" in parts:
            continue
        needs = OPTIONAL.get(parts[1])
        if needs and not module_available(needs):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    return sorted(found.items())


PUBLIC = _public_modules()


def test_public_modules_found():
    names = {n.rsplit(".", 1)[-1] for n, _ in PUBLIC}
    assert {"MoE", "TopKRouter", "MLPExperts", "GLUExperts", "ModuleListExperts", "SharedExperts"} <= names


@pytest.mark.parametrize(("name", "cls"), PUBLIC, ids=[n for n, _ in PUBLIC])
def test_docstring_contract(name, cls):
    doc = inspect.getdoc(cls) or ""
    params = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if params:
        assert "Args:" in doc, f"{name} documents no Args"
        args_section = doc.split("Args:", 1)[1]
        missing = [p.name for p in params if f"{p.name}:" not in args_section]
        assert not missing, f"{name} does not document {missing}"
    is_abstract = inspect.isabstract(cls)
    if not is_abstract:
        assert "Example:" in doc or "Example::" in doc, f"{name} has no Example"
    if not cls.__name__.endswith("Task"):  # Lightning tasks wrap models; the models carry the shapes
        assert "Shapes:" in doc, f"{name} has no Shapes section"
