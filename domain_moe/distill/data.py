"""Image classification data grouped into verticals: Fashion-MNIST, any ``idx`` directory, 100-class pairs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from domain_moe.distill.verticals import (
    FASHION_MNIST_VERTICAL_NAMES,
    FASHION_MNIST_VERTICALS,
    check_verticals,
    class_to_vertical,
    pair_verticals,
)
from domain_moe.utils.idx import find_idx_dir, load_idx_split

__all__ = ["VerticalDataModule", "load_images"]

_PAIR_PREFIXES = ("fashion-pairs", "pairs:")


def load_images(dataset: str, split: str, root: str | None = None) -> tuple[Tensor, Tensor]:
    """Images and labels of one split of a single-item dataset (``fashion-mnist`` or ``idx:<dir>``).

    Shapes:
        - output: ``(uint8 [N, H, W], int64 [N])``
    """
    if dataset == "fashion-mnist":
        directory = find_idx_dir(root)
    elif dataset.startswith("idx:"):
        given = Path(dataset[len("idx:") :])
        directory = find_idx_dir(given)
        # find_idx_dir falls back to Fashion-MNIST; a user's own directory must not silently become it.
        if directory not in (given, given / "FashionMNIST" / "raw"):
            raise FileNotFoundError(
                f"no MNIST-format idx files (train-images-idx3-ubyte[.gz], ...) in {os.fspath(given)!r}"
            )
    else:
        raise ValueError(f"dataset must be 'fashion-mnist' or 'idx:<dir>', got {dataset!r}")
    return load_idx_split(directory, split)


class _Tensors(Dataset):
    """Batched indexing (``__getitems__``): one gather per batch instead of one Python call per sample."""

    def __init__(self, *tensors: Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        return tuple(t[i] for t in self.tensors)

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


def _as_batch(batch: Any) -> Any:
    return batch


class VerticalDataModule(L.LightningDataModule):
    """Classification data whose classes are grouped into verticals (Gao et al., arXiv 1711.07607, §3.1).

    Datasets: ``"fashion-mnist"`` (the Debian package ``dataset-fashion-mnist``, or ``root``), ``"idx:<dir>"``
    (any MNIST-format directory), ``"fashion-pairs"`` / ``"pairs:<dir>"`` (two items side by side on a 28x56
    canvas, label ``10 * left + right``: 100 classes, built deterministically from the real images of the
    matching split). Verticals default to Fashion-MNIST's tops / footwear / other for 10 classes; for pairs
    they are lifted by the left item (``pair_grouping="left"``, M verticals) or by both items (``"pair"``,
    M² verticals). Validation is a seeded ``val_fraction`` of the training images; ``num_train`` keeps a seeded
    subset of the rest. With ``vertical=v`` only that vertical's samples are kept and labels become local
    (``0..N_v-1``): the data of specialist ``v``.

    Batches are ``(x, y)`` with ``x`` float ``[B, 1, H, W]`` in ``[0, 1]`` and ``y`` int64 ``[B]``; after
    :meth:`set_train_targets` training batches are ``(x, y, soft)`` with cached teacher outputs.

    After ``setup()``: ``num_classes``, ``verticals``, ``vertical_names``, ``class_to_vertical``, ``in_chans``,
    ``image_size``.

    Args:
        dataset: see above.
        verticals: classes of each vertical of the single-item label space (``None``: Fashion-MNIST's).
        vertical_names: one name per vertical (``None``: Fashion-MNIST's names or ``v0, v1, ...``).
        root: directory of the Fashion-MNIST idx files (``None``: the usual places).
        vertical: keep only this vertical, relabelled locally (a specialist's data).
        pair_grouping: ``"left"`` or ``"pair"`` (pair datasets only).
        num_train: training samples kept (``None``: all); pair datasets generate this many (default 60000).
        num_test: test samples (pair datasets generate this many, default 10000; others keep a seeded subset).
        val_fraction: share of the training images held out for validation.
        batch_size: batch size of every loader.
        seed: seed of the splits, subsets and pairs.
        train_parts: folds of the seeded partition of the training samples (:attr:`train_fold`).
        train_part: keep only this fold of the training samples (cross-fitted teachers), or ``None``.

    Example:
        >>> dm = VerticalDataModule("fashion-mnist", num_train=512, num_test=256)  # doctest: +SKIP
        >>> dm.setup(); dm.num_classes, dm.vertical_names  # doctest: +SKIP
        (10, ['tops', 'footwear', 'other'])
    """

    def __init__(
        self,
        dataset: str = "fashion-mnist",
        verticals: Sequence[Sequence[int]] | None = None,
        vertical_names: Sequence[str] | None = None,
        root: str | None = None,
        vertical: int | None = None,
        pair_grouping: str = "left",
        num_train: int | None = None,
        num_test: int | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 128,
        seed: int = 0,
        train_parts: int = 2,
        train_part: int | None = None,
    ) -> None:
        super().__init__()
        self.pairs = dataset == "fashion-pairs" or dataset.startswith("pairs:")
        if not (self.pairs or dataset == "fashion-mnist" or dataset.startswith("idx:")):
            raise ValueError(
                f"dataset must be 'fashion-mnist', 'idx:<dir>', 'fashion-pairs' or 'pairs:<dir>', got {dataset!r}"
            )
        if pair_grouping not in ("left", "pair"):
            raise ValueError(f"pair_grouping must be 'left' or 'pair', got {pair_grouping!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        for name, value in (("num_train", num_train), ("num_test", num_test), ("batch_size", batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if isinstance(train_parts, bool) or not isinstance(train_parts, int) or train_parts < 1:
            raise ValueError(f"train_parts must be a positive int, got {train_parts!r}")
        if train_part is not None and not 0 <= train_part < train_parts:
            raise ValueError(f"train_part must be None or in [0, {train_parts}), got {train_part!r}")
        self.train_parts = train_parts
        self.train_part = train_part
        self.dataset = dataset
        self.base_verticals = None if verticals is None else check_verticals(verticals)
        self.names_arg = None if vertical_names is None else list(vertical_names)
        self.root = root
        self.vertical = vertical
        self.pair_grouping = pair_grouping
        self.num_train = num_train
        self.num_test = num_test
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.seed = seed
        self._splits: dict[str, tuple[Tensor, ...]] = {}
        self.train_targets: Tensor | None = None
        self.base_num: int | None = None

    # -- construction ---------------------------------------------------------------------------------------
    def _source(self) -> str:
        if self.dataset == "fashion-pairs":
            return "fashion-mnist"
        return "idx:" + self.dataset[len("pairs:") :] if self.dataset.startswith("pairs:") else self.dataset

    def _ensure_label_space(self) -> None:
        """Verticals without the images: the CLI links them into the model before ``setup()``."""
        if self.base_num is not None:
            return
        if self._source() == "fashion-mnist" and self.base_verticals is None:
            num_base = 10
        else:
            _, labels = load_images(self._source(), "train", self.root)
            num_base = int(labels.max()) + 1
        self.base_num = num_base
        self._label_space(num_base)

    @property
    def verticals(self) -> list[list[int]]:
        """Classes of each vertical of the (possibly pair) label space."""
        self._ensure_label_space()
        return self._verticals

    @property
    def vertical_names(self) -> list[str]:
        """One name per vertical."""
        self._ensure_label_space()
        return self._vertical_names

    @property
    def num_classes(self) -> int:
        """``N``, classes of the whole label space."""
        self._ensure_label_space()
        return self._num_classes

    @property
    def class_to_vertical(self) -> Tensor:
        """Vertical of every class, ``[N]``."""
        self._ensure_label_space()
        return self._class_to_vertical

    def _label_space(self, num_base: int) -> None:
        base = self.base_verticals
        if base is None:
            if num_base != 10:
                raise ValueError(f"verticals must be given for a dataset with {num_base} classes (default: 10 only)")
            base = [list(v) for v in FASHION_MNIST_VERTICALS]
        check_verticals(base, num_base)
        base_names = self.names_arg if not self.pairs else None
        if not self.pairs:
            self._verticals = base
            default = list(FASHION_MNIST_VERTICAL_NAMES) if self.base_verticals is None else None
            self._vertical_names = base_names or default or [f"v{i}" for i in range(len(base))]
            self._num_classes = num_base
        else:
            self._verticals, names = pair_verticals(base, num_base, self.pair_grouping)
            self._vertical_names = self.names_arg or names
            self._num_classes = num_base * num_base
        if len(self._vertical_names) != len(self._verticals):
            raise ValueError(
                f"vertical_names must hold one name per vertical ({len(self._verticals)}), got {self._vertical_names}"
            )
        self._class_to_vertical = class_to_vertical(self._verticals, self._num_classes)

    def _pairs(self, images: Tensor, labels: Tensor, count: int, offset: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1000 + offset)
        left = torch.randint(0, images.shape[0], (count,), generator=gen)
        right = torch.randint(0, images.shape[0], (count,), generator=gen)
        canvas = torch.cat([images[left], images[right]], dim=-1)
        return canvas, labels[left] * int(self.base_num) + labels[right]

    def setup(self, stage: str | None = None) -> None:
        """Load (or generate) the splits; idempotent."""
        if self._splits:
            return
        train_x, train_y = load_images(self._source(), "train", self.root)
        test_x, test_y = load_images(self._source(), "test", self.root)
        num_base = int(max(int(train_y.max()), int(test_y.max())) + 1)
        if self.base_num is not None and self.base_num != num_base:
            raise ValueError(f"the test split has {num_base} classes, the training split {self.base_num}")
        self.base_num = num_base
        self._label_space(num_base)
        gen = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(train_x.shape[0], generator=gen)
        n_val = round(self.val_fraction * train_x.shape[0])
        val_idx, fit_idx = perm[:n_val], perm[n_val:]
        if self.pairs:
            n_train = self.num_train or 60000
            n_test = self.num_test or 10000
            splits = {
                "train": self._pairs(train_x[fit_idx], train_y[fit_idx], n_train, 1),
                "val": self._pairs(train_x[val_idx], train_y[val_idx], max(n_test // 2, 1), 2),
                "test": self._pairs(test_x, test_y, n_test, 3),
            }
        else:
            if self.num_train is not None:
                fit_idx = fit_idx[: self.num_train]
            test_idx = torch.arange(test_x.shape[0])
            if self.num_test is not None:
                test_idx = torch.randperm(test_x.shape[0], generator=gen)[: self.num_test]
                val_idx = val_idx[: self.num_test]
            splits = {
                "train": (train_x[fit_idx], train_y[fit_idx]),
                "val": (train_x[val_idx], train_y[val_idx]),
                "test": (test_x[test_idx], test_y[test_idx]),
            }
        n_fit = splits["train"][1].shape[0]
        fold = torch.empty(n_fit, dtype=torch.long)
        fold[torch.randperm(n_fit, generator=torch.Generator().manual_seed(self.seed + 7))] = (
            torch.arange(n_fit) % self.train_parts
        )
        if self.train_part is not None:
            keep_part = fold == self.train_part
            splits["train"] = tuple(t[keep_part] for t in splits["train"])
            fold = fold[keep_part]
        if self.vertical is not None:
            if not 0 <= self.vertical < len(self.verticals):
                raise ValueError(f"vertical must be in [0, {len(self.verticals)}), got {self.vertical}")
            local = torch.full((self.num_classes,), -1, dtype=torch.long)
            local[self.verticals[self.vertical]] = torch.arange(len(self.verticals[self.vertical]))
            keep = {k: self.class_to_vertical[y] == self.vertical for k, (_, y) in splits.items()}
            splits = {k: (x[keep[k]], local[y[keep[k]]]) for k, (x, y) in splits.items()}
            fold = fold[keep["train"]]
        #: Fold of every training sample in the seeded ``train_parts``-fold partition (cross-fitting).
        self.train_fold = fold
        self._splits = {k: (x.unsqueeze(1), y) for k, (x, y) in splits.items()}
        self.in_chans = 1
        self.image_size = tuple(self._splits["train"][0].shape[-2:])

    @property
    def num_outputs(self) -> int:
        """Outputs a model of this data needs: ``N``, or ``N_v`` when restricted to one vertical."""
        return self.num_classes if self.vertical is None else len(self.verticals[self.vertical])

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """``(uint8 images [N, 1, H, W], labels [N])`` of ``"train"``, ``"val"`` or ``"test"`` (after setup)."""
        if not self._splits:
            raise RuntimeError("call setup() first")
        x, y = self._splits[name][:2]
        return x, y

    def set_train_targets(self, targets: Tensor | None) -> None:
        """Cache per-sample soft targets ``[N_train, N]`` for training batches (``None`` clears them)."""
        n = self.split("train")[0].shape[0]
        if targets is not None and (targets.dim() != 2 or targets.shape[0] != n):
            raise ValueError(f"targets must have shape [N_train={n}, N], got {tuple(targets.shape)}")
        self.train_targets = targets

    # -- loaders --------------------------------------------------------------------------------------------
    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        tensors = self.split(name)
        if name == "train" and self.train_targets is not None:
            tensors = (*tensors, self.train_targets)
        gen = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            _Tensors(*tensors), batch_size=self.batch_size, shuffle=shuffle, generator=gen, collate_fn=_as_batch
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (a seeded generator: same order on every run)."""
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches."""
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        """Test batches."""
        return self._loader("test", False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 images to floats in ``[0, 1]`` on the device (8 bits per pixel travel, not 32)."""
        x, *rest = batch
        return (x.float().div_(255.0), *rest)
