"""Callbacks for MoE training: expert-load monitoring with plots, and auxiliary-loss-free bias balancing."""

from __future__ import annotations

import os
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from domain_moe.core.balancing import BiasBalancer, all_reduce_counts
from domain_moe.training.task import MoETask, named_moe_layers

__all__ = ["ExpertBiasCallback", "ExpertLoadMonitor"]


class ExpertLoadMonitor(L.Callback):
    """Records each MoE layer's expert load during training, plots it and warns about collapsed experts.

    After every training batch the per-expert counts of each layer's last call (``last_aux.counts``)
    are added to a window; every ``every_n_steps`` batches the window becomes one record: the load
    share of each expert (its fraction of the layer's routed assignments, summed over data-parallel
    ranks). Each record is logged as ``expert_load/<layer>/<expert>`` and kept in :attr:`history`.

    Collapse rule: after ``warmup_steps`` optimizer steps, an expert whose share in a record is below
    ``collapse_threshold / E`` (that fraction of the uniform share ``1 / E``) is collapsed, and a
    ``UserWarning`` names the layer and the expert (once per expert and fit).

    At the end of ``fit`` the history is saved as a PNG (one panel per layer, one line per expert, or a
    heatmap for more than 16 experts) to ``<trainer.log_dir>/<filename>`` (the logger's directory, or
    ``trainer.default_root_dir`` without a logger); the path is kept in :attr:`plot_path`. The history
    is part of the callback's checkpoint state, so a resumed run continues the same plot.

    Args:
        every_n_steps: training batches per record.
        warmup_steps: optimizer steps before collapse checks start.
        collapse_threshold: collapse threshold as a fraction of the uniform share, in ``[0, 1)``
            (``0`` disables the warning).
        log_shares: log the shares through the LightningModule's logger.
        plot: save the PNG at the end of ``fit``.
        filename: PNG file name inside the log directory.

    Example:
        >>> monitor = ExpertLoadMonitor(every_n_steps=5, warmup_steps=20, collapse_threshold=0.1)
        >>> monitor.history
        {}
    """

    def __init__(
        self,
        every_n_steps: int = 10,
        warmup_steps: int = 50,
        collapse_threshold: float = 0.1,
        log_shares: bool = True,
        plot: bool = True,
        filename: str = "expert_load.png",
    ) -> None:
        super().__init__()
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"ExpertLoadMonitor: every_n_steps must be a positive int, got {every_n_steps!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"ExpertLoadMonitor: warmup_steps must be an int >= 0, got {warmup_steps!r}")
        if not 0.0 <= collapse_threshold < 1.0:
            raise ValueError(f"ExpertLoadMonitor: collapse_threshold must be in [0, 1), got {collapse_threshold!r}")
        if not filename.lower().endswith(".png"):
            raise ValueError(f"ExpertLoadMonitor: filename must end with .png, got {filename!r}")
        self.every_n_steps = every_n_steps
        self.warmup_steps = warmup_steps
        self.collapse_threshold = collapse_threshold
        self.log_shares = log_shares
        self.plot = plot
        self.filename = filename
        #: Per layer: ``{"step": [global step per record], "share": [[share per expert] per record]}``.
        self.history: dict[str, dict[str, list[Any]]] = {}
        self.plot_path: str | None = None
        self._window: dict[str, Tensor] = {}
        self._batches = 0
        self._warned: set[tuple[str, int]] = set()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start a fresh window (the history carries over, e.g. from a resumed checkpoint)."""
        self._window = {}
        self._batches = 0
        self._warned = set()
        self.plot_path = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Add the batch's per-expert counts to the window; record it every ``every_n_steps`` batches."""
        # Same layer names as MoETask's statistics: paths inside the injected network.
        root = pl_module.model if isinstance(pl_module, MoETask) else pl_module
        for name, layer in named_moe_layers(root):
            aux = layer.last_aux
            if aux is None:
                continue
            # Accumulate on the device; the host only sees the window at record time.
            counts = aux.counts.detach().to(torch.float64)
            window = self._window.get(name)
            self._window[name] = counts if window is None else window + counts
        self._batches += 1
        if self._batches % self.every_n_steps == 0:
            self._record(trainer, pl_module)

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = int(trainer.global_step)
        shares: dict[str, Tensor] = {}
        for name, window in self._window.items():
            counts = all_reduce_counts(window)
            shares[name] = (counts / counts.sum().clamp_min(1.0)).cpu()
        self._window = {}
        for name, share in shares.items():
            entry = self.history.setdefault(name, {"step": [], "share": []})
            entry["step"].append(step)
            entry["share"].append(share.tolist())
            if self.log_shares:
                for expert, value in enumerate(share.tolist()):
                    pl_module.log(f"expert_load/{name}/{expert}", value, on_step=True, on_epoch=False)
            if step >= self.warmup_steps and self.collapse_threshold > 0:
                self._check_collapse(name, share, step)

    def _check_collapse(self, name: str, share: Tensor, step: int) -> None:
        num_experts = share.numel()
        limit = self.collapse_threshold / num_experts
        for expert in (share < limit).nonzero().flatten().tolist():
            if (name, expert) in self._warned:
                continue
            self._warned.add((name, expert))
            _warn_rank_zero(
                f"ExpertLoadMonitor: expert {expert} of MoE layer '{name}' has collapsed: it received "
                f"{share[expert].item():.3%} of the routed assignments over the last {self.every_n_steps} "
                f"batches at step {step} (uniform share {1 / num_experts:.3%}, threshold {limit:.3%}). "
                "Consider a larger balance_coef, bias balancing (ExpertBiasCallback) or router jitter."
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the plot of the load history."""
        if not self.plot or not self.history:
            return
        # `log_dir` broadcasts from rank 0, so every rank must ask for it.
        directory = trainer.log_dir or trainer.default_root_dir
        if trainer.is_global_zero:
            self.plot_path = self.save_plot(os.path.join(directory, self.filename))

    def save_plot(self, path: str) -> str:
        """Save the load history as a PNG; one panel per layer.

        Args:
            path: output file.

        Returns:
            ``path``.
        """
        # An explicit Agg canvas instead of pyplot: no global backend switch (notebooks keep theirs).
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = sorted(self.history)
        fig = Figure(figsize=(8, 2.6 * len(names)))
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(names), 1, squeeze=False)
        for ax, name in zip(axes[:, 0], names):
            steps = self.history[name]["step"]
            share = torch.tensor(self.history[name]["share"])
            num_experts = share.shape[1]
            if num_experts <= 16:
                for expert in range(num_experts):
                    ax.plot(steps, share[:, expert].tolist(), label=str(expert), linewidth=1.2)
                ax.axhline(1.0 / num_experts, color="black", linestyle="--", linewidth=0.8, label="uniform")
                ax.set_ylabel("load share")
                ax.legend(title="expert", fontsize="x-small", ncol=min(num_experts + 1, 9), loc="upper right")
            else:
                image = ax.imshow(
                    share.T.numpy(),
                    aspect="auto",
                    origin="lower",
                    interpolation="nearest",
                    extent=(steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1, -0.5, num_experts - 0.5),
                )
                ax.set_ylabel("expert")
                fig.colorbar(image, ax=ax, label="load share")
            ax.set_title(f"MoE layer {name}")
        axes[-1, 0].set_xlabel("optimizer step")
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=100)
        return path

    def state_dict(self) -> dict[str, Any]:
        """The load history, saved in checkpoints."""
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the load history of a checkpoint."""
        self.history = state_dict.get("history", {})


@rank_zero_only
def _warn_rank_zero(message: str) -> None:
    # stacklevel points at Lightning's hook call, the closest place a user recognises.
    warnings.warn(message, UserWarning, stacklevel=3)


class ExpertBiasCallback(L.Callback):
    """Auxiliary-loss-free load balancing (Wang et al., 2024; DeepSeek-V3) as a training callback.

    Routers built with ``bias_balancing=True`` accumulate the loads they select; right before every
    optimizer step this callback applies :class:`~domain_moe.core.balancing.BiasBalancer`: loads are
    summed over the data-parallel group, each bias moves by ``rate * sign(mean - load)`` (optionally
    centred) and the accumulators are cleared. With gradient accumulation the update happens once per
    optimizer step over all its micro-batches; with manual optimisation, once per ``optimizer.step()``.

    Args:
        rate: bias update speed ``gamma`` (1e-3 in DeepSeek-V3).
        centered: keep the biases at zero mean.

    Example:
        >>> callback = ExpertBiasCallback(rate=1e-3)
        >>> callback.balancer.rate
        0.001
    """

    def __init__(self, rate: float = 1e-3, centered: bool = True) -> None:
        super().__init__()
        self.balancer = BiasBalancer(rate=rate, centered=centered)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Warn when no router of the model has a selection bias to update."""
        has_bias = any(isinstance(getattr(m, "selection_bias", None), Tensor) for m in pl_module.modules())
        if not has_bias:
            _warn_rank_zero(
                "ExpertBiasCallback: the model has no router with bias_balancing=True, so the callback does "
                "nothing; build the routers with bias_balancing=True or remove the callback."
            )

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Apply the bias update once per optimizer step, over all its micro-batches."""
        self.balancer.step(pl_module)
