"""The combined objective of the expert-loss MoE: base loss of the mixture + gamma x expert-specific loss.

El Mahtout & Ziel (2026) train on "the base forecasting loss and expert-specific losses, allowing
expert-level prediction errors to jointly shape training alongside the global forecasting loss". The
paper body was not available; the three variants below are the spec's reconstruction (every
ambiguity is a switch):

* ``"uniform"``: ``(1/E) sum_k l(f_k(x), y)`` - every expert gets a gradient of order ``gamma / E``
  whatever its gate weight (in a plain MoE the gradient reaching expert ``k`` is ``g_k dl/dy_hat``, so a
  down-weighted expert starves).
* ``"gate"``: ``sum_k g_k(x) l(f_k(x), y)`` - the competitive loss of Jacobs et al. (1991); it also pulls
  gate mass towards the locally best expert.
* ``"masked"``: each expert is scored only on the samples of its mask ``M[B, E]`` (for example its
  calibration window: expert ``k`` sees the most recent ``D_k`` windows, see :func:`calibration_mask`),
  ``mean_k [sum_i M_ik l_ik / sum_i M_ik]`` over the experts whose mask is non-empty in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["BASE_LOSSES", "VARIANTS", "calibration_mask", "combined_loss", "expert_loss", "pointwise_loss"]

VARIANTS = ("uniform", "gate", "masked")
BASE_LOSSES = ("mae", "mse")


def pointwise_loss(pred: Tensor, target: Tensor, base: str = "mae") -> Tensor:
    """Per-sample loss averaged over the horizon: ``mean_h |pred - target|`` or its square.

    Shapes:
        - pred: ``[B, ..., H]`` (broadcast against ``target``)
        - target: ``[B, H]`` or broadcastable
        - output: ``pred.shape[:-1]``
    """
    if base not in BASE_LOSSES:
        raise ValueError(f"base_loss must be one of {BASE_LOSSES}, got {base!r}")
    diff = pred - target
    return (diff.abs() if base == "mae" else diff.square()).mean(-1)


def expert_loss(
    expert_y: Tensor,
    y: Tensor,
    gate: Tensor | None = None,
    mask: Tensor | None = None,
    variant: str = "uniform",
    base: str = "mae",
) -> Tensor:
    """The expert-specific loss ``L_exp`` (see the module docstring).

    Args:
        expert_y: each expert's forecast.
        y: the target.
        gate: gate weights, required by ``"gate"``.
        mask: boolean/0-1 sample-to-expert assignment, required by ``"masked"``.
        variant: one of :data:`VARIANTS`.
        base: ``"mae"`` or ``"mse"``.

    Shapes:
        - expert_y: ``[B, E, H]``
        - y: ``[B, H]``
        - gate, mask: ``[B, E]``
        - output: ``[]``

    Example:
        >>> expert_y = torch.tensor([[[1.0], [3.0]]])  # B=1, E=2, H=1
        >>> float(expert_loss(expert_y, torch.tensor([[2.0]])))
        1.0
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if expert_y.dim() != 3 or y.dim() != 2 or expert_y.shape[0] != y.shape[0] or expert_y.shape[2] != y.shape[1]:
        raise ValueError(f"expert_y must be [B, E, H] and y [B, H] with the same B and H, got "
                         f"{tuple(expert_y.shape)} and {tuple(y.shape)}")
    per = pointwise_loss(expert_y, y.unsqueeze(1), base)  # [B, E]
    if variant == "uniform":
        return per.mean()
    if variant == "gate":
        if gate is None or gate.shape != per.shape:
            raise ValueError(f"variant='gate' needs gate of shape {tuple(per.shape)}, got "
                             f"{None if gate is None else tuple(gate.shape)}")
        return (gate * per).sum(-1).mean()
    if mask is None or mask.shape != per.shape:
        raise ValueError(f"variant='masked' needs mask of shape {tuple(per.shape)}, got "
                         f"{None if mask is None else tuple(mask.shape)}")
    m = mask.to(per.dtype)
    count = m.sum(0)
    active = count > 0
    if not bool(active.any()):
        return per.sum() * 0.0
    per_expert = (m * per).sum(0)[active] / count[active]
    return per_expert.mean()


def combined_loss(
    y_hat: Tensor,
    expert_y: Tensor,
    gate: Tensor,
    y: Tensor,
    gamma: float = 0.0,
    variant: str = "uniform",
    base: str = "mae",
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``l(y_hat, y) + gamma * L_exp``; at ``gamma = 0`` exactly the base loss (the plain MoE).

    Args:
        y_hat: the mixed forecast.
        expert_y: each expert's forecast.
        gate: gate weights.
        y: the target.
        gamma: weight of the expert-specific loss (``>= 0``).
        variant: expert-loss variant.
        base: ``"mae"`` or ``"mse"``.
        mask: sample-to-expert mask for ``"masked"``.

    Returns:
        ``(total, {"base": ..., "expert": ...})``.

    Shapes:
        - y_hat, y: ``[B, H]``
        - expert_y: ``[B, E, H]``
        - gate, mask: ``[B, E]``
    """
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0:
        raise ValueError(f"gamma must be a float >= 0, got {gamma!r}")
    if y_hat.shape != y.shape:
        raise ValueError(f"y_hat and y must have the same shape [B, H], got {tuple(y_hat.shape)} and {tuple(y.shape)}")
    base_value = pointwise_loss(y_hat, y, base).mean()
    if gamma == 0:
        return base_value, {"base": base_value.detach(), "expert": base_value.new_zeros(())}
    exp_value = expert_loss(expert_y, y, gate, mask, variant, base)
    return base_value + gamma * exp_value, {"base": base_value.detach(), "expert": exp_value.detach()}


def calibration_mask(age: Tensor, windows: Sequence[int | None]) -> Tensor:
    """Calibration-window masks: expert ``k`` sees the samples with ``age < windows[k]`` (``None`` = all).

    ``age`` counts steps between a window's last target and the end of its series' training part
    (0 = the newest window), as :class:`~domain_moe.timeseries.data.WindowDataset` provides.

    Shapes:
        - age: ``[B]``
        - output: ``[B, E]`` (bool)

    Example:
        >>> calibration_mask(torch.tensor([0, 5, 30]), [None, 10, 1]).tolist()
        [[True, True, True], [True, True, False], [True, False, False]]
    """
    if age.dim() != 1:
        raise ValueError(f"age must be [B], got {tuple(age.shape)}")
    cols = []
    for k, w in enumerate(windows):
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ValueError(f"windows[{k}] must be None or an int >= 1, got {w!r}")
        cols.append(torch.ones_like(age, dtype=torch.bool) if w is None else age < w)
    return torch.stack(cols, -1)
