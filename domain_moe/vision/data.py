"""DataModules of the vision domain: Fashion-MNIST items and multi-object canvases built from them.

Datasets are named by strings: ``"fashion-mnist"`` (the Debian package ``dataset-fashion-mnist``, a ``root``
folder, or ``DOMAIN_MOE_FASHION_MNIST``), ``"idx:<dir>"`` (any MNIST-format idx directory; a directory holding
only a training split is split with the seed) and ``"synthetic"`` (generated shapes, no files, for smoke tests).
Validation items are a seeded 10% of the training items and never reach the training canvases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from domain_moe.utils.idx import find_idx_dir, load_idx_split
from domain_moe.vision.canvas import TEMPLATES, AnswerSpace, Canvases, caption_vocab_size, make_canvases

__all__ = [
    "CanvasDataModule",
    "FashionMNISTDataModule",
    "TensorDictDataset",
    "load_items",
    "synthetic_items",
]


def synthetic_items(num: int, num_classes: int = 10, size: int = 28, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Generated grey items whose class sets the shape (bar orientation, blob, ring...), plus noise.

    Args:
        num: items to generate.
        num_classes: classes (shapes cycle through 5 base patterns with class-dependent size).
        size: item side.
        seed: generator seed.

    Returns:
        ``(images uint8 [num, size, size], labels int64 [num])``.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (num,), generator=gen)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    c = (size - 1) / 2
    r = ((yy - c) ** 2 + (xx - c) ** 2).sqrt()
    patterns = []
    for k in range(num_classes):
        scale = 0.5 + 0.4 * (k // 5) / max(1, (num_classes - 1) // 5)
        half = size * scale / 2
        kind = k % 5
        if kind == 0:
            img = (r < half).float()
        elif kind == 1:
            img = ((r < half) & (r > half * 0.6)).float()
        elif kind == 2:
            img = ((yy - c).abs() < half) & ((xx - c).abs() < half / 3)
        elif kind == 3:
            img = ((xx - c).abs() < half) & ((yy - c).abs() < half / 3)
        else:
            img = ((yy - c).abs() < half) & ((xx - c).abs() < half)
        patterns.append(img.float())
    base = torch.stack(patterns)[labels]
    noise = 0.2 * torch.rand(num, size, size, generator=gen)
    images = ((base * (0.8 + noise)).clamp(0, 1) * 255).to(torch.uint8)
    return images, labels


def load_items(
    dataset: str, root: str | None = None, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 1 / 7
) -> dict[str, tuple[Tensor, Tensor]]:
    """Item images and labels of a dataset, split into ``"train"``, ``"val"`` and ``"test"``.

    Validation items are a seeded ``val_fraction`` of the training items. A directory that holds only
    training files gives a seeded ``test_fraction`` of them as the test split.

    Args:
        dataset: ``"fashion-mnist"``, ``"idx:<dir>"`` or ``"synthetic"``.
        root: a directory of idx files for ``"fashion-mnist"`` (else the defaults are searched).
        seed: seed of the splits.
        val_fraction: validation share of the training items.
        test_fraction: test share when a directory holds no test files.

    Returns:
        ``{split: (images uint8 [P, H, W], labels int64 [P])}``.

    Raises:
        TypeError: ``dataset`` is not a string.
        ValueError: unknown dataset name.
        FileNotFoundError: no idx files; the message names the Debian package ``dataset-fashion-mnist``.
    """
    if not isinstance(dataset, str):
        raise TypeError(f"dataset must be a string, got {type(dataset).__name__}")
    if dataset == "synthetic":
        train, test = synthetic_items(3000, seed=0), synthetic_items(600, seed=1)
    else:
        if dataset == "fashion-mnist":
            directory = find_idx_dir(root)
        elif dataset.startswith("idx:"):
            # An explicit directory: never fall back to another copy of the data.
            directory = Path(dataset[4:])
            if not directory.is_dir():
                raise FileNotFoundError(
                    f"idx directory not found: {directory} (expected train-images-idx3-ubyte[.gz] and its siblings; "
                    "Fashion-MNIST comes with the Debian package dataset-fashion-mnist)"
                )
        else:
            raise ValueError(f"dataset must be 'fashion-mnist', 'idx:<dir>' or 'synthetic', got {dataset!r}")
        train = load_idx_split(directory, "train")
        try:
            test = load_idx_split(directory, "test")
        except FileNotFoundError:
            perm = torch.randperm(train[0].shape[0], generator=torch.Generator().manual_seed(seed))
            cut = round(train[0].shape[0] * test_fraction)
            test = train[0][perm[:cut]], train[1][perm[:cut]]
            train = train[0][perm[cut:]], train[1][perm[cut:]]
    perm = torch.randperm(train[0].shape[0], generator=torch.Generator().manual_seed(seed + 1))
    cut = max(1, int(train[0].shape[0] * val_fraction))
    return {
        "train": (train[0][perm[cut:]], train[1][perm[cut:]]),
        "val": (train[0][perm[:cut]], train[1][perm[:cut]]),
        "test": test,
    }


class TensorDictDataset(Dataset):
    """A dataset of equally long tensors; items and batches are dicts of slices.

    Args:
        tensors: named tensors sharing the leading size ``N``.
    """

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        sizes = {k: int(v.shape[0]) for k, v in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors must share the leading size, got {sizes}")
        self.tensors = tensors

    def __len__(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        # One fancy index per tensor instead of N small items and a collate.
        idx = torch.as_tensor(indices)
        return {k: v[idx] for k, v in self.tensors.items()}


def _identity(batch: Any) -> Any:
    return batch


def _loader(data: TensorDictDataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=_identity)


class FashionMNISTDataModule(L.LightningDataModule):
    """Single items (Fashion-MNIST or any idx directory) for the classification expert.

    Training items get random shifts of up to ``shift`` pixels (reflect-free: zero padding, then a crop), so
    the expert does not rely on items being centred (on canvases they never are).

    Args:
        dataset: ``"fashion-mnist"``, ``"idx:<dir>"`` or ``"synthetic"``.
        root: directory of idx files for ``"fashion-mnist"``.
        num_train: training items used (``None`` = all).
        num_test: test items used (``None`` = all).
        shift: largest random shift in pixels.
        batch_size: batch size.
        seed: seed of the validation split, the subsets and the shuffling.
    """

    def __init__(
        self,
        dataset: str = "fashion-mnist",
        root: str | None = None,
        num_train: int | None = 10000,
        num_test: int | None = 2000,
        shift: int = 2,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.root = root
        self.num_train = num_train
        self.num_test = num_test
        self.shift = shift
        self.batch_size = batch_size
        self.seed = seed
        self.splits: dict[str, TensorDictDataset] = {}

    @property
    def num_classes(self) -> int:
        """Item classes."""
        return 10

    def setup(self, stage: str | None = None) -> None:
        """Load the items and build the splits (once)."""
        if self.splits:
            return
        items = load_items(self.dataset, self.root, seed=self.seed)
        tr_x, tr_y = (t[: self.num_train] for t in items["train"])
        te_x, te_y = (t[: self.num_test] for t in items["test"])
        va_x, va_y = (t[: self.num_test] for t in items["val"])
        gen = torch.Generator().manual_seed(self.seed)
        tr = tr_x.float().div(255).unsqueeze(1)
        if self.shift > 0:
            s = self.shift
            padded = F.pad(tr, (s, s, s, s))
            dy = torch.randint(0, 2 * s + 1, (tr.shape[0],), generator=gen)
            dx = torch.randint(0, 2 * s + 1, (tr.shape[0],), generator=gen)
            h, w = tr.shape[-2:]
            tr = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(tr.shape[0])])
        self.splits = {
            "train": TensorDictDataset({"image": tr, "label": tr_y}),
            "val": TensorDictDataset({"image": va_x.float().div(255).unsqueeze(1), "label": va_y}),
            "test": TensorDictDataset({"image": te_x.float().div(255).unsqueeze(1), "label": te_y}),
        }

    def train_dataloader(self) -> DataLoader:
        """Shuffled training items."""
        return _loader(self.splits["train"], self.batch_size, True, self.seed)

    def val_dataloader(self) -> DataLoader:
        """Validation items."""
        return _loader(self.splits["val"], self.batch_size, False, self.seed)

    def test_dataloader(self) -> DataLoader:
        """Test items."""
        return _loader(self.splits["test"], self.batch_size, False, self.seed)


class CanvasDataModule(L.LightningDataModule):
    """Multi-object canvases with boxes, masks, captions and one context question each.

    Canvases of each split draw items only from the matching item split. Batches are dicts with the fields
    of :class:`~domain_moe.vision.canvas.Canvases` (``image``, ``semantic``, ``boxes``, ``box_class``,
    ``caption``, ``context``, ``argument``, ``answer``, ...). After :meth:`setup`, ``num_classes``,
    ``num_contexts``, ``num_answers``, ``vocab_size``, ``canvas_size`` and ``max_items`` describe the data.

    Args:
        dataset: ``"fashion-mnist"``, ``"idx:<dir>"`` or ``"synthetic"``.
        root: directory of idx files for ``"fashion-mnist"``.
        canvas_size: canvas side ``S``.
        max_items: most items per canvas.
        scale_range: item scale range.
        num_train: training canvases.
        num_val: validation canvases.
        num_test: test canvases.
        batch_size: batch size.
        seed: seed of the item split, the canvases and the shuffling.
    """

    def __init__(
        self,
        dataset: str = "fashion-mnist",
        root: str | None = None,
        canvas_size: int = 64,
        max_items: int = 3,
        scale_range: tuple[float, float] = (0.7, 1.0),
        num_train: int = 2000,
        num_val: int = 200,
        num_test: int = 500,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.root = root
        self.canvas_size = canvas_size
        self.max_items = max_items
        self.scale_range = tuple(scale_range)
        self.num_train = num_train
        self.num_val = num_val
        self.num_test = num_test
        self.batch_size = batch_size
        self.seed = seed
        self.canvases: dict[str, Canvases] = {}

    @property
    def num_classes(self) -> int:
        """Item classes ``C``."""
        return 10

    @property
    def num_contexts(self) -> int:
        """Question templates."""
        return len(TEMPLATES)

    @property
    def answers(self) -> AnswerSpace:
        """The answer vocabulary."""
        return AnswerSpace(self.num_classes, self.max_items)

    @property
    def num_answers(self) -> int:
        """Answers over all templates."""
        return self.answers.size

    @property
    def vocab_size(self) -> int:
        """Caption vocabulary size."""
        return caption_vocab_size(self.num_classes)

    def setup(self, stage: str | None = None) -> None:
        """Generate the canvases of every split (once; deterministic given ``seed``)."""
        if self.canvases:
            return
        items = load_items(self.dataset, self.root, seed=self.seed)
        (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = items["train"], items["val"], items["test"]
        common: dict[str, Any] = {
            "canvas_size": self.canvas_size,
            "max_items": self.max_items,
            "scale_range": self.scale_range,
            "num_classes": self.num_classes,
        }
        self.canvases = {
            "train": make_canvases(tr_x, tr_y, self.num_train, seed=self.seed * 3 + 0, **common),
            "val": make_canvases(va_x, va_y, self.num_val, seed=self.seed * 3 + 1, **common),
            "test": make_canvases(te_x, te_y, self.num_test, seed=self.seed * 3 + 2, **common),
        }

    def dataset_of(self, split: str) -> TensorDictDataset:
        """The split as a :class:`TensorDictDataset` (``"train"``, ``"val"`` or ``"test"``)."""
        return TensorDictDataset(self.canvases[split].as_dict())

    def train_dataloader(self) -> DataLoader:
        """Shuffled training canvases."""
        return _loader(self.dataset_of("train"), self.batch_size, True, self.seed)

    def val_dataloader(self) -> DataLoader:
        """Validation canvases."""
        return _loader(self.dataset_of("val"), self.batch_size, False, self.seed)

    def test_dataloader(self) -> DataLoader:
        """Test canvases."""
        return _loader(self.dataset_of("test"), self.batch_size, False, self.seed)
