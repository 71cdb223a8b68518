import pytest
import torch

from domain_moe.core.dispatch.backend import (
    BACKENDS,
    ENV_VAR,
    current_backend,
    resolve_backend,
    triton_available,
    use_backend,
)

ALL = ("torch_loop", "torch_grouped", "bmm", "dense_all")


def test_precedence_argument_context_environment_auto(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert current_backend(None) == "auto"
    monkeypatch.setenv(ENV_VAR, "bmm")
    assert current_backend(None) == "bmm"
    with use_backend("dense_all"):
        assert current_backend("auto") == "dense_all"
        assert current_backend("torch_loop") == "torch_loop"
        with use_backend("torch_loop"):
            assert current_backend(None) == "torch_loop"
        assert current_backend(None) == "dense_all"
    assert current_backend(None) == "bmm"


def test_unknown_names_raise(monkeypatch):
    with pytest.raises(ValueError, match="use_backend"):
        with use_backend("fast"):
            pass
    with pytest.raises(ValueError, match="backend"):
        current_backend("cuda")
    monkeypatch.setenv(ENV_VAR, "x")
    with pytest.raises(ValueError, match=ENV_VAR):
        current_backend(None)


def test_auto_prefers_declared_then_grouped_then_loop(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    x = torch.randn(2, 8)
    assert resolve_backend(None, x=x, supported=ALL) == "torch_grouped"
    assert resolve_backend(None, x=x, supported=ALL, preferred="bmm") == "bmm"
    assert resolve_backend(None, x=x, supported=ALL, reasons={"torch_grouped": "no"}) == "torch_loop"
    assert resolve_backend(None, x=x, supported=("dense_all",)) == "dense_all"


def test_explicit_request_never_falls_back(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="cannot run here: nope"):
        resolve_backend("torch_grouped", x=x, supported=ALL, reasons={"torch_grouped": "nope"})
    with pytest.raises(ValueError, match="not supported"):
        resolve_backend("bmm", x=x, supported=("torch_loop",))


def test_triton_unavailable_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "CUDA" in triton_available(torch.device("cpu"))
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="triton"):
        resolve_backend("triton", x=x, supported=(*ALL, "triton"))
    # auto never picks triton on CPU
    assert resolve_backend(None, x=x, supported=(*ALL, "triton")) == "torch_grouped"


def test_backends_listed():
    assert set(BACKENDS) == {"auto", "torch_loop", "torch_grouped", "bmm", "dense_all", "triton"}
