"""Distillation tests: one thread (tiny models on a shared CPU) and a small fake idx dataset."""

import gzip
import struct

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_idx(path, array, code):
    header = struct.pack(">HBB", 0, code, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory):
    """A 10-class MNIST-format directory: 300 training and 100 test 28x28 images, class-dependent stripes."""
    root = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 100)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c : 2 * c + 3, :] = 250  # a class-dependent bright band makes the task learnable
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, 0x08)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x08)
    return root


VERTICALS = [[0, 2, 4, 6], [5, 7, 9], [1, 3, 8]]
