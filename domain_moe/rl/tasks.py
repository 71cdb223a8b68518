"""``InContextRLTask``: action imitation on learning histories plus T2MIR's routing losses."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from domain_moe.rl.evaluation import in_context_returns
from domain_moe.training.task import MoETask

__all__ = ["InContextRLTask", "action_loss"]


def action_loss(out: Tensor, targets: Tensor, discrete: bool) -> Tensor:
    """Cross-entropy on discrete actions, Gaussian negative log-likelihood on continuous ones.

    A stochastic head is what lets the distilled policy explore like its source did (a deterministic
    regression onto noisy actions averages the noise away).

    Shapes:
        - out: ``[B, N, A]`` logits or ``[B, N, 2A]`` (mean, log-std)
        - targets: ``[B, N]`` int64 or ``[B, N, A]``
    """
    if discrete:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1))
    mean, log_std = out.chunk(2, -1)
    return (0.5 * ((targets - mean) / log_std.exp()).square() + log_std).sum(-1).mean()


class InContextRLTask(MoETask):
    """Algorithm Distillation with T2MIR (Wu et al., NeurIPS 2025): ``L = L_act + L_bal + w_con L_con``.

    ``L_act`` imitates the source's action at every state token; ``L_bal`` is the token MoE's importance and
    load loss (collected from the core layers); ``L_con`` the contrastive task-routing loss of the T2MIR
    layers. After every optimizer step the EMA task gates move toward the online ones (no gradient
    accumulation: the EMA follows optimizer steps). Without a ``scheduler`` the learning rate warms up
    linearly for ``warmup_steps`` and then follows a cosine to 0 over the run's optimizer steps.

    ``test`` runs the in-context evaluation on the DataModule's evaluation goals and logs
    ``test/return_ep<i>``, ``test/first_return`` and ``test/final_return`` (mean of the last three episodes).

    Args:
        model: an :class:`~domain_moe.rl.models.ADTransformer`.
        optimizer: ``params -> Optimizer``.
        scheduler: ``optimizer -> LRScheduler`` or ``None`` for warm-up + cosine.
        scheduler_interval: ``"step"`` or ``"epoch"`` (for a given ``scheduler``).
        aux_weight: factor on the summed auxiliary losses.
        contrastive_weight: ``w_con``.
        warmup_steps: warm-up of the default schedule.
        eval_episodes: in-context episodes of ``test``.
        eval_rollouts: runs per evaluation goal.
        sample_actions: sample (else take the mode) during evaluation.
        eval_seed: seed of the evaluation.

    Example:
        >>> from domain_moe.rl.models import ADTransformer
        >>> task = InContextRLTask(ADTransformer(state_dim=16, action_dim=5))
        >>> task.contrastive_weight
        0.01
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "step",
        aux_weight: float = 1.0,
        contrastive_weight: float = 0.01,
        warmup_steps: int = 100,
        eval_episodes: int = 8,
        eval_rollouts: int = 1,
        sample_actions: bool = True,
        eval_seed: int = 0,
    ) -> None:
        super().__init__(model, optimizer, scheduler, scheduler_interval, aux_weight)
        if contrastive_weight < 0:
            raise ValueError(f"InContextRLTask: contrastive_weight must be >= 0, got {contrastive_weight!r}")
        self.contrastive_weight = float(contrastive_weight)
        self.warmup_steps = int(warmup_steps)
        self.eval_episodes, self.eval_rollouts = int(eval_episodes), int(eval_rollouts)
        self.sample_actions, self.eval_seed = bool(sample_actions), int(eval_seed)

    def compute_loss(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Action loss of one batch of context views."""
        out = self.model(batch["states"], batch["actions"], batch["rewards"], batch["timesteps"])
        return action_loss(out, batch["targets"], self.model.discrete_actions), {"out": out}

    def aux_loss(self) -> Tensor:
        """Token-MoE balance losses plus ``contrastive_weight`` times the contrastive routing loss."""
        aux = super().aux_loss()
        con = self.model.contrastive_loss() if self.training and hasattr(self.model, "contrastive_loss") else None
        if con is not None:
            self.log("train/contrastive_loss", con.detach())
            if self.contrastive_weight:
                aux = aux + self.contrastive_weight * con.to(aux.device)
        return aux

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Move the EMA task gates (once per optimizer step)."""
        if hasattr(self.model, "ema_update"):
            self.model.ema_update()

    def configure_optimizers(self) -> Any:
        """The injected optimizer; warm-up + cosine per step when no scheduler is given."""
        if self.scheduler is not None:
            return super().configure_optimizers()
        optimizer = self.optimizer(self.parameters())
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(self.warmup_steps, total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / max(warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, total - warmup) / max(total - warmup, 1)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """In-context evaluation on the batch's goals; logs the return of every episode."""
        dm = self.trainer.datamodule
        goals = batch["goals"].cpu().numpy()
        if dm.discrete_actions:
            goals = goals.astype(np.int64)
        returns = in_context_returns(
            self.model,
            dm.env_id,
            goals,
            dm.env_kwargs,
            self.eval_episodes,
            dm.context_episodes,
            sample=self.sample_actions,
            sort_context=dm.window == "sorted",
            rollouts_per_task=self.eval_rollouts,
            seed=self.eval_seed,
        )
        curve = returns.mean(0)
        for ep, value in enumerate(curve):
            self.log(f"test/return_ep{ep + 1}", float(value))
        self.log("test/first_return", float(curve[0]))
        final = float(curve[-3:].mean())
        self.log("test/final_return", final)
        return torch.tensor(final)
