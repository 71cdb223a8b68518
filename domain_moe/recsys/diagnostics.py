"""Expert-health diagnostics for the three anomalies HoME targets: collapse, degradation, underfitting.

Accumulated over batches (typically the validation set) from the last call of every
:class:`~domain_moe.recsys.models.extraction.ExtractionLayer` of a model:

* **collapse** — per expert, the fraction of exactly-zero output activations (HoME reports ReLU experts with
  more than 90% zeros) and the spread across experts of the output mean and standard deviation (experts
  whose outputs live on very different scales cannot be weighted fairly by a softmax gate);
* **degradation** — per shared expert, the share of its total gate mass that comes from each gate; one task
  holding more than about 80% means the "shared" expert has been occupied by that task (``max_global_share``
  looks only at experts that every gate of the layer may use, so models with different scopes compare);
* **underfitting** — per gate (task), the gate mass on its own specific experts; near 0 means a data-sparse
  task ignores its own experts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from domain_moe.recsys.models.extraction import ExtractionLayer

__all__ = ["COLLAPSE_ZERO_RATE", "DEGRADATION_SHARE", "ExpertHealth", "LayerHealth", "plot_expert_health"]

#: Zero-activation rate above which an expert counts as collapsed (HoME, §1).
COLLAPSE_ZERO_RATE = 0.9
#: Share of a shared expert's gate mass above which one task "occupies" it.
DEGRADATION_SHARE = 0.8


@dataclass
class LayerHealth:
    """Diagnostics of one extraction layer.

    Attributes:
        gate_names: a name per gate ``G``.
        expert_names: a name per expert ``E``.
        expert_owner: owning gate per expert (``-1``: shared).
        zero_rate: fraction of exactly-zero outputs per expert ``[E]``.
        out_mean: mean output per expert ``[E]``.
        out_std: output standard deviation per expert ``[E]``.
        gate_mass: mean gate weight ``[G, E]``.
        shared_share: per shared expert, each gate's share of its gate mass ``[G, E_shared]``.
        own_mass: per gate, gate mass on its own experts ``[G]`` (NaN for gates without own experts).
    """

    gate_names: list[str]
    expert_names: list[str]
    expert_owner: list[int]
    zero_rate: Tensor
    out_mean: Tensor
    out_std: Tensor
    gate_mass: Tensor
    shared_share: Tensor
    own_mass: Tensor
    summary: dict[str, float] = field(default_factory=dict)


def _layer_summary(h: LayerHealth, scope: Tensor) -> dict[str, float]:
    shared_max = float(h.shared_share.max(0).values.max()) if h.shared_share.numel() else math.nan
    # Experts every gate may use: their share is comparable across models (a group-shared expert serves only
    # its group's few tasks, so its largest share is high by construction).
    owner = torch.tensor(h.expert_owner)
    shared_cols = scope[:, owner < 0].all(0)
    share = h.shared_share[:, shared_cols]
    global_max = float(share.max()) if share.numel() else math.nan
    return {
        "max_zero_rate": float(h.zero_rate.max()),
        "collapsed_experts": float((h.zero_rate > COLLAPSE_ZERO_RATE).sum()),
        "mean_spread": float(h.out_mean.std(unbiased=False)),
        "std_ratio": float(h.out_std.max() / h.out_std.min().clamp_min(1e-12)),
        "max_shared_share": shared_max,
        "max_global_share": global_max,
    }


class ExpertHealth:
    """Accumulates expert-health statistics of a model's extraction layers over batches.

    Call :meth:`update` after every forward pass (in eval mode), then :meth:`compute`. Plain Python state,
    owned by whoever creates it (the task keeps one per validation epoch); nothing global.

    Args:
        model: a multi-task model with :class:`ExtractionLayer` s (models without any give empty results).

    Example:
        >>> from domain_moe.recsys.models import MMoE
        >>> model = MMoE(["a", "b"], num_dense=6, num_experts=3, d_hidden=4)
        >>> health = ExpertHealth(model)
        >>> _ = model(torch.randn(32, 6)); health.update()
        >>> sorted(health.compute()["moe"].summary)[:2]
        ['collapsed_experts', 'max_shared_share']
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = [(n, m) for n, m in model.named_modules() if isinstance(m, ExtractionLayer)]
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._stats: dict[str, dict[str, Tensor]] = {}

    def update(self) -> None:
        """Add the last forward call of every layer."""
        for name, layer in self.layers:
            out, weights = layer.moe.last_expert_outputs, layer.moe.last_weights
            if out is None or weights is None:
                continue
            out = out.double()
            st = self._stats.setdefault(
                name,
                {
                    "zeros": torch.zeros(out.shape[0], dtype=torch.float64),
                    "sum": torch.zeros(out.shape[0], dtype=torch.float64),
                    "sumsq": torch.zeros(out.shape[0], dtype=torch.float64),
                    "count": torch.zeros((), dtype=torch.float64),
                    "mass": torch.zeros(weights.shape[0], weights.shape[2], dtype=torch.float64),
                    "rows": torch.zeros((), dtype=torch.float64),
                },
            )
            st["zeros"] += (out == 0).double().sum((1, 2)).cpu()
            st["sum"] += out.sum((1, 2)).cpu()
            st["sumsq"] += out.square().sum((1, 2)).cpu()
            st["count"] += out.shape[1] * out.shape[2]
            st["mass"] += weights.double().sum(1).cpu()
            st["rows"] += weights.shape[1]

    def compute(self) -> dict[str, LayerHealth]:
        """Per layer path, its :class:`LayerHealth`."""
        result = {}
        for name, layer in self.layers:
            st = self._stats.get(name)
            if st is None:
                continue
            count = st["count"].clamp_min(1.0)
            mean = st["sum"] / count
            std = (st["sumsq"] / count - mean.square()).clamp_min(0.0).sqrt()
            mass = st["mass"] / st["rows"].clamp_min(1.0)
            owner = torch.tensor(layer.expert_owner)
            shared = owner < 0
            shared_mass = mass[:, shared]
            share = shared_mass / shared_mass.sum(0, keepdim=True).clamp_min(1e-12)
            own = torch.stack(
                [mass[g, owner == g].sum() if bool((owner == g).any()) else torch.tensor(math.nan, dtype=torch.float64)
                 for g in range(mass.shape[0])]
            )
            health = LayerHealth(
                gate_names=list(layer.gate_names),
                expert_names=list(layer.expert_names),
                expert_owner=list(layer.expert_owner),
                zero_rate=st["zeros"] / count,
                out_mean=mean,
                out_std=std,
                gate_mass=mass,
                shared_share=share,
                own_mass=own,
            )
            health.summary = _layer_summary(health, layer.scope.cpu())
            result[name] = health
        return result


