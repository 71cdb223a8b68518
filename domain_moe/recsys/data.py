"""Multi-task recommendation data: the ``RecBatch`` container and LightningDataModules.

* :class:`MMoESyntheticDataModule` — the exact synthetic generator of MMoE (Ma et al., KDD 2018, §4.2) with
  the constants PLE supplies (Tang et al., RecSys 2020); task correlation ``p`` is a parameter.
* :class:`HoMESyntheticDataModule` — a synthetic stress test with dense and sparse task groups and user ids
  (for GAUC), built to expose the three expert anomalies HoME targets (a reconstruction, see the spec).
* :class:`CensusIncomeDataModule` — UCI Census-Income (KDD) with the MMoE task groups.
* :class:`MovieLensDataModule` — MovieLens latest-small as a three-task recommender.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from domain_moe.utils.imports import require

L = require("lightning", extra="recsys", feature="domain_moe.recsys.data")

__all__ = [
    "TASK_TYPES",
    "CensusIncomeDataModule",
    "HoMESyntheticDataModule",
    "MMoESyntheticDataModule",
    "MovieLensDataModule",
    "RecBatch",
    "RecDataModule",
    "RecDataset",
    "home_synthetic",
    "mmoe_synthetic",
]

TASK_TYPES = ("binary", "regression")


@dataclass
class RecBatch:
    """One batch of multi-task recommendation data (TorchRec's ``Batch`` idea without the dependency).

    Attributes:
        labels: one label per task (0/1 for binary tasks, a float for regression tasks).
        dense: dense features, or ``None``.
        sparse: categorical ids per field, or ``None``.
        mask: PLE's sample-space indicator ``delta``: which labels count for which task (``None``: all).
        user: the user (grouping key of GAUC) of each row, or ``None``.

    Shapes:
        - labels, mask: ``[B, T]``
        - dense: ``[B, num_dense]``, sparse: ``[B, F]``, user: ``[B]``
    """

    labels: Tensor
    dense: Tensor | None = None
    sparse: Tensor | None = None
    mask: Tensor | None = None
    user: Tensor | None = None

    def __post_init__(self) -> None:
        if self.labels.dim() != 2:
            raise ValueError(f"RecBatch.labels must have shape [B, T], got {tuple(self.labels.shape)}")
        rows = self.labels.shape[0]
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value.shape[0] != rows:
                raise ValueError(f"RecBatch.{f.name} has {value.shape[0]} rows but labels has {rows}")
        if self.mask is not None and self.mask.shape != self.labels.shape:
            raise ValueError(
                f"RecBatch.mask must match labels {tuple(self.labels.shape)}, got {tuple(self.mask.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> RecBatch:
        """A copy on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return RecBatch(**{k: None if v is None else v.to(device) for k, v in moved.items()})


class RecDataset(Dataset[RecBatch]):
    """Row-indexable tensors that are fetched a whole batch at a time (``__getitems__``), as a :class:`RecBatch`.

    Args:
        labels: ``[N, T]`` labels.
        dense: ``[N, num_dense]`` float features or ``None``.
        sparse: ``[N, F]`` integer ids or ``None``.
        mask: ``[N, T]`` boolean sample-space mask or ``None``.
        user: ``[N]`` user ids or ``None``.
    """

    def __init__(
        self,
        labels: Tensor,
        dense: Tensor | None = None,
        sparse: Tensor | None = None,
        mask: Tensor | None = None,
        user: Tensor | None = None,
    ) -> None:
        self.data = RecBatch(labels.float(), dense, sparse, mask, user)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> RecBatch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> RecBatch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return RecBatch(
            **{f.name: None if (v := getattr(self.data, f.name)) is None else v[idx] for f in fields(self.data)}
        )


def _keep_batch(batch: RecBatch) -> RecBatch:
    """``collate_fn`` for datasets that already return whole batches."""
    return batch


class RecDataModule(L.LightningDataModule):
    """Base of the multi-task DataModules: seeded splits held as :class:`RecDataset` s.

    Subclasses implement :meth:`build` (the three splits) and set the metadata the CLI links into the model:
    ``task_names``, ``task_types``, ``cardinalities``, ``num_dense`` and optionally ``task_groups``.

    Args:
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (default ``4 * batch_size``).
        seed: seed of the data (generators, splits) and of the training order.
        num_workers: ``DataLoader`` workers.
    """

    task_names: list[str]
    task_types: list[str]
    cardinalities: list[int]
    num_dense: int
    task_groups: dict[str, list[str]] | None = None

    def __init__(self, batch_size: int = 256, eval_batch_size: int | None = None, seed: int = 0, num_workers: int = 0):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 4 * batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.splits: dict[str, RecDataset] | None = None

    def build(self) -> dict[str, RecDataset]:
        """The ``train``, ``val`` and ``test`` datasets."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build the splits once."""
        if self.splits is None:
            self.splits = self.build()

    def _loader(self, split: str, train: bool) -> DataLoader[RecBatch]:
        self.setup()
        assert self.splits is not None
        gen = torch.Generator().manual_seed(self.seed) if train else None
        dataset = self.splits[split]
        # A one-row last batch would break BatchNorm experts in training mode: drop it (only then).
        drop_last = train and len(dataset) % self.batch_size == 1
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            generator=gen,
            collate_fn=_keep_batch,
            num_workers=self.num_workers,
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader[RecBatch]:
        """Shuffled training batches (order fixed by ``seed``)."""
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader[RecBatch]:
        """Validation batches."""
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader[RecBatch]:
        """Test batches."""
        return self._loader("test", False)


# --------------------------------------------------------------------------------------------------------------
# MMoE synthetic benchmark


def mmoe_synthetic(
    num_samples: int,
    correlation: float,
    input_dim: int = 100,
    num_sines: int = 10,
    scale: float = 1.0,
    noise_std: float = 0.1,
    seed: int = 0,
    data_seed: int | None = None,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """MMoE's synthetic two-task regression data with task correlation ``p`` (Ma et al., KDD 2018, §4.2).

    ``w1 = c u1``, ``w2 = c (p u1 + sqrt(1 - p^2) u2)`` with orthonormal ``u1, u2``, ``x ~ N(0, I)`` and
    ``y_j = w_j^T x + sum_i sin(alpha_i w_j^T x + beta_i) + eps_j``, ``eps ~ N(0, 0.01)`` (std 0.1). The
    missing constants come from PLE: ``alpha_i, beta_i ~ N(0, 1)`` shared by both tasks, ``c = 1``,
    ``m = 10``. ``u1, u2`` come from the QR factorisation of a Gaussian matrix, so they are exactly
    orthonormal (a public re-implementation normalises by the squared norm, which breaks ``cos = p``).

    Args:
        num_samples: rows ``N``.
        correlation: ``p`` in ``[-1, 1]``.
        input_dim: ``d``.
        num_sines: ``m``.
        scale: ``c``.
        noise_std: standard deviation of ``eps`` (0.1, i.e. variance 0.01).
        seed: seed of ``x`` and the noise.
        data_seed: seed of the task weights ``u``, ``alpha``, ``beta`` (default ``seed``); splits of one data
            set share it and differ in ``seed``.

    Returns:
        ``(x [N, d], y [N, 2], info)`` with ``info`` holding ``w1``, ``w2``, ``alpha``, ``beta`` (float64).

    Example:
        >>> x, y, info = mmoe_synthetic(100, correlation=0.5, input_dim=8)
        >>> x.shape, y.shape, round(float(torch.nn.functional.cosine_similarity(info["w1"], info["w2"], dim=0)), 6)
        (torch.Size([100, 8]), torch.Size([100, 2]), 0.5)
    """
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [-1, 1], got {correlation!r}")
    if input_dim < 2:
        raise ValueError(f"input_dim must be >= 2 (two orthonormal directions), got {input_dim!r}")
    wgen = torch.Generator().manual_seed(seed if data_seed is None else data_seed)
    q, _ = torch.linalg.qr(torch.randn(input_dim, 2, generator=wgen, dtype=torch.float64))
    u1, u2 = q[:, 0], q[:, 1]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + math.sqrt(max(0.0, 1.0 - correlation**2)) * u2)
    alpha = torch.randn(num_sines, generator=wgen, dtype=torch.float64)
    beta = torch.randn(num_sines, generator=wgen, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 7919 if data_seed is None else seed)
    x = torch.randn(num_samples, input_dim, generator=gen, dtype=torch.float64)
    ys = []
    for w in (w1, w2):
        lin = x @ w
        ys.append(lin + torch.sin(alpha * lin.unsqueeze(1) + beta).sum(1))
    y = torch.stack(ys, 1) + noise_std * torch.randn(num_samples, 2, generator=gen, dtype=torch.float64)
    return x.float(), y.float(), {"w1": w1, "w2": w2, "alpha": alpha, "beta": beta}


class MMoESyntheticDataModule(RecDataModule):
    """MMoE's synthetic benchmark: two regression tasks whose correlation is ``correlation`` (the embedded default).

    Train, validation and test rows share one draw of the task weights (seeded by ``seed``) and use
    independent inputs. See :func:`mmoe_synthetic`.

    Args:
        correlation: task correlation ``p``.
        num_train: training rows.
        num_val: validation rows.
        num_test: test rows.
        input_dim: ``d`` (100 in MMoE's experiments).
        num_sines: ``m``.
        scale: ``c``.
        noise_std: label noise std.
        batch_size: training batch size.
        eval_batch_size: evaluation batch size.
        seed: seed of the data set and the training order.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = MMoESyntheticDataModule(correlation=0.9, num_train=64, num_val=16, num_test=16, batch_size=32)
        >>> dm.setup()
        >>> batch = next(iter(dm.train_dataloader()))
        >>> batch.dense.shape, batch.labels.shape, dm.task_types
        (torch.Size([32, 100]), torch.Size([32, 2]), ['regression', 'regression'])
    """

    def __init__(
        self,
        correlation: float = 0.5,
        num_train: int = 20_000,
        num_val: int = 2_000,
        num_test: int = 5_000,
        input_dim: int = 100,
        num_sines: int = 10,
        scale: float = 1.0,
        noise_std: float = 0.1,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, num_workers)
        if not -1.0 <= correlation <= 1.0:
            raise ValueError(f"MMoESyntheticDataModule: correlation must be in [-1, 1], got {correlation!r}")
        self.correlation = correlation
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.options = {"input_dim": input_dim, "num_sines": num_sines, "scale": scale, "noise_std": noise_std}
        self.task_names = ["task1", "task2"]
        self.task_types = ["regression", "regression"]
        self.cardinalities = []
        self.num_dense = input_dim

    def build(self) -> dict[str, RecDataset]:
        """Generate the three splits."""
        out = {}
        for i, (split, n) in enumerate(self.sizes.items()):
            seed = 1000 * self.seed + i + 1
            x, y, _ = mmoe_synthetic(n, self.correlation, seed=seed, data_seed=self.seed, **self.options)
            out[split] = RecDataset(y, dense=x)
        return out


# --------------------------------------------------------------------------------------------------------------
# HoME stress test

#: The stress test's tasks: name -> (group, positive rate); groups mirror KuaiRand's watch / interaction split.
HOME_TASKS: dict[str, tuple[str, float]] = {
    "click": ("global", 0.30),
    "effective_view": ("watch", 0.20),
    "long_view": ("watch", 0.08),
    "like": ("interact", 0.03),
    "comment": ("interact", 0.01),
    "follow": ("interact", 0.005),
}


def _bias_for_rate(score: np.ndarray, rate: float) -> float:
    """The logit bias ``b`` with ``mean(sigmoid(score + b)) = rate`` (bisection; the mean is monotone in ``b``)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if (1.0 / (1.0 + np.exp(-(score + mid)))).mean() < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def home_synthetic(
    num_samples: int = 200_000,
    num_users: int = 2_000,
    num_items: int = 1_000,
    latent_dim: int = 8,
    num_dense: int = 16,
    dense_noise: float = 0.3,
    signal: float = 2.5,
    within_group: float = 0.8,
    cross_group: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """A synthetic feed with dense and sparse task groups (HoME-style stress test; our reconstruction).

    Users and items have latent factors ``u, v``. Each task's score is a unit-variance mix of bilinear
    forms ``u^T M v`` and a squared term: a component shared by all tasks (weight ``cross_group``), one
    shared within the task's group (``within_group - cross_group``) and a task-specific rest, so scores
    correlate about ``within_group`` inside a group and ``cross_group`` across groups. ``click`` is its own
    global group. A per-task bias sets the positive rates of :data:`HOME_TASKS` (30% down to 0.5%), and
    labels are Bernoulli draws of ``sigmoid(signal * score + bias)``. Inputs: 8 categorical fields (user id,
    item id, user and item clusters, four context fields with a small effect) and ``num_dense`` noisy linear
    projections of ``[u, v]``.

    Args:
        num_samples: impressions ``N``.
        num_users: users (the GAUC groups).
        num_items: items.
        latent_dim: width of the latent factors.
        num_dense: dense features.
        dense_noise: std of the noise on the dense features.
        signal: scale of the scores before the bias (larger: easier tasks).
        within_group: target score correlation inside a group.
        cross_group: target score correlation across groups.
        seed: seed.

    Returns:
        A dict with ``dense [N, num_dense]``, ``sparse [N, 8]``, ``labels [N, 6]``, ``user [N]`` tensors,
        ``cardinalities``, ``task_names``, ``task_groups`` and the per-task ``scores`` correlation matrix.

    Example:
        >>> data = home_synthetic(num_samples=2000, num_users=50, num_items=40)
        >>> data["labels"].shape, data["sparse"].shape, data["task_names"][0]
        (torch.Size([2000, 6]), torch.Size([2000, 8]), 'click')
    """
    if not 0.0 <= cross_group <= within_group <= 1.0:
        raise ValueError(f"need 0 <= cross_group <= within_group <= 1, got {cross_group} and {within_group}")
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(num_users, latent_dim))
    items = rng.normal(size=(num_items, latent_dim))
    # Popular users/items appear more often (a Zipf-like head), as in real feeds.
    upop = rng.dirichlet(np.full(num_users, 0.5))
    ipop = rng.dirichlet(np.full(num_items, 0.3))
    uid = rng.choice(num_users, size=num_samples, p=upop)
    iid = rng.choice(num_items, size=num_samples, p=ipop)
    u, v = users[uid], items[iid]

    def component() -> np.ndarray:
        m = rng.normal(size=(latent_dim, latent_dim)) / latent_dim
        a = rng.normal(size=latent_dim) / math.sqrt(latent_dim)
        s = np.einsum("nd,de,ne->n", u, m, v) + 0.5 * (u @ a) ** 2
        return (s - s.mean()) / s.std()

    contexts = [24, 8, 16, 32]
    ctx = np.stack([rng.integers(0, c, size=num_samples) for c in contexts], 1)
    ctx_effect = sum(rng.normal(scale=0.15, size=c)[ctx[:, j]] for j, c in enumerate(contexts))
    shared = component()
    group_parts: dict[str, np.ndarray] = {}
    names = list(HOME_TASKS)
    labels, scores = [], []
    for name in names:
        group, rate = HOME_TASKS[name]
        if group not in group_parts:
            group_parts[group] = component()
        own = component()
        score = (
            math.sqrt(cross_group) * shared
            + math.sqrt(within_group - cross_group) * group_parts[group]
            + math.sqrt(1.0 - within_group) * own
        )
        scores.append(score)
        logit = signal * score + ctx_effect
        logit = logit + _bias_for_rate(logit, rate)
        labels.append(rng.random(num_samples) < 1.0 / (1.0 + np.exp(-logit)))
    centroids_u = rng.normal(size=(64, latent_dim))
    centroids_i = rng.normal(size=(64, latent_dim))
    sparse = np.stack(
        [uid, iid, (users @ centroids_u.T).argmax(1)[uid], (items @ centroids_i.T).argmax(1)[iid], *ctx.T], 1
    )
    proj = rng.normal(size=(2 * latent_dim, num_dense)) / math.sqrt(2 * latent_dim)
    dense = np.concatenate([u, v], 1) @ proj + rng.normal(scale=dense_noise, size=(num_samples, num_dense))
    groups: dict[str, list[str]] = {}
    for name in names:
        group = HOME_TASKS[name][0]
        if group != "global":
            groups.setdefault(group, []).append(name)
    return {
        "dense": torch.from_numpy(dense.astype(np.float32)),
        "sparse": torch.from_numpy(sparse.astype(np.int64)),
        "labels": torch.from_numpy(np.stack(labels, 1).astype(np.float32)),
        "user": torch.from_numpy(uid.astype(np.int64)),
        "cardinalities": [num_users, num_items, 64, 64, *contexts],
        "task_names": names,
        "task_groups": groups,
        "score_correlation": torch.from_numpy(np.corrcoef(np.stack(scores))),
    }


class HoMESyntheticDataModule(RecDataModule):
    """The HoME stress test: 6 binary tasks in a global, a dense watch and a sparse interaction group.

    Positive rates 30% (click), 20% / 8% (effective / long view), 3% / 1% / 0.5% (like / comment / follow);
    user ids are provided for GAUC. With ``conditional=True``, comment and follow only count on clicked
    impressions (PLE's sample-space masks ``delta``). See :func:`home_synthetic`.

    Args:
        num_samples: impressions (split 80/10/10 at random).
        num_users: users.
        num_items: items.
        signal: score scale (task difficulty).
        conditional: mask comment/follow labels to clicked impressions.
        batch_size: training batch size.
        eval_batch_size: evaluation batch size.
        seed: seed of the data and of the training order.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = HoMESyntheticDataModule(num_samples=1000, num_users=50, num_items=40, batch_size=64)
        >>> dm.task_groups
        {'watch': ['effective_view', 'long_view'], 'interact': ['like', 'comment', 'follow']}
    """

    def __init__(
        self,
        num_samples: int = 200_000,
        num_users: int = 2_000,
        num_items: int = 1_000,
        signal: float = 2.5,
        conditional: bool = False,
        batch_size: int = 1024,
        eval_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, num_workers)
        self.options = {"num_samples": num_samples, "num_users": num_users, "num_items": num_items, "signal": signal}
        self.conditional = conditional
        self.task_names = list(HOME_TASKS)
        self.task_types = ["binary"] * len(HOME_TASKS)
        self.cardinalities = [num_users, num_items, 64, 64, 24, 8, 16, 32]
        self.num_dense = 16
        self.task_groups = {"watch": ["effective_view", "long_view"], "interact": ["like", "comment", "follow"]}

    def build(self) -> dict[str, RecDataset]:
        """Generate and split 80/10/10."""
        data = home_synthetic(seed=self.seed, **self.options)
        n = data["labels"].shape[0]
        mask = None
        if self.conditional:
            mask = torch.ones(n, len(self.task_names), dtype=torch.bool)
            clicked = data["labels"][:, 0] > 0
            for name in ("comment", "follow"):
                mask[:, self.task_names.index(name)] = clicked
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        cuts = [0, int(0.8 * n), int(0.9 * n), n]
        out = {}
        for split, lo, hi in zip(("train", "val", "test"), cuts[:-1], cuts[1:]):
            idx = perm[lo:hi]
            out[split] = RecDataset(
                data["labels"][idx], data["dense"][idx], data["sparse"][idx],
                None if mask is None else mask[idx], data["user"][idx],
            )
        return out


# --------------------------------------------------------------------------------------------------------------
# Census-Income (KDD)

CENSUS_CONTINUOUS = (0, 5, 16, 17, 18, 30, 39)
CENSUS_WEIGHT = 24  # UCI "instance weight": a sampling weight, not a feature
CENSUS_EDUCATION, CENSUS_MARITAL, CENSUS_INCOME = 4, 7, 41
COLLEGE = frozenset(
    {
        "Bachelors degree(BA AB BS)",
        "Masters degree(MA MS MEng MEd MSW MBA)",
        "Prof school degree (MD DDS DVM LLB JD)",
        "Doctorate degree(PhD EdD)",
        "Associates degree-occup /vocational",
        "Associates degree-academic program",
    }
)


def _stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Index sets with the given fractions, stratified on the integer ``labels``."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    bounds = np.cumsum([0.0, *fractions])
    for value in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == value))
        cuts = np.round(bounds / bounds[-1] * idx.size).astype(int)
        for k in range(len(fractions)):
            parts[k].append(idx[cuts[k] : cuts[k + 1]])
    return [np.sort(np.concatenate(p)) for p in parts]


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} not found at {path}. Point root at the folder holding it (the shared data lives in "
        f"$DOMAIN_MOE_DATA/recsys/..., default ../shared/data/recsys relative to the repository)"
    )


class CensusIncomeDataModule(RecDataModule):
    """UCI Census-Income (KDD) with the MMoE task groups (Ma et al., KDD 2018, §6.3).

    Reads ``census-income.test.gz`` (99 762 rows, no header); only this split is available, so it is split
    ``split`` (stratified on the first task, seeded by ``split_seed`` so every model and seed sees the same
    split). Group 1: income > 50K and marital status "Never married"; group 2: education >= college
    (bachelor, master, professional, doctorate and both associate degrees) and never married. Column 24
    (the sampling weight) and the income column are dropped, as is each task's source column; the seven
    continuous columns are standardised with training statistics; every other column is categorical.

    Args:
        root: folder holding ``census-income.test.gz``.
        group: 1 (income, marital) or 2 (education, marital).
        split: train/val/test fractions.
        split_seed: seed of the split.
        batch_size: training batch size.
        eval_batch_size: evaluation batch size.
        seed: seed of the training order.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = CensusIncomeDataModule("../shared/data/recsys/census-income")  # doctest: +SKIP
        >>> dm.task_names, len(dm.cardinalities), dm.num_dense  # doctest: +SKIP
        (['income', 'marital'], 32, 7)
    """

    def __init__(
        self,
        root: str | Path,
        group: int = 1,
        split: Sequence[float] = (0.6, 0.2, 0.2),
        split_seed: int = 0,
        batch_size: int = 1024,
        eval_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, num_workers)
        if group not in (1, 2):
            raise ValueError(f"CensusIncomeDataModule: group must be 1 or 2, got {group!r}")
        if len(split) != 3 or any(f <= 0 for f in split):
            raise ValueError(f"CensusIncomeDataModule: split must be three positive fractions, got {split!r}")
        self.path = Path(root) / "census-income.test.gz"
        if not self.path.is_file():
            raise _missing(self.path, "Census-Income file census-income.test.gz")
        self.group = group
        self.split = tuple(split)
        self.split_seed = split_seed
        self.task_names = ["income", "marital"] if group == 1 else ["education", "marital"]
        self.task_types = ["binary", "binary"]
        self._arrays = self._load()
        self.cardinalities = self._arrays["cardinalities"]
        self.num_dense = len(CENSUS_CONTINUOUS)

    def _load(self) -> dict[str, Any]:
        pd = require("pandas", extra="recsys", feature="CensusIncomeDataModule")
        with gzip.open(self.path, "rt") as fh:
            frame = pd.read_csv(fh, header=None, skipinitialspace=True, dtype=str, keep_default_na=False)
        if frame.shape[1] != 42:
            raise ValueError(f"{self.path} must have 42 columns (UCI order, no header), got {frame.shape[1]}")
        income = (frame[CENSUS_INCOME].str.strip() == "50000+.").to_numpy()
        marital = (frame[CENSUS_MARITAL].str.strip() == "Never married").to_numpy()
        college = frame[CENSUS_EDUCATION].str.strip().isin(COLLEGE).to_numpy()
        first = income if self.group == 1 else college
        labels = np.stack([first, marital], 1).astype(np.float32)
        drop = {CENSUS_WEIGHT, CENSUS_INCOME, CENSUS_MARITAL} | ({CENSUS_EDUCATION} if self.group == 2 else set())
        categorical = [c for c in range(42) if c not in drop and c not in CENSUS_CONTINUOUS]
        codes, cards = [], []
        for c in categorical:
            inverse, values = pd.factorize(frame[c], sort=True)
            codes.append(inverse)
            cards.append(len(values))
        dense = frame[list(CENSUS_CONTINUOUS)].astype(np.float64).to_numpy()
        return {
            "labels": labels,
            "sparse": np.stack(codes, 1).astype(np.int64),
            "dense": dense,
            "cardinalities": cards,
        }

    def build(self) -> dict[str, RecDataset]:
        """Split and standardise."""
        a = self._arrays
        parts = _stratified_split(a["labels"][:, 0].astype(int), self.split, self.split_seed)
        train = a["dense"][parts[0]]
        mean, std = train.mean(0), train.std(0)
        std = np.where(std > 1e-12, std, 1.0)
        out = {}
        for split, idx in zip(("train", "val", "test"), parts):
            dense = ((a["dense"][idx] - mean) / std).astype(np.float32)
            out[split] = RecDataset(
                torch.from_numpy(a["labels"][idx]), torch.from_numpy(dense), torch.from_numpy(a["sparse"][idx])
            )
        return out


# --------------------------------------------------------------------------------------------------------------
# MovieLens latest-small


class MovieLensDataModule(RecDataModule):
    """MovieLens latest-small as a multi-task recommender with user-grouped GAUC.

    Each rating event is a row with the user id, movie id, the movie's first genre and release decade as
    categorical fields and the 20-genre multi-hot as dense features. Tasks: ``rating`` (regression on the
    0.5-5 stars), ``like`` (rating >= 4, dense: about 48% positive) and ``tag`` (the user also tagged the
    movie: a sparse task, about 3% positive). Rows are split at random (seeded by ``split_seed``).

    Args:
        root: folder holding ``ratings.csv``, ``movies.csv`` and ``tags.csv``.
        split: train/val/test fractions.
        split_seed: seed of the split.
        batch_size: training batch size.
        eval_batch_size: evaluation batch size.
        seed: seed of the training order.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = MovieLensDataModule("../shared/data/recsys/ml-latest-small")  # doctest: +SKIP
        >>> dm.task_names, dm.task_types  # doctest: +SKIP
        (['rating', 'like', 'tag'], ['regression', 'binary', 'binary'])
    """

    def __init__(
        self,
        root: str | Path,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        batch_size: int = 1024,
        eval_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, num_workers)
        self.root = Path(root)
        for name in ("ratings.csv", "movies.csv", "tags.csv"):
            if not (self.root / name).is_file():
                raise _missing(self.root / name, f"MovieLens file {name}")
        self.split = tuple(split)
        self.split_seed = split_seed
        self.task_names = ["rating", "like", "tag"]
        self.task_types = ["regression", "binary", "binary"]
        self._arrays = self._load()
        self.cardinalities = self._arrays["cardinalities"]
        self.num_dense = int(self._arrays["dense"].shape[1])

    def _load(self) -> dict[str, Any]:
        pd = require("pandas", extra="recsys", feature="MovieLensDataModule")
        ratings = pd.read_csv(self.root / "ratings.csv")
        movies = pd.read_csv(self.root / "movies.csv")
        tags = pd.read_csv(self.root / "tags.csv")
        genres = sorted({g for gs in movies["genres"] for g in gs.split("|")})
        genre_index = {g: i for i, g in enumerate(genres)}
        movie_row = {m: i for i, m in enumerate(movies["movieId"])}
        multi_hot = np.zeros((len(movies), len(genres)), dtype=np.float32)
        first_genre = np.zeros(len(movies), dtype=np.int64)
        for i, gs in enumerate(movies["genres"]):
            parts = gs.split("|")
            first_genre[i] = genre_index[parts[0]]
            for g in parts:
                multi_hot[i, genre_index[g]] = 1.0
        years = movies["title"].str.extract(r"\((\d{4})\)\s*$")[0].astype(float)
        decade = np.where(years.isna(), 0, ((years.fillna(1900) - 1900) // 10).clip(0, 12) + 1).astype(np.int64)
        users, user_idx = np.unique(ratings["userId"].to_numpy(), return_inverse=True)
        movie_ids = ratings["movieId"].map(movie_row).to_numpy()
        tagged = set(zip(tags["userId"], tags["movieId"]))
        tag = np.array([(u, m) in tagged for u, m in zip(ratings["userId"], ratings["movieId"])], dtype=np.float32)
        rating = ratings["rating"].to_numpy(np.float32)
        labels = np.stack([rating, (rating >= 4).astype(np.float32), tag], 1)
        sparse = np.stack([user_idx, movie_ids, first_genre[movie_ids], decade[movie_ids]], 1).astype(np.int64)
        return {
            "labels": labels,
            "sparse": sparse,
            "dense": multi_hot[movie_ids],
            "user": user_idx.astype(np.int64),
            "cardinalities": [int(users.size), len(movies), len(genres), 14],
        }

    def build(self) -> dict[str, RecDataset]:
        """Random split."""
        a = self._arrays
        parts = _stratified_split(a["labels"][:, 2].astype(int), self.split, self.split_seed)
        return {
            split: RecDataset(
                torch.from_numpy(a["labels"][idx]), torch.from_numpy(a["dense"][idx]),
                torch.from_numpy(a["sparse"][idx]), None, torch.from_numpy(a["user"][idx]),
            )
            for split, idx in zip(("train", "val", "test"), parts)
        }
