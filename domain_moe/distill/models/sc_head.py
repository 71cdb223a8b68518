"""Classifier heads of Knowledge Concentration: FC-FC and structurally connected (SC) variants."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from domain_moe.core.dispatch import build_plan, combine
from domain_moe.core.experts import ModuleListExperts
from domain_moe.core.routing.fixed import fixed_decision
from domain_moe.distill.verticals import check_verticals

__all__ = ["HEADS", "SCHead", "head_weight_count"]

HEADS = ("linear", "fc", "fc_sc", "sc_sc")


def head_weight_count(
    head: str, in_features: int, shared_width: int, block_width: int, num_verticals: int, num_classes: int
) -> int:
    """Weights (biases not counted) of a head, by the formulas of Gao et al. (arXiv 1711.07607, §3.3).

    ``linear``: ``s_b N``; ``fc`` (FC(s1)-FC(s2)): ``s_b s1 + s1 s2 + s2 N``; ``fc_sc`` (FC(s1)-SC(s2)):
    ``s_b s1 + s1 s2 M + s2 N``; ``sc_sc`` (SC(s1)-SC(s2)): ``s_b s1 M + s1 s2 M + s2 N``.

    Example:
        >>> head_weight_count("fc_sc", in_features=64, shared_width=32, block_width=8, num_verticals=3,
        ...                   num_classes=10)
        2896
    """
    sb, s1, s2, m, n = in_features, shared_width, block_width, num_verticals, num_classes
    counts = {
        "linear": sb * n,
        "fc": sb * s1 + s1 * s2 + s2 * n,
        "fc_sc": sb * s1 + s1 * s2 * m + s2 * n,
        "sc_sc": sb * s1 * m + s1 * s2 * m + s2 * n,
    }
    if head not in counts:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    return counts[head]


class _VerticalBlock(nn.Module):
    """One vertical's private layers; its ``N_v`` logits are placed at the vertical's columns of ``N``."""

    def __init__(self, layers: nn.Module, classes: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.layers = layers
        placement = torch.zeros(len(classes), num_classes)
        placement[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
        self.register_buffer("placement", placement, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x) @ self.placement.to(x.dtype)


class SCHead(nn.Module):
    """Shared and vertical-specific layers from pooled features to the logits of all ``N`` classes.

    Head variants of Knowledge Concentration (Gao et al., arXiv 1711.07607, 2017, §3.3), all with ReLU between
    layers: ``"fc"`` is FC(s1)-FC(s2)-FC(N); ``"fc_sc"`` (the paper's best) is a shared FC(s1), then one private
    hidden layer of width s2 per vertical, whose classes connect only to that block (a block-diagonal
    classifier), so the penultimate capacity grows M-fold at the classifier cost ``s2 N``; ``"sc_sc"`` makes the
    first layer private too; ``"linear"`` is a single FC(N). The vertical blocks are the experts of a
    :class:`~domain_moe.core.experts.ModuleListExperts`, every sample routed to every block with weight 1
    (:func:`~domain_moe.core.routing.fixed.fixed_decision`); blocks write disjoint columns, so the combine
    concatenates them. :func:`head_weight_count` gives the weight count; biases add ``s1 + M s2 + N`` (fc_sc).

    Args:
        in_features: pooled feature width ``s_b``.
        verticals: the classes of each vertical (a partition of ``range(N)``).
        head: ``"linear"``, ``"fc"``, ``"fc_sc"`` or ``"sc_sc"``.
        shared_width: ``s1`` (per vertical for ``"sc_sc"``).
        block_width: ``s2`` (per vertical for the SC variants).
        dropout: dropout before the last layer.

    Shapes:
        - x: ``[B, s_b]``
        - output: ``[B, N]``

    Example:
        >>> import torch
        >>> head = SCHead(64, [[0, 2, 4, 6], [5, 7, 9], [1, 3, 8]], head="fc_sc", shared_width=32, block_width=8)
        >>> head(torch.randn(5, 64)).shape, head.weight_count()
        (torch.Size([5, 10]), 2896)
    """

    def __init__(
        self,
        in_features: int,
        verticals: Sequence[Sequence[int]],
        head: str = "fc_sc",
        shared_width: int = 128,
        block_width: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        checked = check_verticals(verticals)
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        for name, value in (("in_features", in_features), ("shared_width", shared_width), ("block_width", block_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_features = in_features
        self.head = head
        self.shared_width = shared_width
        self.block_width = block_width
        self.num_verticals = len(checked)
        self.num_classes = sum(len(v) for v in checked)
        s1, s2, n = shared_width, block_width, self.num_classes
        self.shared: nn.Module = nn.Identity()
        self.blocks: ModuleListExperts | None = None
        self.classifier: nn.Module = nn.Identity()
        if head == "linear":
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, n))
        elif head == "fc":
            self.shared = nn.Sequential(nn.Linear(in_features, s1), nn.ReLU(), nn.Linear(s1, s2), nn.ReLU())
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(s2, n))
        else:
            first = in_features
            if head == "fc_sc":
                self.shared = nn.Sequential(nn.Linear(in_features, s1), nn.ReLU())
                first = s1
            blocks = []
            for classes in checked:
                layers: list[nn.Module] = [] if head == "fc_sc" else [nn.Linear(in_features, s1), nn.ReLU()]
                layers += [nn.Linear(first if head == "fc_sc" else s1, s2), nn.ReLU(), nn.Dropout(dropout)]
                layers.append(nn.Linear(s2, len(classes)))
                blocks.append(_VerticalBlock(nn.Sequential(*layers), classes, n))
            width = s1 if head == "fc_sc" else in_features
            self.blocks = ModuleListExperts(blocks, d_model=width, d_out=n)

    def reset_parameters(self) -> None:
        """Re-initialise every linear layer."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def weight_count(self) -> int:
        """Weights of the head's linear layers (biases excluded), equal to :func:`head_weight_count`."""
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))

    def forward(self, x: Tensor) -> Tensor:
        """Logits of all classes from pooled features ``x``."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape [B, in_features={self.in_features}], got {tuple(x.shape)}")
        h = self.shared(x)
        if self.blocks is None:
            return self.classifier(h)
        every = torch.arange(self.num_verticals, device=h.device).expand(h.shape[0], -1)
        decision = fixed_decision(every, self.num_verticals)
        weight = decision.topk_w.to(h.dtype)
        plan = build_plan(decision.topk_idx, weight, self.num_verticals)
        return combine(self.blocks(h, plan, "torch_loop"), weight, plan)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"head={self.head!r}, shared_width={self.shared_width}, block_width={self.block_width}"
