"""Mowst: a mixture of a weak (MLP) and a strong (GNN) expert mixed by a confidence from the weak prediction.

Zeng, Lyu, Hu, Xia, Luo. *Mixture of Weak & Strong Experts on Graphs.* ICLR 2024 (arXiv 2311.05185).

Both variants share one module: ``variant="mowst"`` (loss ``C·CE(weak) + (1-C)·CE(strong)``, alternating
training, sampled inference) and ``variant="mowst_star"`` (loss ``CE(C·p + (1-C)·p')`` on mixed
*probabilities*, expectation inference). The schedules (alternating turns, pre-training) live in the tasks.

Why the gate is not a core router: its input is the *output* of one of the two experts (the weak expert's
prediction dispersion), not the token features, so it does not fit ``MoE(router, experts)``, where the router
sees the input only. Everything here is Mowst-specific.

Deliberate departures from the official code (see ``specs/graph.md`` §1.5): one softmax before the dispersion
at training *and* evaluation; the Mowst* loss mixes probabilities (via ``logsumexp``), not logits; the frozen
expert of a turn is run in ``eval()`` by the task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import k_hop_subgraph

from domain_moe.graph.checks import check_graph
from domain_moe.graph.models.gnn import GNN, ConvName
from domain_moe.graph.models.mlp import NodeMLP

__all__ = ["ConfidenceGate", "HyperConfidenceGate", "Mowst", "MowstOutput", "MowstSample", "dispersion"]

DispersionKind = Literal["variance", "entropy"]
_KINDS = ("variance", "entropy")


def dispersion(probs: Tensor, kinds: Sequence[DispersionKind] = _KINDS) -> Tensor:
    """Normalised dispersion of class distributions: 1 for one-hot, 0 for uniform.

    ``"variance"``: population variance of ``p`` over the variance of a one-hot vector, ``(Q-1)/Q²``.
    ``"entropy"``: negative entropy, ``1 - H(p)/log Q``.

    Args:
        probs: class probabilities (rows sum to 1).
        kinds: which dispersions to stack, in order.

    Shapes:
        probs: ``[N, Q]`` with ``Q >= 2`` → ``[N, len(kinds)]``.

    Example:
        >>> import torch
        >>> dispersion(torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]))
        tensor([[1., 1.],
                [0., 0.]])
    """
    if probs.dim() != 2 or probs.size(-1) < 2:
        raise ValueError(f"dispersion: probs must be [N, Q] with Q >= 2, got shape {tuple(probs.shape)}")
    if not kinds:
        raise ValueError("dispersion: kinds must name at least one of 'variance', 'entropy'")
    num_classes = probs.size(-1)
    columns = []
    for kind in kinds:
        if kind == "variance":
            one_hot_var = (num_classes - 1) / num_classes**2
            columns.append(probs.var(dim=-1, unbiased=False) / one_hot_var)
        elif kind == "entropy":
            # xlogy gives 0·log 0 = 0, so one-hot rows have exactly zero entropy (and no NaN gradient).
            entropy = -torch.special.xlogy(probs, probs).sum(-1)
            columns.append(1.0 - entropy / math.log(num_classes))
        else:
            raise ValueError(f"dispersion: unknown kind {kind!r}, expected 'variance' or 'entropy'")
    return torch.stack(columns, dim=-1).clamp(0.0, 1.0)


class _PositiveLinear(nn.Linear):
    """Linear layer whose weights on chosen input columns are kept positive through ``softplus``."""

    def __init__(self, in_features: int, out_features: int, positive_columns: int | None = None) -> None:
        super().__init__(in_features, out_features)
        self.positive_columns = in_features if positive_columns is None else positive_columns

    def forward(self, x: Tensor) -> Tensor:
        k = self.positive_columns
        weight = torch.cat([F.softplus(self.weight[:, :k]), self.weight[:, k:]], dim=1)
        return F.linear(x, weight, self.bias)


class ConfidenceGate(nn.Module):
    """The learnable confidence function ``G``: ``C = sigmoid(G([D(p) ‖ x]))``.

    An MLP (Linear → ReLU → Dropout blocks, then a Linear to one logit). With ``monotone=True`` every weight
    on the path from the dispersion inputs to the output is positive (``softplus`` reparametrisation) and the
    activations are monotone, so ``C`` is non-decreasing in each dispersion for any fixed node features: a
    monotone (hence quasiconvex) ``G`` as the paper asks. Feature inputs keep unconstrained first-layer weights.

    Args:
        num_dispersions: number of dispersion inputs ``k`` (1 or 2).
        num_features: node-feature inputs appended to the dispersion (0: gate on dispersion only).
        hidden_channels: hidden width of the gate.
        num_layers: Linear layers (``>= 1``; 1 is a logistic gate).
        dropout: dropout between hidden layers.
        monotone: constrain ``C`` to be non-decreasing in the dispersion.

    Shapes:
        inputs: ``[N, k + F_g]`` → logits ``[N]`` (apply ``sigmoid`` for ``C``).

    Example:
        >>> import torch
        >>> ConfidenceGate(num_dispersions=2, hidden_channels=8)(torch.rand(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        num_dispersions: int = 2,
        num_features: int = 0,
        hidden_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.0,
        monotone: bool = False,
    ) -> None:
        super().__init__()
        if num_dispersions < 1 or num_features < 0 or hidden_channels < 1 or num_layers < 1:
            raise ValueError(
                "ConfidenceGate: need num_dispersions >= 1, num_features >= 0, hidden_channels >= 1, num_layers >= 1;"
                f" got {num_dispersions}, {num_features}, {hidden_channels}, {num_layers}"
            )
        widths = [num_dispersions + num_features] + [hidden_channels] * (num_layers - 1) + [1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(widths)):
            if monotone:
                layers.append(_PositiveLinear(a, b, positive_columns=num_dispersions if i == 0 else None))
            else:
                layers.append(nn.Linear(a, b))
        self.lins = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)
        self.in_channels = widths[0]
        self.monotone = monotone

    def reset_parameters(self) -> None:
        """Re-initialise every layer."""
        for lin in self.lins:
            lin.reset_parameters()

    def forward(self, inputs: Tensor) -> Tensor:
        """Gate logits (before the sigmoid)."""
        if inputs.dim() != 2 or inputs.size(-1) != self.in_channels:
            raise ValueError(f"ConfidenceGate: inputs must be [N, {self.in_channels}], got {tuple(inputs.shape)}")
        h = inputs
        for lin in self.lins[:-1]:
            h = self.dropout(torch.relu(lin(h)))
        return self.lins[-1](h).squeeze(-1)


