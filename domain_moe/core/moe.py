"""The MoE layer: a router, experts, optional shared experts, and a backend."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from domain_moe.core import losses
from domain_moe.core.dispatch.backend import BACKENDS, resolve_backend
from domain_moe.core.dispatch.reference import build_plan, combine
from domain_moe.core.experts.base import Experts
from domain_moe.core.experts.glu import GLUExperts
from domain_moe.core.experts.mlp import MLPExperts
from domain_moe.core.experts.shared import SharedExperts
from domain_moe.core.routing.base import Router
from domain_moe.core.routing.top_k import TopKRouter
from domain_moe.core.types import MoEAux, RoutingDecision

__all__ = ["MoE", "collect_aux", "deepseek_moe"]


class MoE(nn.Module):
    """Mixture-of-Experts layer ``y = shared(x) + sum_k w_k(x) * expert_{e_k(x)}(x)``.

    A drop-in replacement for an FFN: ``forward(x)`` returns ``y`` with the leading shape of ``x``. The
    auxiliary losses and routing statistics of the last call are kept on the layer as ``last_aux``
    (:class:`MoEAux`); :func:`collect_aux` sums them over a model. Nothing is stored globally.

    Args:
        router: a :class:`Router` with ``num_experts == experts.num_experts``.
        experts: an :class:`Experts` container.
        shared: optional always-on experts (any module ``[T, D] -> [T, D_out]``) whose output starts
            the combine.
        backend: ``"auto"`` or one of :data:`~domain_moe.core.dispatch.BACKENDS`; an explicit backend that
            cannot run raises at call time instead of falling back.

    Shapes:
        - x: ``[..., D]`` (for Soft MoE ``[B, L, D]`` or ``[L, D]``)
        - output: ``[..., D_out]``

    Example:
        >>> import torch
        >>> from domain_moe.core import MLPExperts, TopKRouter
        >>> layer = MoE(TopKRouter(16, num_experts=4, top_k=2), MLPExperts(4, 16, 32))
        >>> y = layer(torch.randn(2, 5, 16))
        >>> y.shape, sorted(layer.last_aux.losses)
        (torch.Size([2, 5, 16]), ['balance', 'z'])
    """

    last_aux: MoEAux | None

    def __init__(
        self,
        router: Router,
        experts: Experts,
        shared: nn.Module | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(router, Router):
            raise TypeError(f"router must be a domain_moe Router, got {type(router).__name__}")
        if not isinstance(experts, Experts):
            raise TypeError(f"experts must be a domain_moe Experts container, got {type(experts).__name__}")
        if router.num_experts != experts.num_experts:
            raise ValueError(
                f"router routes to num_experts={router.num_experts} but experts holds {experts.num_experts}"
            )
        if router.d_model != experts.d_model:
            raise ValueError(f"router d_model={router.d_model} does not match experts d_model={experts.d_model}")
        for name in ("d_model", "d_out"):
            want = experts.d_model if name == "d_model" else experts.d_out
            got = getattr(shared, name, want)
            if shared is not None and got != want:
                raise ValueError(f"shared experts have {name}={got} but the routed experts have {want}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.router = router
        self.experts = experts
        self.shared = shared
        self.backend = backend
        self.d_model = experts.d_model
        self.d_out = experts.d_out
        self.last_aux = None

    def __getstate__(self) -> dict[str, Any]:
        # The last call's losses are graph tensors: copies and pickles of the layer start without them
        # (deepcopy of non-leaf tensors fails, e.g. when building an EMA copy of a model).
        state = self.__dict__.copy()
        state["last_aux"] = None
        return state

    def reset_parameters(self) -> None:
        """Re-initialise the router, the experts and the shared experts."""
        for part in (self.router, self.experts, self.shared):
            reset = getattr(part, "reset_parameters", None)
            if callable(reset):
                reset()

    @property
    def num_experts(self) -> int:
        """Routed experts ``E``."""
        return self.experts.num_experts

    def resolve_backend(self, x: Tensor) -> str:
        """The backend a call on ``x`` would use (explicit argument, context, environment, auto)."""
        supported = self.experts.supported_backends
        preferred = self.experts.preferred_backend or self.router.preferred_backend
        if preferred is not None and preferred not in supported:
            preferred = None
        return resolve_backend(
            self.backend, x=x, supported=supported, preferred=preferred, reasons=self.experts.backend_reasons(x)
        )

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"MoE: x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"MoE: x must be floating point, got dtype {x.dtype}")
        if x.dim() < 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"MoE: x must have shape [..., d_model={self.d_model}], got {tuple(x.shape)}")
        if x.numel() == 0:
            raise ValueError(f"MoE: x has no tokens (shape {tuple(x.shape)})")

    def forward(self, x: Tensor, **expert_kwargs: Any) -> Tensor:
        """Route, dispatch, compute and combine; see the class docstring.

        Args:
            x: tokens, any leading shape.
            **expert_kwargs: passed to every expert (e.g. ``edge_index`` for graph experts).
        """
        self._check_input(x)
        lead = x.shape[:-1]
        tokens = x.reshape(-1, self.d_model)
        backend = self.resolve_backend(tokens)
        if self.router.needs_sequences:
            seqs = x if x.dim() == 3 else x.reshape(1, -1, self.d_model)
            decision = self.router(seqs)
            y = self._soft_forward(seqs, decision, backend, **expert_kwargs).reshape(-1, self.d_out)
        else:
            decision = self.router(tokens)
            weight = decision.topk_w.to(tokens.dtype)
            plan = build_plan(decision.topk_idx, weight.detach(), self.num_experts)
            rows = self.experts(tokens, plan, backend, capacity=decision.capacity, **expert_kwargs)
            y = combine(rows, weight, plan)
        if self.shared is not None:
            y = y + self.shared(tokens)
        self.last_aux = self._aux(decision)
        return y.reshape(*lead, self.d_out)

    def _soft_forward(self, seqs: Tensor, decision: RoutingDecision, backend: str, **kwargs: Any) -> Tensor:
        """Soft MoE: slots are convex mixes of a sequence's tokens, outputs are convex mixes of slots."""
        assert decision.dispatch_weights is not None and decision.combine_weights is not None
        batch = seqs.shape[0]
        num_slots = decision.dispatch_weights.shape[-1]
        slots_per_expert = num_slots // self.num_experts
        dispatch = decision.dispatch_weights.to(seqs.dtype)
        slot_x = torch.einsum("bls,bld->bsd", dispatch, seqs).reshape(-1, self.d_model)
        # Slot rows are laid out [B, E, S]; each is one "token" routed to its own expert with weight 1.
        slot_expert = torch.arange(num_slots, device=seqs.device) // slots_per_expert
        idx = slot_expert.repeat(batch).unsqueeze(1)
        ones = torch.ones(idx.shape, dtype=seqs.dtype, device=seqs.device)
        plan = build_plan(idx, ones, self.num_experts)
        rows = self.experts(slot_x, plan, backend, capacity=batch * slots_per_expert, **kwargs)
        slot_y = combine(rows, ones, plan).view(batch, num_slots, self.d_out)
        return torch.einsum("bls,bsd->bld", decision.combine_weights.to(seqs.dtype), slot_y)

    def _aux(self, decision: RoutingDecision) -> MoEAux:
        with torch.no_grad():
            idx = decision.topk_idx
            selected = decision.extras.get("selected_counts")
            if selected is not None:
                dropped = 1.0 - decision.counts.sum().float() / selected.sum().float().clamp_min(1.0)
            else:
                dropped = decision.counts.new_zeros((), dtype=torch.float32)
            mean_k = (idx >= 0).sum(-1).float().mean() if idx.numel() else dropped.new_zeros(())
            probs = decision.probs
            ent = None
            if probs is not None:
                # Sigmoid scores and AdaMoE's E + m outputs are not distributions over E: normalise first.
                ent = losses.entropy(probs / probs.sum(-1, keepdim=True).clamp_min(1e-12))
        return MoEAux(
            losses=self.router.aux_losses(decision),
            counts=decision.counts.detach(),
            num_tokens=decision.num_tokens,
            dropped_fraction=dropped,
            mean_k=mean_k,
            router_entropy=ent,
        )

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"backend={self.backend!r}"


