import pytest

from domain_moe.core.experts.base import Experts


def test_base_is_abstract_and_validates():
    with pytest.raises(TypeError):
        Experts(2, 4, 4)

    class Tiny(Experts):
        def forward(self, x, plan, backend, capacity=None, **kwargs):
            return x

        def forward_expert(self, expert, x, **kwargs):
            return x

    assert Tiny(2, 4, 4).backend_reasons(None) == {}
    with pytest.raises(ValueError, match="d_out"):
        Tiny(2, 4, 0)