class HyperConfidenceGate(nn.Module):
    """A per-node gate generated from the node's features: ``G_v(D) = ((D W1_v + b1_v) W2_v) + b2_v``.

    The official code's ``--original_data hypermlp`` gate (Zeng et al., ICLR 2024): four MLPs read the node
    features ``x_v`` and emit the weights ``W1_v [k, h]``, ``b1_v [h]``, ``W2_v [h, 1]`` and ``b2_v`` of a
    small gate that is *linear* in the dispersion ``D(p_v)``. Each node thus gets its own linear confidence
    function of the weak expert's dispersion, shaped by its features. With ``monotone=True`` the generated
    ``W1_v`` and ``W2_v`` pass through ``softplus``, so ``C_v`` is non-decreasing in every dispersion.

    Args:
        num_dispersions: number of dispersion inputs ``k``.
        num_features: node-feature width ``F`` the generators read.
        hidden_channels: width ``h`` of the generated per-node gate.
        generator_hidden: hidden width of each of the four generator MLPs.
        dropout: dropout inside the generators.
        monotone: constrain ``C`` to be non-decreasing in the dispersion.

    Shapes:
        inputs: ``[N, k + F]`` (the dispersion first, then the features) → logits ``[N]``.

    Example:
        >>> import torch
        >>> gate = HyperConfidenceGate(num_dispersions=2, num_features=5, hidden_channels=4)
        >>> gate(torch.rand(3, 7)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        num_dispersions: int = 2,
        num_features: int = 1,
        hidden_channels: int = 8,
        generator_hidden: int = 32,
        dropout: float = 0.0,
        monotone: bool = False,
    ) -> None:
        super().__init__()
        if num_dispersions < 1 or num_features < 1 or hidden_channels < 1 or generator_hidden < 1:
            raise ValueError(
                "HyperConfidenceGate: need num_dispersions, num_features, hidden_channels and generator_hidden"
                f" >= 1; got {num_dispersions}, {num_features}, {hidden_channels}, {generator_hidden}"
            )
        k, h = num_dispersions, hidden_channels

        def generator(out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(num_features, generator_hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(generator_hidden, out),
            )

        self.w1 = generator(k * h)
        self.b1 = generator(h)
        self.w2 = generator(h)
        self.b2 = generator(1)
        self.num_dispersions = k
        self.hidden_channels = h
        self.in_channels = k + num_features
        self.monotone = monotone

    def reset_parameters(self) -> None:
        """Re-initialise the four generators."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    def forward(self, inputs: Tensor) -> Tensor:
        """Gate logits (before the sigmoid)."""
        if inputs.dim() != 2 or inputs.size(-1) != self.in_channels:
            raise ValueError(
                f"HyperConfidenceGate: inputs must be [N, {self.in_channels}] (dispersion ‖ features), "
                f"got {tuple(inputs.shape)}"
            )
        k, h = self.num_dispersions, self.hidden_channels
        d, x = inputs[:, :k], inputs[:, k:]
        w1 = self.w1(x).view(-1, k, h)
        w2 = self.w2(x)
        if self.monotone:
            w1, w2 = F.softplus(w1), F.softplus(w2)
        hidden = torch.bmm(d.unsqueeze(1), w1).squeeze(1) + self.b1(x)
        return (hidden * w2).sum(-1) + self.b2(x).squeeze(-1)


