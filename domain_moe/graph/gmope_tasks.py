"""Lightning tasks of GMoPE: contrastive pre-training over several graphs, then prompt-only few-shot tuning.

Wang et al., "GMoPE: A Prompt-Expert Mixture Framework for Graph Foundation Models" (arXiv 2511.03251); the
training recipe is our reconstruction (``specs/graph.md`` §2, §4.3). Both tasks subclass
:class:`~domain_moe.graph.tasks.NodeClassificationTask`, so the graph CLI runs them and links the DataModule's
``num_features``/``num_classes``/``metric`` into them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool

from domain_moe.core import losses
from domain_moe.graph.checks import check_graph
from domain_moe.graph.models.gmope import GMoPE, TuneMode
from domain_moe.graph.tasks import NodeClassificationTask, node_metric

__all__ = ["GMoPEPretrainTask", "GMoPEPromptTask", "load_backbone", "load_entropy"]


def _check_aux_weight(owner: str, aux_weight: float) -> float:
    if isinstance(aux_weight, bool) or not isinstance(aux_weight, (int, float)) or aux_weight < 0:
        raise ValueError(f"{owner}: aux_weight must be a float >= 0, got {aux_weight!r}")
    return float(aux_weight)


def load_backbone(
    model: GMoPE, path: str | os.PathLike[str], *, prompts: bool = True, router: bool = True
) -> list[str]:
    """Load a pre-trained GMoPE encoder into ``model`` (the head is never loaded).

    Accepts a Lightning checkpoint of :class:`GMoPEPretrainTask` (``state_dict`` keys ``model.encoder.*``) or a
    plain ``GMoPE.state_dict()``. The expert GNNs must match exactly; prompts and router are loaded when asked
    and present with the same shapes (a random router has none).

    Args:
        model: the model to fill.
        path: checkpoint file.
        prompts: also load the pre-trained prompts.
        router: also load the pre-trained router.

    Returns:
        The names of the loaded tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pre-trained GMoPE checkpoint not found at '{path}'; train one with GMoPEPretrainTask "
            "(domain-moe-graph fit --config configs/graph/gmope_pretrain_quickstart.yaml) or set backbone_checkpoint"
        )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"load_backbone: '{path}' holds no state dict")
    if any(k.startswith("model.") for k in state):
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    own = model.state_dict()
    wanted = [k for k in own if k.startswith("encoder.experts.")]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(f"load_backbone: '{path}' lacks backbone tensors {missing[:4]}... (is it a GMoPE checkpoint?)")
    optional = [
        k for k in own if (prompts and k.startswith("encoder.prompt.")) or (router and k.startswith("encoder.router."))
    ]
    chosen = wanted + [k for k in optional if k in state]
    for k in chosen:
        if state[k].shape != own[k].shape:
            raise ValueError(
                f"load_backbone: '{k}' has shape {tuple(state[k].shape)} in '{path}' but {tuple(own[k].shape)} in the "
                "model; build the model with the pre-training's num_features/num_experts/hidden_channels/num_layers"
            )
    with torch.no_grad():
        for k in chosen:
            own[k].copy_(state[k])
    return chosen


