"""scikit-learn's handwritten digits (8x8 images, 10 classes) as a LightningDataModule."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from domain_moe.utils.imports import require

__all__ = ["DigitsDataModule"]


class _EpochShuffleSampler(Sampler[int]):
    """Shuffles with a permutation that depends only on ``(seed, epoch)``.

    A ``RandomSampler`` draws its order from the global RNG, whose state depends on everything that ran
    before, so a resumed run would see other batches than the uninterrupted one. The epoch comes from
    ``epoch_fn`` (the trainer's ``current_epoch``) when it returns one: Lightning's ``set_epoch`` value
    is off by one after resuming from a checkpoint written at the end of an epoch. Without a trainer,
    ``set_epoch`` (or 0) is used.
    """

    def __init__(self, num_samples: int, seed: int, epoch_fn: Callable[[], int | None]) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.epoch_fn = epoch_fn

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch_fn()
        generator = torch.Generator().manual_seed(self.seed + (self.epoch if epoch is None else epoch))
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


class DigitsDataModule(L.LightningDataModule):
    """The UCI handwritten digits shipped inside scikit-learn (``sklearn.datasets.load_digits``).

    1797 grey-level 8x8 images of the digits 0-9 as 64 features; no download. The split is stratified
    and seeded (train / val / test), the features are standardised with the training split's mean and
    standard deviation, and the training order depends only on ``(seed, epoch)``, so resumed runs see
    the same batches. ``num_features`` (64) and ``num_classes`` (10) are available right after
    construction, which the CLI links into the model.

    Args:
        batch_size: samples per batch.
        val_fraction: fraction of all samples held out for validation.
        test_fraction: fraction of all samples held out for testing.
        seed: seed of the split and of the training order.
        num_workers: ``DataLoader`` worker processes.
        standardize: standardise each feature (pixels that never vary keep scale 1).

    Shapes:
        - batch: ``(x [B, 64] float32, y [B] int64)``

    Example:
        >>> dm = DigitsDataModule(batch_size=32)
        >>> dm.num_features, dm.num_classes
        (64, 10)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> x.shape, y.dtype
        (torch.Size([32, 64]), torch.int64)
    """

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        num_workers: int = 0,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DigitsDataModule: batch_size must be a positive int, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"DigitsDataModule: num_workers must be an int >= 0, got {num_workers!r}")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"DigitsDataModule: {name} must be in (0, 1), got {value!r}")
        if val_fraction + test_fraction >= 0.9:
            raise ValueError(
                f"DigitsDataModule: val_fraction + test_fraction must be < 0.9 to leave training data, "
                f"got {val_fraction} + {test_fraction}"
            )
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.standardize = standardize
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        # The dataset is embedded in scikit-learn and tiny (~0.5 MB), so loading it for the metadata is free.
        if self._arrays is None:
            datasets = require("sklearn.datasets", extra="train", feature="DigitsDataModule")
            digits = datasets.load_digits()
            self._arrays = (digits.data.astype(np.float32), digits.target.astype(np.int64))
        return self._arrays

    @property
    def num_features(self) -> int:
        """Features per sample (64)."""
        return int(self._load()[0].shape[1])

    @property
    def num_classes(self) -> int:
        """Classes (10)."""
        return int(np.unique(self._load()[1]).size)

    def setup(self, stage: str | None = None) -> None:
        """Split (stratified, seeded) and standardise; idempotent."""
        if self.train_set is not None:
            return
        model_selection = require("sklearn.model_selection", extra="train", feature="DigitsDataModule")
        x, y = self._load()
        x_rest, x_test, y_rest, y_test = model_selection.train_test_split(
            x, y, test_size=self.test_fraction, stratify=y, random_state=self.seed
        )
        x_train, x_val, y_train, y_val = model_selection.train_test_split(
            x_rest,
            y_rest,
            test_size=self.val_fraction / (1.0 - self.test_fraction),
            stratify=y_rest,
            random_state=self.seed,
        )
        if self.standardize:
            mean = x_train.mean(0, keepdims=True)
            std = x_train.std(0, keepdims=True)
            # Border pixels are always 0 in training: dividing by their zero std would blow up test values.
            std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
            x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))

        def dataset(a: np.ndarray, b: np.ndarray) -> TensorDataset:
            return TensorDataset(torch.from_numpy(np.ascontiguousarray(a, np.float32)), torch.from_numpy(b))

        self.train_set = dataset(x_train, y_train)
        self.val_set = dataset(x_val, y_val)
        self.test_set = dataset(x_test, y_test)

    def _loader(self, data: TensorDataset | None, train: bool) -> DataLoader:
        if data is None:
            raise RuntimeError("DigitsDataModule: call setup() before requesting a dataloader")
        sampler = _EpochShuffleSampler(len(data), self.seed, self._current_epoch) if train else None
        return DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _current_epoch(self) -> int | None:
        trainer = self.trainer
        return None if trainer is None else int(trainer.current_epoch)

    def train_dataloader(self) -> DataLoader:
        """Training batches in a ``(seed, epoch)``-determined order."""
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order."""
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in a fixed order."""
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split, for ``predict``."""
        return self._loader(self.test_set, train=False)