class MowstOutput(NamedTuple):
    """What :meth:`Mowst.forward` returns (``N`` nodes, ``Q`` classes)."""

    weak_logits: Tensor  #: ``[N, Q]``
    strong_logits: Tensor  #: ``[N, Q]``
    confidence: Tensor  #: ``[N]``, C in (0, 1)
    gate_logits: Tensor  #: ``[N]``, ``C = sigmoid(gate_logits)`` (kept for a stable log C)


class MowstSample(NamedTuple):
    """What :meth:`Mowst.sample_predict` returns."""

    proba: Tensor  #: ``[N, Q]``: the chosen expert's probabilities per node
    to_weak: Tensor  #: ``[N]`` bool: routed to the weak expert
    confidence: Tensor  #: ``[N]``
    strong_nodes: int  #: nodes the strong expert was evaluated on (the k-hop neighbourhood when lazy)
    gnn_work_saved: float  #: ``1 - strong_nodes / N``: fraction of GNN node evaluations skipped


class Mowst(nn.Module):
    """Mixture of a weak and a strong expert with a confidence gate on the weak expert's dispersion.

    ``p = softmax(weak(x))``, ``p' = softmax(strong(x, edge_index))``, ``C = sigmoid(G([D(p) ‖ x?]))``.
    Training loss: ``variant="mowst"``: ``mean_v C·CE(z_w) + (1-C)·CE(z_s)``; ``"mowst_star"``:
    ``mean_v CE(C p + (1-C) p')`` (≤ the former by Jensen). Inference: :meth:`predict_proba` with
    ``mode="expected"`` (``C p + (1-C) p'``) or ``"sample"`` (Algorithm 1: node v takes the weak answer with
    probability ``C_v``), and :meth:`sample_predict` with ``lazy=True`` runs the strong expert only on the
    k-hop neighbourhood of the nodes it must answer.

    Experts are injected (``weak``: called as ``weak(x)``; ``strong``: ``strong(x, edge_index)``, e.g. any
    ``torch_geometric.nn`` model) or built from ``num_features``/``num_classes`` (so the CLI can link them)
    as :class:`NodeMLP` and :class:`GNN` of ``conv`` type with ``hidden_channels``/``num_layers``/``dropout``.

    Args:
        weak: the weak expert, or ``None`` to build a :class:`NodeMLP`.
        strong: the strong expert, or ``None`` to build a :class:`GNN`.
        num_features: input width ``F`` (needed to build experts and for ``gate_on_features``).
        num_classes: number of classes ``Q`` (needed to build experts).
        variant: ``"mowst"`` or ``"mowst_star"``; selects :meth:`loss` and the default inference.
        gate: a custom gate module mapping ``[N, k (+F)]`` to ``[N]`` logits; ``None`` builds
            :class:`ConfidenceGate`.
        gate_on_features: feed the node features to the gate beside the dispersion (the code's
            ``--original_data true``).
        gate_kind: the default gate's form: ``"mlp"`` (:class:`ConfidenceGate` on ``[D(p) ‖ x?]``) or
            ``"hyper"`` (:class:`HyperConfidenceGate`: a per-node gate linear in ``D(p)`` whose weights are
            generated from ``x``, the code's ``--original_data hypermlp``; implies feature input).
        dispersion_kinds: dispersions fed to the gate: ``("variance", "entropy")`` (the code's choice),
            ``("variance",)`` or ``("entropy",)``.
        detach_dispersion: stop gradients through the dispersion into the weak expert (the official code's
            behaviour); ``False`` lets the weak expert learn its own confidence.
        monotone: build the default gate monotone in the dispersion.
        gate_hidden: hidden width of the default gate.
        gate_layers: Linear layers of the default gate.
        gate_dropout: dropout of the default gate.
        hyper_hidden: width of the generated per-node gate when ``gate_kind="hyper"``.
        hidden_channels: hidden width of the built experts.
        num_layers: layers of the built experts.
        conv: convolution of the built strong expert (``"gcn"``, ``"sage"``, ``"gat"``, ``"gin"``).
        dropout: dropout of the built experts.
        norm: BatchNorm in the built experts (the official backbones use it; it hurts on tiny label sets).
        sparse: build the strong expert with sparse-matrix message passing (:class:`GNN` ``sparse``).
        num_hops: receptive field of the strong expert for lazy inference; ``None`` reads
            ``strong.num_layers`` and adds one hop so degree-normalised convolutions (GCN) see exact degrees.

    Shapes:
        x: ``[N, F]``, edge_index: ``[2, N_e]`` → :class:`MowstOutput` with logits ``[N, Q]`` and confidence
        ``[N]``.

    Example:
        >>> import torch
        >>> model = Mowst(num_features=4, num_classes=3, hidden_channels=8)
        >>> out = model(torch.randn(5, 4), torch.tensor([[0, 1, 2], [1, 2, 3]]))
        >>> out.weak_logits.shape, out.confidence.shape
        (torch.Size([5, 3]), torch.Size([5]))
    """

    def __init__(
        self,
        weak: nn.Module | None = None,
        strong: nn.Module | None = None,
        *,
        num_features: int | None = None,
        num_classes: int | None = None,
        variant: Literal["mowst", "mowst_star"] = "mowst",
        gate: nn.Module | None = None,
        gate_on_features: bool = False,
        gate_kind: Literal["mlp", "hyper"] = "mlp",
        dispersion_kinds: Sequence[DispersionKind] = _KINDS,
        detach_dispersion: bool = True,
        monotone: bool = False,
        gate_hidden: int = 64,
        gate_layers: int = 2,
        gate_dropout: float = 0.0,
        hyper_hidden: int = 8,
        hidden_channels: int = 64,
        num_layers: int = 2,
        conv: ConvName = "gcn",
        dropout: float = 0.5,
        norm: bool = True,
        sparse: bool = False,
        num_hops: int | None = None,
    ) -> None:
        super().__init__()
        if variant not in ("mowst", "mowst_star"):
            raise ValueError(f"Mowst: variant must be 'mowst' or 'mowst_star', got {variant!r}")
        kinds = tuple(dispersion_kinds)
        if not kinds or any(k not in _KINDS for k in kinds) or len(set(kinds)) != len(kinds):
            raise ValueError(f"Mowst: dispersion_kinds must be distinct names from {_KINDS}, got {kinds!r}")
        if (weak is None or strong is None) and (num_features is None or num_classes is None):
            raise ValueError("Mowst: pass weak and strong experts, or num_features and num_classes to build them")
        if gate_kind not in ("mlp", "hyper"):
            raise ValueError(f"Mowst: gate_kind must be 'mlp' or 'hyper', got {gate_kind!r}")
        if gate is None and gate_kind == "hyper":
            gate_on_features = True
        if gate_on_features and gate is None and num_features is None:
            raise ValueError("Mowst: gate_on_features=True (or gate_kind='hyper') needs num_features, the gate's input")
        if weak is None:
            weak = NodeMLP(num_features, num_classes, hidden_channels, num_layers, dropout, norm)  # type: ignore[arg-type]
        if strong is None:
            strong = GNN(num_features, num_classes, hidden_channels, num_layers, conv, dropout, norm, sparse=sparse)  # type: ignore[arg-type]
        if gate is None and gate_kind == "hyper":
            gate = HyperConfidenceGate(
                num_dispersions=len(kinds),
                num_features=num_features,  # type: ignore[arg-type]
                hidden_channels=hyper_hidden,
                generator_hidden=gate_hidden,
                dropout=gate_dropout,
                monotone=monotone,
            )
        elif gate is None:
            gate = ConfidenceGate(
                num_dispersions=len(kinds),
                num_features=num_features if gate_on_features else 0,  # type: ignore[arg-type]
                hidden_channels=gate_hidden,
                num_layers=gate_layers,
                dropout=gate_dropout,
                monotone=monotone,
            )
        self.weak = weak
        self.strong = strong
        self.gate = gate
        self.variant = variant
        self.dispersion_kinds = kinds
        self.gate_on_features = gate_on_features
        self.detach_dispersion = detach_dispersion
        if num_hops is None and isinstance(getattr(strong, "num_layers", None), int):
            num_hops = strong.num_layers + 1
        self.num_hops = num_hops
        self.last_aux: dict[str, Tensor] | None = None

    def reset_parameters(self) -> None:
        """Re-initialise both experts and the gate."""
        for module in (self.weak, self.strong, self.gate):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    # -- parameter groups for the alternating optimisers ------------------------------------------------------
    def weak_parameters(self) -> list[nn.Parameter]:
        """Parameters of the weak expert."""
        return list(self.weak.parameters())

    def strong_parameters(self) -> list[nn.Parameter]:
        """Parameters of the strong expert."""
        return list(self.strong.parameters())

    def gate_parameters(self) -> list[nn.Parameter]:
        """Parameters of the confidence function."""
        return list(self.gate.parameters())

    # -- forward ----------------------------------------------------------------------------------------------
    def _call_strong(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None) -> Tensor:
        if edge_weight is None:
            return self.strong(x, edge_index)
        return self.strong(x, edge_index, edge_weight)

    def gate_logits(self, x: Tensor, weak_logits: Tensor) -> Tensor:
        """Gate logits ``G([D(p) ‖ x?])`` from the weak expert's logits.

        Shapes:
            x: ``[N, F]``, weak_logits: ``[N, Q]`` → ``[N]``.
        """
        probs = weak_logits.softmax(dim=-1)
        if self.detach_dispersion:
            probs = probs.detach()
        inputs = dispersion(probs, self.dispersion_kinds)
        if self.gate_on_features:
            inputs = torch.cat([inputs, x], dim=-1)
        return self.gate(inputs)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        frozen: Literal["weak", "strong"] | None = None,
        reuse: MowstOutput | None = None,
    ) -> MowstOutput:
        """Both experts' logits and the confidence of every node.

        Args:
            x: node features.
            edge_index: COO edges.
            edge_weight: optional edge weights passed to the strong expert.
            frozen: run this side without building a graph (``"weak"``: weak expert and gate;
                ``"strong"``: strong expert), for the other side's training turn. Its train/eval mode is the
                caller's business (Mowst's turns keep the frozen side in ``eval()``).
            reuse: an earlier output on the same graph whose ``frozen`` side is taken instead of recomputed.
                Exact when that side is in ``eval()`` and unchanged since, as within one Mowst turn: the turn
                then costs one expert's step, not both (the strong turn no longer pays for the MLP, the weak
                turn no longer runs the GNN).

        Returns:
            :class:`MowstOutput`; the mean confidence and the expected weak share are kept in ``last_aux``.
        """
        check_graph(x, edge_index, where="Mowst")
        if frozen not in (None, "weak", "strong"):
            raise ValueError(f"Mowst: frozen must be None, 'weak' or 'strong', got {frozen!r}")
        if reuse is not None and frozen is None:
            raise ValueError("Mowst: reuse needs frozen='weak' or 'strong' (the side to take from it)")
        if reuse is not None and reuse.weak_logits.size(0) != x.size(0):
            raise ValueError(f"Mowst: reuse covers {reuse.weak_logits.size(0)} nodes but x has {x.size(0)}")
        if reuse is not None and frozen == "weak":
            weak_logits, gate_logits = reuse.weak_logits.detach(), reuse.gate_logits.detach()
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and frozen != "weak"):
                weak_logits = self.weak(x)
                gate_logits = self.gate_logits(x, weak_logits)
        if reuse is not None and frozen == "strong":
            strong_logits = reuse.strong_logits.detach()
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and frozen != "strong"):
                strong_logits = self._call_strong(x, edge_index, edge_weight)
        if weak_logits.shape != strong_logits.shape:
            raise ValueError(
                f"Mowst: weak and strong experts disagree: weak logits {tuple(weak_logits.shape)}, "
                f"strong logits {tuple(strong_logits.shape)}"
            )
        confidence = torch.sigmoid(gate_logits)
        self.last_aux = {"mean_confidence": confidence.detach().mean()}
        return MowstOutput(weak_logits, strong_logits, confidence, gate_logits)

    # -- losses -----------------------------------------------------------------------------------------------
    @staticmethod
    def _select(out: MowstOutput, y: Tensor, mask: Tensor | None) -> tuple[MowstOutput, Tensor]:
        if y.size(0) != out.weak_logits.size(0):
            raise ValueError(
                f"Mowst.loss: y has {y.size(0)} entries but the output has {out.weak_logits.size(0)} nodes"
            )
        if mask is None:
            return out, y
        if mask.shape != y.shape[:1] or mask.dtype != torch.bool:
            raise ValueError(f"Mowst.loss: mask must be a bool [N] tensor, got {mask.dtype} {tuple(mask.shape)}")
        return MowstOutput(*(t[mask] for t in out)), y[mask]

    @staticmethod
    def separate_loss(out: MowstOutput, y: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mowst's loss ``mean_v C_v·CE(z_w,v) + (1-C_v)·CE(z_s,v)`` over the masked nodes.

        Shapes:
            y: ``[N]`` class indices; mask: ``[N]`` bool → scalar.
        """
        out, y = Mowst._select(out, y, mask)
        ce_weak = F.cross_entropy(out.weak_logits, y, reduction="none")
        ce_strong = F.cross_entropy(out.strong_logits, y, reduction="none")
        c = out.confidence
        return (c * ce_weak + (1.0 - c) * ce_strong).mean()

    @staticmethod
    def mixture_log_proba(out: MowstOutput) -> Tensor:
        """``log(C p + (1-C) p')`` computed stably in log space.

        Shapes:
            ``[N, Q]``.
        """
        log_c = F.logsigmoid(out.gate_logits).unsqueeze(-1)
        log_1mc = F.logsigmoid(-out.gate_logits).unsqueeze(-1)
        weak = log_c + out.weak_logits.log_softmax(-1)
        strong = log_1mc + out.strong_logits.log_softmax(-1)
        return torch.logaddexp(weak, strong)

    @staticmethod
    def joint_loss(out: MowstOutput, y: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mowst*'s loss ``mean_v CE(C_v p_v + (1-C_v) p'_v, y_v)`` on mixed probabilities.

        Shapes:
            y: ``[N]`` class indices; mask: ``[N]`` bool → scalar.
        """
        out, y = Mowst._select(out, y, mask)
        return F.nll_loss(Mowst.mixture_log_proba(out), y)

    def loss(self, out: MowstOutput, y: Tensor, mask: Tensor | None = None) -> Tensor:
        """The variant's training loss (:meth:`separate_loss` or :meth:`joint_loss`)."""
        if self.variant == "mowst":
            return self.separate_loss(out, y, mask)
        return self.joint_loss(out, y, mask)

    # -- inference --------------------------------------------------------------------------------------------
    def predict_proba(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        mode: Literal["expected", "sample"] = "expected",
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Class probabilities: the expectation ``C p + (1-C) p'`` or one sampled routing (Algorithm 1).

        Args:
            x: node features.
            edge_index: COO edges.
            edge_weight: optional edge weights of the strong expert.
            mode: ``"expected"`` or ``"sample"``.
            generator: seeded generator of the routing draws (``"sample"`` only); same seed, same routing.

        Shapes:
            → ``[N, Q]``.
        """
        if mode == "expected":
            return self.mixture_log_proba(self(x, edge_index, edge_weight)).exp()
        if mode == "sample":
            return self.sample_predict(x, edge_index, edge_weight, generator=generator, lazy=False).proba
        raise ValueError(f"Mowst.predict_proba: mode must be 'expected' or 'sample', got {mode!r}")

    def route(self, confidence: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw the routing: node v goes to the weak expert when ``q_v < C_v``, ``q_v ~ U(0, 1)``.

        Shapes:
            confidence: ``[N]`` → bool ``[N]``.
        """
        device = confidence.device if generator is None else generator.device
        q = torch.rand(confidence.shape, generator=generator, device=device, dtype=confidence.dtype)
        return q.to(confidence.device) < confidence

    def sample_predict(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        lazy: bool = True,
    ) -> MowstSample:
        """Sampled inference (Algorithm 1), optionally evaluating the strong expert lazily.

        With ``lazy=True`` the strong expert runs only on the ``num_hops``-hop subgraph around the nodes routed
        to it; on those nodes its output equals the full-graph one (an exact receptive field, in eval mode).

        Args:
            x: node features.
            edge_index: COO edges.
            edge_weight: optional edge weights of the strong expert.
            generator: seeded generator of the routing draws.
            lazy: evaluate the strong expert on the needed neighbourhood only.

        Returns:
            :class:`MowstSample` with the probabilities, the routing and the GNN work saved.
        """
        check_graph(x, edge_index, where="Mowst.sample_predict")
        num_nodes = x.size(0)
        weak_logits = self.weak(x)
        confidence = torch.sigmoid(self.gate_logits(x, weak_logits))
        to_weak = self.route(confidence, generator)
        proba = weak_logits.softmax(-1)
        need = (~to_weak).nonzero().view(-1)
        if not lazy:
            strong = self._call_strong(x, edge_index, edge_weight).softmax(-1)
            proba = torch.where(to_weak.unsqueeze(-1), proba, strong)
            return MowstSample(proba, to_weak, confidence, num_nodes, 0.0)
        if self.num_hops is None:
            raise ValueError("Mowst.sample_predict: lazy=True needs num_hops (the strong expert's receptive field)")
        strong_nodes = 0
        if need.numel():
            subset, sub_edge_index, mapping, edge_mask = k_hop_subgraph(
                need, self.num_hops, edge_index, relabel_nodes=True, num_nodes=num_nodes
            )
            sub_weight = None if edge_weight is None else edge_weight[edge_mask]
            strong = self._call_strong(x[subset], sub_edge_index, sub_weight).softmax(-1)
            proba = proba.clone()
            proba[need] = strong[mapping]
            strong_nodes = int(subset.numel())
        return MowstSample(proba, to_weak, confidence, strong_nodes, 1.0 - strong_nodes / max(num_nodes, 1))