class GMoPEPretrainTask(NodeClassificationTask):
    """Contrastive pre-training of a :class:`~domain_moe.graph.models.GMoPE` encoder on ego-net view pairs.

    Each batch is a pair of ``Batch``es (two augmented views of the same ego-nets, from
    :class:`~domain_moe.graph.pretraining.EgoNetPretrainDataModule`). Each view is embedded by the prompt-expert
    mixture, read out per ego-net (the centre node, or the mean) and projected by a 2-layer MLP; the loss is the
    symmetric InfoNCE (NT-Xent, core :func:`~domain_moe.core.losses.info_nce`) between the views, plus ``aux_weight``
    times the
    mixture's auxiliary losses (prompt orthogonality, optional balance), averaged over the two forwards. Logs
    ``<stage>/loss``, ``<stage>/metric`` (how often a view's nearest partner is its own pair), ``train/aux_loss``,
    ``<stage>/prompt_cos`` (mean absolute cosine between prompts) and ``<stage>/load_entropy`` (normalised entropy of
    the mean gate).

    Args:
        model: a :class:`GMoPE`.
        optimizer: ``params -> Optimizer`` (over the model and the projector).
        metric: linked from the DataModule (``"accuracy"``).
        num_classes: linked from the DataModule (unused).
        temperature: InfoNCE temperature.
        projection_channels: width of the projector's output.
        aux_weight: factor on the mixture's auxiliary losses (their own coefficients apply first).
        readout: ``"center"`` (the centre node's embedding: with ``hops`` message-passing layers it sees exactly
            its ego-net, and it is what node classification reads later) or ``"mean"`` (GraphCL's mean pooling).

    Example:
        >>> task = GMoPEPretrainTask(GMoPE(num_features=8, num_classes=1, num_experts=2, hidden_channels=16))
        >>> task.projector[0].in_features
        16
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        metric: Literal["accuracy", "auroc"] = "accuracy",
        num_classes: int | None = None,
        temperature: float = 0.2,
        projection_channels: int = 64,
        aux_weight: float = 1.0,
        readout: Literal["center", "mean"] = "center",
    ) -> None:
        super().__init__(model, optimizer=optimizer, metric=metric, num_classes=num_classes)
        if not isinstance(model, GMoPE):
            raise TypeError(f"GMoPEPretrainTask: model must be a GMoPE, got {type(model).__name__}")
        if readout not in ("center", "mean"):
            raise ValueError(f"GMoPEPretrainTask: readout must be 'center' or 'mean', got {readout!r}")
        self.readout = readout
        if not temperature > 0:
            raise ValueError(f"GMoPEPretrainTask: temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.aux_weight = _check_aux_weight("GMoPEPretrainTask", aux_weight)
        hidden = model.hidden_channels
        self.projector = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, projection_channels))

    @property
    def gmope(self) -> GMoPE:
        """The injected model, typed."""
        assert isinstance(self.model, GMoPE)
        return self.model

    def encode(self, view: Any) -> tuple[Tensor, Tensor]:
        """Projected, pooled embedding ``[B, P]`` of each ego-net of a view, and the forward's auxiliary loss."""
        check_graph(view.x, view.edge_index, where=type(self).__name__)
        self.clear_aux()
        h = self.gmope.embed(view.x, view.edge_index)
        return self.projector(self.pool(h, view)), self.aux_loss().to(h.device)

    def pool(self, h: Tensor, view: Any) -> Tensor:
        """One embedding per ego-net of a view (``readout``): ``[N, H]`` → ``[B, H]``."""
        if self.readout == "mean":
            return global_mean_pool(h, view.batch, size=view.num_graphs)
        center = torch.as_tensor(view.center, device=h.device).view(-1)
        return h[view.ptr[:-1] + center]

    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Symmetric InfoNCE between the two views, plus the weighted auxiliary losses."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                f"{type(self).__name__}: a batch must be a pair of view Batches (EgoNetPretrainDataModule), "
                f"got {type(batch).__name__}"
            )
        first, second = batch
        if first.num_graphs != second.num_graphs:
            raise ValueError(f"{type(self).__name__}: the views hold {first.num_graphs} and {second.num_graphs} graphs")
        z1, aux1 = self.encode(first)
        z2, aux2 = self.encode(second)
        ssl = 0.5 * (
            losses.info_nce(z1, z2, temperature=self.temperature)
            + losses.info_nce(z2, z1, temperature=self.temperature)
        )
        aux = 0.5 * (aux1 + aux2)
        with torch.no_grad():
            sim = F.normalize(z1.float(), dim=-1) @ F.normalize(z2.float(), dim=-1).T
            match = (sim.argmax(-1) == torch.arange(sim.size(0), device=sim.device)).float().mean()
        n = int(first.num_graphs)
        self.log_metrics(stage, ssl.detach(), match, n)
        self.log(f"{stage}/aux_loss", aux.detach(), batch_size=n)
        self.log(f"{stage}/prompt_cos", self.gmope.prompts.mean_abs_cosine(), batch_size=n)
        load = self.gmope.expert_load()
        if load is not None and self.gmope.num_experts > 1:
            self.log(f"{stage}/load_entropy", load_entropy(load), batch_size=n)
        return ssl + self.aux_weight * aux, {"z1": z1, "z2": z2}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Loss on one batch of view pairs (already holding the auxiliary term)."""
        loss, _ = self.compute_loss(batch, "train")
        if self._should_log_moe_statistics():
            self.log_moe_statistics()
        return loss

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Read-out embeddings ``[B, H]`` of the first view."""
        view = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.pool(self.gmope.embed(view.x, view.edge_index), view)


def load_entropy(load: Tensor) -> Tensor:
    """Entropy of a distribution over ``E`` experts divided by ``log E`` (1 = balanced, 0 = one expert).

    Example:
        >>> round(float(load_entropy(torch.tensor([0.25, 0.25, 0.25, 0.25]))), 4)
        1.0
        >>> abs(float(load_entropy(torch.tensor([1.0, 0.0]))))
        0.0
    """
    p = load.float().clamp_min(0)
    p = p / p.sum().clamp_min(1e-12)
    return -(p * p.clamp_min(1e-12).log()).sum() / torch.log(torch.tensor(float(p.numel())))