def collect_aux(model: nn.Module) -> Tensor:
    """Sum the auxiliary losses of every MoE layer's last call in ``model``.

    Layers that have not run yet contribute nothing. The result is a 0-d fp32 tensor on the device of
    the first loss found (CPU zero when there is none).

    Example:
        >>> import torch
        >>> from domain_moe.core import MLPExperts, TopKRouter
        >>> model = torch.nn.Sequential(MoE(TopKRouter(8, 2, top_k=1), MLPExperts(2, 8, 16)))
        >>> _ = model(torch.randn(4, 8))
        >>> collect_aux(model).dim()
        0
    """
    terms = [
        m.last_aux.total for m in model.modules() if isinstance(m, MoE) and m.last_aux is not None and m.last_aux.losses
    ]
    if not terms:
        param = next(model.parameters(), None)
        return torch.zeros((), device=None if param is None else param.device)
    return torch.stack([t.float() for t in terms]).sum()


def deepseek_moe(
    d_model: int,
    d_hidden: int,
    num_experts: int,
    top_k: int,
    num_shared: int = 1,
    *,
    score_fn: str = "sigmoid",
    route_scale: float = 1.0,
    bias_balancing: bool = True,
    num_groups: int | None = None,
    topk_groups: int | None = None,
    balance_coef: float = 0.0,
    gated: bool = True,
    backend: str = "auto",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> MoE:
    """The DeepSeekMoE pattern: many fine-grained routed experts plus always-on shared experts.

    DeepSeek-V3 defaults: sigmoid scores normalised over the selected experts, auxiliary-loss-free
    bias balancing (update it with ``ExpertBiasCallback``) and no balance loss. Experts are GLUs of width
    ``d_hidden`` (fine-grained: typically the dense FFN width divided by the split factor ``m``).

    Args:
        d_model: token width ``D``.
        d_hidden: hidden width ``H`` of each routed and each shared expert.
        num_experts: routed experts ``E`` (``m`` times the coarse count).
        top_k: routed experts per token (``m`` times the coarse top-k).
        num_shared: shared experts ``K_s``.
        score_fn: ``"sigmoid"`` (V3) or ``"softmax"`` (V1/V2).
        route_scale: factor on the routed weights.
        bias_balancing: auxiliary-loss-free balancing.
        num_groups: group-limited routing groups (``None`` = off).
        topk_groups: groups a token may use.
        balance_coef: Switch balance-loss weight (V1/V2 use a small one; V3 uses 0).
        gated: GLU experts (``True``) or plain MLP experts.
        backend: dispatch backend.
        device: parameter device.
        dtype: parameter dtype.

    Example:
        >>> layer = deepseek_moe(d_model=16, d_hidden=8, num_experts=8, top_k=2, num_shared=1)
        >>> layer(torch.randn(3, 16)).shape
        torch.Size([3, 16])
    """
    dd: dict[str, Any] = {"device": device, "dtype": dtype}
    router = TopKRouter(
        d_model,
        num_experts,
        top_k,
        score_fn=score_fn,
        renorm=True,
        route_scale=route_scale,
        bias_balancing=bias_balancing,
        num_groups=num_groups,
        topk_groups=topk_groups,
        balance_coef=balance_coef,
        z_coef=0.0,
        device=device,
    )
    expert_cls = GLUExperts if gated else MLPExperts
    act = "silu" if gated else "gelu"
    experts = expert_cls(num_experts, d_model, d_hidden, activation=act, bias=False, **dd)
    shared = SharedExperts(d_model, d_hidden, num_shared, activation=act, gated=gated, bias=False, **dd)
    return MoE(router, experts, shared=shared, backend=backend)
