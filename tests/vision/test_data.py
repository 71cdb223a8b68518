import gzip
import struct

import numpy as np
import pytest
import torch

from domain_moe.vision.data import CanvasDataModule, FashionMNISTDataModule, TensorDictDataset, load_items


def _write_idx(directory, prefix, images, labels):
    with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(images), 28, 28) + images.tobytes())
    with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())


def test_missing_files_name_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_items(f"idx:{tmp_path}")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset must be"):
        load_items("cifar10")
    with pytest.raises(TypeError, match="dataset must be a string"):
        load_items(3)


def test_idx_directory_with_train_only_is_split(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(
        tmp_path, "train", rng.integers(0, 255, (70, 28, 28), dtype=np.uint8), np.arange(70, dtype=np.uint8) % 10
    )
    items = load_items(f"idx:{tmp_path}", seed=1)
    sizes = {k: len(v[1]) for k, v in items.items()}
    assert sizes == {"test": 10, "val": 6, "train": 54}
    ids = {k: set(v[0].reshape(len(v[0]), -1).sum(1).tolist()) for k, v in items.items()}
    assert not (ids["train"] & ids["test"])


def test_canvas_datamodule_sizes_and_determinism():
    dm = CanvasDataModule(dataset="synthetic", num_train=20, num_val=5, num_test=7, batch_size=8, seed=2)
    dm.setup()
    assert (dm.num_classes, dm.num_contexts, dm.num_answers, dm.vocab_size) == (10, 6, 19, 13)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 1, 64, 64) and batch["caption"].shape == (8, 5)
    assert len(dm.dataset_of("test")) == 7
    dm2 = CanvasDataModule(dataset="synthetic", num_train=20, num_val=5, num_test=7, batch_size=8, seed=2)
    dm2.setup()
    assert torch.equal(dm.canvases["train"].image, dm2.canvases["train"].image)


def test_fashion_mnist_datamodule_synthetic():
    dm = FashionMNISTDataModule(dataset="synthetic", num_train=50, num_test=20, batch_size=16)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 1, 28, 28) and batch["image"].max() <= 1


def test_tensor_dict_dataset_rejects_ragged():
    with pytest.raises(ValueError, match="share the leading size"):
        TensorDictDataset({"a": torch.zeros(3), "b": torch.zeros(4)})