def plot_expert_health(health: dict[str, LayerHealth], path: str | Path, title: str = "") -> Path:
    """Save heatmaps (gate mass per gate and expert, zero-activation rate per expert) for every layer.

    Uses a bare ``matplotlib.figure.Figure`` (the Agg canvas), so no GUI backend or global pyplot state is
    touched.

    Args:
        health: the result of :meth:`ExpertHealth.compute`.
        path: output image file (``.png``).
        title: figure title.

    Returns:
        The written path.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = list(health.items())
    widest = max((len(h.expert_names) for _, h in layers), default=4)
    fig = Figure(figsize=(5 + 0.45 * widest, 3.2 * max(len(layers), 1)))
    for i, (name, h) in enumerate(layers):
        ax = fig.add_subplot(len(layers), 1, i + 1)
        data = torch.cat([h.gate_mass, h.zero_rate.unsqueeze(0)]).numpy()
        im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_yticks(range(len(h.gate_names) + 1), [*h.gate_names, "zero rate"])
        ax.set_xticks(range(len(h.expert_names)), h.expert_names, rotation=60, ha="right", fontsize=7)
        ax.axhline(len(h.gate_names) - 0.5, color="white", lw=2)
        ax.set_title(f"{name}: gate mass per gate (rows) and expert zero-activation rate", fontsize=9)
        for (r, c), v in zip(((r, c) for r in range(data.shape[0]) for c in range(data.shape[1])), data.flatten()):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
        fig.colorbar(im, ax=ax, fraction=0.02)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
