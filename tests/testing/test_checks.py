import pytest

from domain_moe.core import MLPExperts, TopKRouter
from domain_moe.core.routing.base import count_assignments
from domain_moe.core.types import RoutingDecision
from domain_moe.testing import check_experts, check_router


def test_check_router_passes_a_correct_router():
    decision = check_router(TopKRouter(8, 4, top_k=2), weights_sum=1.0)
    assert decision.topk_idx.shape == (13, 2)


class _DuplicateRouter(TopKRouter):
    def forward(self, x):
        d = super().forward(x)
        idx = d.topk_idx.clone()
        idx[:, 1] = idx[:, 0]
        return RoutingDecision(
            idx, d.topk_w, count_assignments(idx, self.num_experts), self.num_experts, d.logits, d.probs
        )


class _WrongCounts(TopKRouter):
    def forward(self, x):
        d = super().forward(x)
        return RoutingDecision(d.topk_idx, d.topk_w, d.counts + 1, self.num_experts, d.logits, d.probs)


class _Nondeterministic(TopKRouter):
    calls = 0

    def forward(self, x):
        self.calls += 1  # state outside torch's RNG: not reproducible under a seed
        return super().forward(x * (-1) ** self.calls)


class _Detached(TopKRouter):
    def forward(self, x):
        d = super().forward(x)
        return RoutingDecision(d.topk_idx, d.topk_w.detach(), d.counts, self.num_experts)


@pytest.mark.parametrize(
    ("router", "match"),
    [
        (_DuplicateRouter(8, 4, top_k=2), "same expert"),
        (_WrongCounts(8, 4, top_k=2), "counts"),
        (_Detached(8, 4, top_k=2), "gradient"),
        (TopKRouter(8, 4, top_k=2, renorm=False), "sum to 1"),
    ],
)
def test_check_router_catches_broken_routers(router, match):
    with pytest.raises(AssertionError, match=match):
        check_router(router, weights_sum=1.0)


def test_check_router_catches_nondeterminism():
    with pytest.raises(AssertionError, match="same seed"):
        check_router(_Nondeterministic(8, 4, top_k=2))


class _BrokenExperts(MLPExperts):
    def forward(self, x, plan, backend, capacity=None, **kwargs):
        out = super().forward(x, plan, backend, capacity, **kwargs)
        return out * 1.5 if backend == "bmm" else out


def test_check_experts_catches_a_wrong_backend():
    check_experts(MLPExperts(3, 8, 16))
    with pytest.raises(AssertionError, match="bmm"):
        check_experts(_BrokenExperts(3, 8, 16))
