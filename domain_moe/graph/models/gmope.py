"""GMoPE-style prompt-expert mixture (reconstructed): per-expert feature prompts, structure-aware routing.

Wang, Zhang, Wang, Xie, Kang, "GMoPE: A Prompt-Expert Mixture Framework for Graph Foundation Models" (arXiv
2511.03251, 2025). No code and no tables of the paper are public; what is known is its abstract: ``E`` expert GNNs,
each with its own prompt vector added to the (SVD-aligned) node features, ``X^(e) = X + 1 p_eᵀ``; a
structure-aware router mixing the experts' outputs; a soft orthogonality constraint across the prompts; all
trained jointly in pre-training, then prompt-only fine-tuning with the experts fixed. The router input (a
parameter-free propagation summary ``[X, ÂX, ..., Â^h X, log(1 + deg)]``), the orthogonality form
``‖P̂P̂ᵀ - I‖²_F / E²`` and the optional importance/load balance term are our reconstruction
(``specs/graph.md`` §2).

The mixture is a core :class:`~domain_moe.core.MoE` whose tokens are the structural summaries: the router (any core
router: dense softmax, top-k or random) reads the whole summary, and each expert reads the summary's first ``F``
columns (the node's own features) plus its prompt, with ``edge_index`` passed as an expert keyword. GNN experts
are not row-wise, so the ``dense_all`` backend runs each expert on every node and the routed rows are combined.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import degree, scatter

from domain_moe.core import losses
from domain_moe.core.experts.module_list import ModuleListExperts
from domain_moe.core.moe import MoE
from domain_moe.core.routing.base import Router
from domain_moe.core.routing.dense import DenseRouter
from domain_moe.core.routing.random import RandomRouter
from domain_moe.core.routing.top_k import TopKRouter
from domain_moe.core.types import MoEAux, RoutingDecision
from domain_moe.graph.models.gnn import GNN, ConvName
from domain_moe.graph.models.prompt import FeaturePrompt

__all__ = ["GMoPE", "PromptExpertMoE", "structure_summary"]

RouterName = Literal["dense", "top_k", "random"]
TuneMode = Literal["prompt", "prompt_head", "full", "head"]


def structure_summary(x: Tensor, edge_index: Tensor, hops: int = 2) -> Tensor:
    """Parameter-free structural summary of every node: ``[X, ÂX, ..., Â^h X, log(1 + deg)]``.

    ``Â = D^{-1/2}(A + I)D^{-1/2}`` is GCN's normalised adjacency; the propagated features say what a node's
    neighbourhood looks like and the log-degree how large it is, which is what a structure-aware router
    needs (SGC-style features; our reconstruction of GMoPE's router input).

    Args:
        x: node features.
        edge_index: edges (source row 0, target row 1).
        hops: propagation steps ``h`` (0 gives ``[X, log(1 + deg)]``).

    Returns:
        The summary.

    Shapes:
        x: ``[N, F]``, edge_index: ``[2, N_e]`` → ``[N, (h + 1)·F + 1]``.

    Example:
        >>> structure_summary(torch.ones(3, 2), torch.tensor([[0, 1], [1, 2]]), hops=1).shape
        torch.Size([3, 5])
    """
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise ValueError(f"structure_summary: hops must be an int >= 0, got {hops!r}")
    num_nodes = x.size(0)
    ei, w = gcn_norm(edge_index, None, num_nodes, add_self_loops=True, dtype=x.dtype)
    parts = [x]
    h = x
    for _ in range(hops):
        h = scatter(h[ei[0]] * w.unsqueeze(-1), ei[1], dim=0, dim_size=num_nodes, reduce="sum")
        parts.append(h)
    deg = degree(edge_index[1], num_nodes, dtype=x.dtype)
    parts.append(torch.log1p(deg).unsqueeze(-1))
    return torch.cat(parts, dim=-1)


class _PromptedExpert(nn.Module):
    """Expert ``e`` of the mixture: ``gnn(X + p_e, edge_index)`` on the summary's feature columns."""

    def __init__(self, gnn: nn.Module, index: int, in_channels: int) -> None:
        super().__init__()
        self.gnn = gnn
        self.index = index
        self.in_channels = in_channels

    def forward(self, tokens: Tensor, *, edge_index: Tensor, prompts: Tensor) -> Tensor:
        return self.gnn(tokens[:, : self.in_channels] + prompts[self.index], edge_index)

    def reset_parameters(self) -> None:
        reset = getattr(self.gnn, "reset_parameters", None)
        if callable(reset):
            reset()


def _make_router(router: RouterName | Router, d_model: int, num_experts: int, top_k: int, temperature: float) -> Router:
    if isinstance(router, Router):
        if router.d_model != d_model or router.num_experts != num_experts:
            raise ValueError(
                f"PromptExpertMoE: router must have d_model={d_model} (the structure summary width) and "
                f"num_experts={num_experts}, got d_model={router.d_model}, num_experts={router.num_experts}"
            )
        return router
    if router == "dense":
        return DenseRouter(d_model, num_experts, temperature=temperature)
    if router == "top_k":
        # Balance comes from the mixture's own importance/load term, so the router's Switch and z losses are off.
        return TopKRouter(d_model, num_experts, top_k=top_k, balance_coef=0.0, z_coef=0.0)
    if router == "random":
        return RandomRouter(d_model, num_experts, level="token", eval_level="token")
    raise ValueError(f"PromptExpertMoE: router must be 'dense', 'top_k', 'random' or a core Router, got {router!r}")


class PromptExpertMoE(MoE):
    """GMoPE's mixture layer: ``H = Σ_e g_e(s) · f_e(X + 1 p_eᵀ, A)`` with a router on a structural summary ``s``.

    A core :class:`~domain_moe.core.MoE` (``dense_all`` backend) over :class:`ModuleListExperts` whose tokens are
    :func:`structure_summary` rows. Owns the prompt bank (:class:`FeaturePrompt`, ``[E, F]``). Besides the
    router's own losses, ``last_aux.losses`` holds ``"orth"`` = ``orth_weight · orthogonality(P)`` (core
    :func:`~domain_moe.core.losses.orthogonality`, row-normalised; skipped for one expert) and, when
    ``balance_weight > 0`` and the router has logits, ``"balance"`` = ``balance_weight · (cv²(importance) +
    cv²(load))`` (core :func:`~domain_moe.core.losses.importance_load_cv2`). ``last_importance`` keeps the mean
    gate of the last call (expert-load diagnostics).

    Args:
        experts: ``E`` GNN experts, each called as ``expert(x, edge_index)`` on ``[N, F]`` and returning
            ``[N, out_channels]``.
        in_channels: feature width ``F`` (after alignment).
        out_channels: expert output width ``H``.
        router: ``"dense"`` (softmax over all experts), ``"top_k"``, ``"random"`` (ablation) or a core router
            with ``d_model = (hops + 1)·F + 1``.
        top_k: experts per node for ``router="top_k"``.
        hops: propagation steps of the structural summary.
        orth_weight: coefficient of the prompt orthogonality loss (``>= 0``).
        balance_weight: coefficient of the importance/load balance loss (``>= 0``).
        temperature: softmax temperature of the dense router.

    Shapes:
        x: ``[N, F]``, edge_index: ``[2, N_e]`` → ``[N, H]``.

    Example:
        >>> from domain_moe.graph.models import GNN
        >>> experts = [GNN(num_features=4, num_classes=8, norm=False) for _ in range(3)]
        >>> moe = PromptExpertMoE(experts, in_channels=4, out_channels=8)
        >>> moe(torch.randn(5, 4), torch.tensor([[0, 1, 2], [1, 2, 3]])).shape, sorted(moe.last_aux.losses)
        (torch.Size([5, 8]), ['orth'])
    """

    last_importance: Tensor | None

    def __init__(
        self,
        experts: Sequence[nn.Module],
        in_channels: int,
        out_channels: int,
        *,
        router: RouterName | Router = "dense",
        top_k: int = 1,
        hops: int = 2,
        orth_weight: float = 0.1,
        balance_weight: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PromptExpertMoE: {name} must be an int >= 1, got {value!r}")
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
            raise ValueError(f"PromptExpertMoE: hops must be an int >= 0, got {hops!r}")
        for name, value in (("orth_weight", orth_weight), ("balance_weight", balance_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"PromptExpertMoE: {name} must be a finite float >= 0, got {value!r}")
        num_experts = len(experts)
        if num_experts == 0:
            raise ValueError("PromptExpertMoE: experts must hold at least one module, got an empty sequence")
        d_model = (hops + 1) * in_channels + 1
        wrapped = [_PromptedExpert(e, i, in_channels) for i, e in enumerate(experts)]
        super().__init__(
            _make_router(router, d_model, num_experts, top_k, temperature),
            ModuleListExperts(wrapped, d_model=d_model, d_out=out_channels, row_wise=False),
            backend="dense_all",
        )
        self.prompt = FeaturePrompt(in_channels, num_experts)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hops = hops
        self.orth_weight = float(orth_weight)
        self.balance_weight = float(balance_weight)
        self.last_importance = None

    def reset_parameters(self) -> None:
        """Re-initialise the router, the experts and the prompts."""
        super().reset_parameters()
        self.prompt.reset_parameters()

    def expert_modules(self) -> list[nn.Module]:
        """The ``E`` GNN experts (the backbone frozen in prompt tuning)."""
        return [wrapped.gnn for wrapped in self.experts.experts]  # type: ignore[union-attr]

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:  # type: ignore[override]
        """Mixture of the prompted experts' node embeddings."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(-1) != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"PromptExpertMoE: x must be [N, in_channels={self.in_channels}], got {got}")
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
            got = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index).__name__
            raise ValueError(f"PromptExpertMoE: edge_index must be [2, N_e], got {got}")
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= x.size(0)):
            raise ValueError(
                f"PromptExpertMoE: edge_index must index nodes in [0, {x.size(0)}), got values in "
                f"[{int(edge_index.min())}, {int(edge_index.max())}]"
            )
        tokens = structure_summary(x, edge_index, self.hops)
        return super().forward(tokens, edge_index=edge_index, prompts=self.prompt.weight)

    def _aux(self, decision: RoutingDecision) -> MoEAux:
        aux = super()._aux(decision)
        extra = dict(aux.losses)
        idx = decision.topk_idx
        weight = torch.where(idx >= 0, decision.topk_w.float(), decision.topk_w.new_zeros((), dtype=torch.float32))
        gates = weight.new_zeros(idx.size(0), self.num_experts).scatter_add(1, idx.clamp_min(0), weight)
        self.last_importance = gates.detach().mean(0)
        if self.orth_weight > 0 and self.num_experts > 1:
            extra["orth"] = self.orth_weight * losses.orthogonality(self.prompt.weight, normalize=True)
        if self.balance_weight > 0 and decision.logits is not None and self.num_experts > 1:
            importance, load = losses.importance_load_cv2(gates, decision.logits, None, None, decision.top_k)
            extra["balance"] = self.balance_weight * (importance + load)
        return dataclasses.replace(aux, losses=extra)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, hops={self.hops}, "
            f"orth_weight={self.orth_weight}, balance_weight={self.balance_weight}"
        )


class GMoPE(nn.Module):
    """GMoPE-style model: a :class:`PromptExpertMoE` over ``E`` GNN experts plus a linear node head.

    With ``num_experts=1`` it is the single-prompt GPF baseline (Fang et al., NeurIPS 2023) on a one-GNN
    backbone; with ``router="random"`` the random-router ablation. Parameter groups for prompt-only tuning:
    :meth:`backbone_parameters` (the expert GNNs, frozen), :meth:`prompt_parameters`,
    :meth:`router_parameters`, :meth:`head_parameters`; :meth:`tunable_parameters` picks them by mode.

    Args:
        num_features: aligned feature width ``F`` (linked from the DataModule by the CLI).
        num_classes: classes ``Q`` of the node head (unused in pre-training).
        num_experts: experts ``E``.
        hidden_channels: expert hidden and output width ``H``.
        num_layers: message-passing layers per expert.
        conv: expert convolution, ``"gcn"``, ``"sage"``, ``"gat"`` or ``"gin"``.
        router: ``"dense"``, ``"top_k"`` or ``"random"``.
        top_k: experts per node for ``router="top_k"``.
        hops: propagation steps of the router's structural summary.
        orth_weight: coefficient of the prompt orthogonality loss.
        balance_weight: coefficient of the importance/load balance loss.
        dropout: dropout inside the experts.
        temperature: dense-router softmax temperature.

    Shapes:
        x: ``[N, F]``, edge_index: ``[2, N_e]`` → logits ``[N, Q]``; :meth:`embed` → ``[N, H]``.

    Example:
        >>> model = GMoPE(num_features=8, num_classes=3, num_experts=2, hidden_channels=16)
        >>> model(torch.randn(5, 8), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        num_experts: int = 4,
        hidden_channels: int = 64,
        num_layers: int = 2,
        conv: ConvName = "gcn",
        router: RouterName = "dense",
        top_k: int = 1,
        hops: int = 2,
        orth_weight: float = 0.1,
        balance_weight: float = 0.0,
        dropout: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_features", num_features),
            ("num_classes", num_classes),
            ("num_experts", num_experts),
            ("hidden_channels", hidden_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GMoPE: {name} must be an int >= 1, got {value!r}")
        # No BatchNorm in the experts: a frozen backbone must not carry running statistics that move.
        experts = [
            GNN(num_features, hidden_channels, hidden_channels, num_layers, conv, dropout, norm=False)
            for _ in range(num_experts)
        ]
        self.encoder = PromptExpertMoE(
            experts,
            num_features,
            hidden_channels,
            router=router,
            top_k=top_k,
            hops=hops,
            orth_weight=orth_weight,
            balance_weight=balance_weight,
            temperature=temperature,
        )
        self.head = nn.Linear(hidden_channels, num_classes)
        self.num_features = num_features
        self.num_classes = num_classes
        self.num_experts = num_experts
        self.hidden_channels = hidden_channels

    def reset_parameters(self) -> None:
        """Re-initialise the encoder and the head."""
        self.encoder.reset_parameters()
        self.head.reset_parameters()

    @property
    def prompts(self) -> FeaturePrompt:
        """The prompt bank ``[E, F]``."""
        return self.encoder.prompt

    @property
    def backbone(self) -> nn.ModuleList:
        """The expert GNNs (as one module, for ``eval()`` and state comparisons)."""
        return nn.ModuleList(self.encoder.expert_modules())

    def embed(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Node embeddings ``[N, H]`` (the mixture's output)."""
        return self.encoder(x, edge_index)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Node logits ``[N, Q]``."""
        return self.head(self.embed(x, edge_index))

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of the expert GNNs."""
        return [p for gnn in self.encoder.expert_modules() for p in gnn.parameters()]

    def prompt_parameters(self) -> list[nn.Parameter]:
        """The prompt bank."""
        return list(self.encoder.prompt.parameters())

    def router_parameters(self) -> list[nn.Parameter]:
        """The router's parameters (none for the random router)."""
        return list(self.encoder.router.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """The node head."""
        return list(self.head.parameters())

    def tunable_parameters(self, mode: TuneMode = "prompt") -> list[nn.Parameter]:
        """Parameters trained in ``mode``.

        ``"prompt"``: prompts, router and head; ``"prompt_head"``: prompts and head (router frozen too, the
        literal reading of GMoPE's "only prompts and task heads are fine-tuned"); ``"full"``: everything;
        ``"head"``: the head (linear probe).
        """
        if mode == "prompt":
            return self.prompt_parameters() + self.router_parameters() + self.head_parameters()
        if mode == "prompt_head":
            return self.prompt_parameters() + self.head_parameters()
        if mode == "full":
            return list(self.parameters())
        if mode == "head":
            return self.head_parameters()
        raise ValueError(f"GMoPE: mode must be 'prompt', 'prompt_head', 'full' or 'head', got {mode!r}")

    def freeze(self, mode: TuneMode = "prompt") -> int:
        """Set ``requires_grad`` to train only ``mode``'s parameters; returns their number of elements."""
        keep = {id(p) for p in self.tunable_parameters(mode)}
        for p in self.parameters():
            p.requires_grad_(id(p) in keep)
        return sum(p.numel() for p in self.parameters() if id(p) in keep)

    def named_backbone_state(self) -> Iterator[tuple[str, Tensor]]:
        """``(name, tensor)`` of every backbone parameter and buffer (for bit-identity checks)."""
        yield from self.backbone.state_dict().items()

    def expert_load(self) -> Tensor | None:
        """Mean gate per expert in the last forward, ``[E]`` (``None`` before the first call)."""
        return self.encoder.last_importance