class GMoPEPromptTask(NodeClassificationTask):
    """Prompt-only (or full) fine-tuning of a pre-trained :class:`~domain_moe.graph.models.GMoPE` on node labels.

    ``tune="prompt"``: GMoPE's adaptation; only the prompts, the router and the head train, the expert GNNs are
    frozen (``requires_grad=False``, kept in ``eval()``, left out of the optimiser, so they stay bit-identical).
    ``tune="prompt_head"``: prompts and head only (the router frozen as well). ``tune="full"``: pre-train + full
    fine-tuning. ``tune="head"``: a linear probe. The pre-trained encoder is read
    from ``backbone_checkpoint`` (a :class:`GMoPEPretrainTask` checkpoint or a ``GMoPE.state_dict()``) when the
    task is built. The loss is cross-entropy on ``train_mask`` plus ``aux_weight`` times the mixture's auxiliary
    losses (0 by default); logs as :class:`NodeClassificationTask`, plus ``<stage>/prompt_cos`` and
    ``<stage>/load_entropy``.

    Args:
        model: a :class:`GMoPE` built like the pre-trained one (``num_classes`` of the target).
        optimizer: ``params -> Optimizer`` (over the tuned parameters only).
        metric: ``"accuracy"`` or ``"auroc"`` (linked from the DataModule).
        num_classes: linked from the DataModule (informational).
        backbone_checkpoint: path of the pre-trained weights, or ``None`` (random backbone).
        tune: ``"prompt"``, ``"prompt_head"``, ``"full"`` or ``"head"``.
        aux_weight: factor on the mixture's auxiliary losses during tuning.
        load_prompts: start from the pre-trained prompts (else their fresh initialisation).

    Example:
        >>> task = GMoPEPromptTask(GMoPE(num_features=8, num_classes=3, num_experts=2, hidden_channels=16))
        >>> task.num_trainable, sum(p.numel() for p in task.model.parameters())
        (117, 949)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        metric: Literal["accuracy", "auroc"] = "accuracy",
        num_classes: int | None = None,
        backbone_checkpoint: str | None = None,
        tune: TuneMode = "prompt",
        aux_weight: float = 0.0,
        load_prompts: bool = True,
    ) -> None:
        super().__init__(model, optimizer=optimizer, metric=metric, num_classes=num_classes)
        if not isinstance(model, GMoPE):
            raise TypeError(f"GMoPEPromptTask: model must be a GMoPE, got {type(model).__name__}")
        if tune not in ("prompt", "prompt_head", "full", "head"):
            raise ValueError(f"GMoPEPromptTask: tune must be 'prompt', 'prompt_head', 'full' or 'head', got {tune!r}")
        self.aux_weight = _check_aux_weight("GMoPEPromptTask", aux_weight)
        self.tune = tune
        self.backbone_checkpoint = backbone_checkpoint
        if backbone_checkpoint is not None:
            load_backbone(model, backbone_checkpoint, prompts=load_prompts)
        self.num_trainable = model.freeze(tune)

    @property
    def gmope(self) -> GMoPE:
        """The injected model, typed."""
        assert isinstance(self.model, GMoPE)
        return self.model

    def configure_optimizers(self) -> Any:
        """The optimiser over the tuned parameters only."""
        return self.optimizer(self.gmope.tunable_parameters(self.tune))

    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Cross-entropy and metric on the stage's nodes, plus the weighted auxiliary losses."""
        check_graph(batch.x, batch.edge_index, batch.y, where=type(self).__name__)
        mask = self._mask(batch, stage)
        if stage == "train" and self.tune != "full":
            self.gmope.backbone.eval()  # no dropout in a frozen backbone (Lightning calls train() every epoch)
        self.clear_aux()
        logits = self.gmope(batch.x, batch.edge_index)
        loss = F.cross_entropy(logits[mask], batch.y[mask])
        value = node_metric(logits[mask].detach().softmax(-1), batch.y[mask], self.metric)
        n = int(mask.sum())
        self.log_metrics(stage, loss, value, n)
        self.log(f"{stage}/prompt_cos", self.gmope.prompts.mean_abs_cosine(), batch_size=n)
        load = self.gmope.expert_load()
        if load is not None and self.gmope.num_experts > 1:
            self.log(f"{stage}/load_entropy", load_entropy(load), batch_size=n)
        if self.aux_weight > 0:
            loss = loss + self.aux_weight * self.aux_loss().to(loss.device)
        return loss, {"logits": logits}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Loss on the training nodes."""
        loss, _ = self.compute_loss(batch, "train")
        if self._should_log_moe_statistics():
            self.log_moe_statistics()
        return loss

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Class probabilities of every node."""
        return self.gmope(batch.x, batch.edge_index).softmax(-1)
