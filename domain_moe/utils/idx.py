"""MNIST-format ``idx`` files: Fashion-MNIST from its Debian package, or any ``idx`` directory given by path.

The vision and distillation domains read their images through this module so that both accept the same
inputs: the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), a torchvision
download folder, or any directory holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["FASHION_MNIST_CLASSES", "find_idx_dir", "load_idx_split", "read_idx"]

FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)

# Where Debian's dataset-fashion-mnist puts the files; checked after the user's own root.
_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_INSTALL_HINT = (
    "Install the Debian package (`apt-get install -y dataset-fashion-mnist`), point the `root` argument or the "
    "DOMAIN_MOE_FASHION_MNIST environment variable at a directory of idx files, or pass download=True to fetch "
    "it through torchvision"
)
# idx type codes (third byte of the magic number) -> numpy dtype (big-endian on disk).
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike[str]) -> Tensor:
    """Read one ``idx`` file (optionally gzip-compressed) into a tensor.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        A tensor with the file's shape (``[N, H, W]`` for images, ``[N]`` for labels); ``uint8`` files stay
        ``uint8``.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ValueError: the header is not an idx header or the payload has the wrong size.

    Example:
        >>> import gzip, tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte.gz")
        >>> with gzip.open(f, "wb") as fh: _ = fh.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
        >>> read_idx(f).tolist()
        [7, 8, 9]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (magic bytes {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) but holds {len(data) - header} bytes")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def _split_file(directory: Path, prefix: str, kind: str) -> Path | None:
    for name in (f"{prefix}-{kind}-ubyte", f"{prefix}-{kind}.idx", f"{prefix}-{kind}-ubyte.gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _has_idx(directory: Path) -> bool:
    return _split_file(directory, "train", "images-idx3") is not None


def find_idx_dir(root: str | os.PathLike[str] | None = None, *, download: bool = False) -> Path:
    """Locate a directory of Fashion-MNIST (or any MNIST-format) ``idx`` files.

    Search order: ``root`` (and torchvision's ``root/FashionMNIST/raw`` layout), the
    ``DOMAIN_MOE_FASHION_MNIST`` environment variable, the Debian package's directory; with ``download=True``
    and nothing found, torchvision downloads Fashion-MNIST into ``root``.

    Args:
        root: a directory of idx files or a torchvision dataset root; ``None`` searches the defaults only.
        download: fetch Fashion-MNIST through ``torchvision.datasets.FashionMNIST`` when nothing is found.

    Returns:
        The directory holding ``train-images-idx3-ubyte[.gz]`` and its siblings.

    Raises:
        FileNotFoundError: nothing found; the message lists the places searched and how to get the data.

    Example:
        >>> find_idx_dir().name  # doctest: +SKIP
        'fashion-mnist'
    """
    candidates: list[Path] = []
    if root is not None:
        candidates += [Path(root), Path(root) / "FashionMNIST" / "raw"]
    env = os.environ.get("DOMAIN_MOE_FASHION_MNIST")
    if env:
        candidates.append(Path(env))
    candidates.append(_DEBIAN_DIR)
    for directory in candidates:
        if directory.is_dir() and _has_idx(directory):
            return directory
    if download:
        from domain_moe.utils.imports import require

        datasets = require("torchvision.datasets", extra="vision", feature="Fashion-MNIST download")
        target = Path(root) if root is not None else Path.home() / ".cache" / "domain_moe"
        datasets.FashionMNIST(str(target), train=True, download=True)
        datasets.FashionMNIST(str(target), train=False, download=True)
        return find_idx_dir(target)
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"No MNIST-format idx files (train-images-idx3-ubyte[.gz]) in: {searched}. {_INSTALL_HINT}."
    )


def load_idx_split(directory: str | os.PathLike[str], split: str = "train") -> tuple[Tensor, Tensor]:
    """Load one split of an MNIST-format directory.

    Args:
        directory: a directory from :func:`find_idx_dir` or any folder of idx files.
        split: ``"train"`` or ``"test"`` (files prefixed ``train-`` / ``t10k-``).

    Returns:
        ``(images, labels)``.

    Shapes:
        images: ``[N, H, W]`` uint8; labels: ``[N]`` int64.

    Raises:
        ValueError: unknown split, or image and label counts differ.
        FileNotFoundError: a file is missing (the message names the directory and the expected names).

    Example:
        >>> images, labels = load_idx_split(find_idx_dir(), "test")  # doctest: +SKIP
        >>> images.shape  # doctest: +SKIP
        torch.Size([10000, 28, 28])
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be one of {sorted(_SPLIT_PREFIX)}, got {split!r}")
    directory = Path(directory)
    prefix = _SPLIT_PREFIX[split]
    images_file = _split_file(directory, prefix, "images-idx3")
    labels_file = _split_file(directory, prefix, "labels-idx1")
    if images_file is None or labels_file is None:
        raise FileNotFoundError(
            f"{directory} lacks {prefix}-images-idx3-ubyte[.gz] or {prefix}-labels-idx1-ubyte[.gz]. {_INSTALL_HINT}."
        )
    images, labels = read_idx(images_file), read_idx(labels_file).long()
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{directory}: expected images [N, H, W] and labels [N], "
            f"got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    return images, labels
