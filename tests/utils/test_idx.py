import gzip

import numpy as np
import pytest
import torch

from domain_moe.utils.idx import find_idx_dir, load_idx_split, read_idx


def _write_idx(path, array: np.ndarray, code: int, compress: bool) -> None:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def _fake_dir(tmp_path, n=5, compress=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, 4, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", images, 0x08, compress)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 0x08, compress)
    return tmp_path


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_uint8(tmp_path, compress):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a-idx3-ubyte.gz" if compress else "a-idx3-ubyte")
    _write_idx(path, array, 0x08, compress)
    out = read_idx(path)
    assert out.dtype == torch.uint8
    assert torch.equal(out, torch.from_numpy(array))


def test_round_trip_big_endian_int32(tmp_path):
    array = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    path = tmp_path / "b-idx2"
    _write_idx(path, array, 0x0C, False)
    assert read_idx(path).tolist() == array.tolist()


def test_bad_header_and_size(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="header says shape"):
        read_idx(short)
    with pytest.raises(FileNotFoundError, match="missing-file"):
        read_idx(tmp_path / "missing-file")


@pytest.mark.parametrize("compress", [True, False])
def test_load_split_from_user_directory(tmp_path, compress):
    directory = _fake_dir(tmp_path, n=5, compress=compress)
    assert find_idx_dir(directory) == directory
    images, labels = load_idx_split(directory, "test")
    assert images.shape == (5, 4, 3) and labels.shape == (5,) and labels.dtype == torch.int64
    with pytest.raises(ValueError, match="split must be one of"):
        load_idx_split(directory, "valid")


def test_torchvision_layout_is_found(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    _fake_dir(raw)
    assert find_idx_dir(tmp_path) == raw


def test_missing_files_name_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv("DOMAIN_MOE_FASHION_MNIST", raising=False)
    monkeypatch.setattr("domain_moe.utils.idx._DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as info:
        find_idx_dir(tmp_path)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_idx_split(tmp_path, "test")


def test_image_label_count_mismatch(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8), 0x08, False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8), 0x08, False)
    with pytest.raises(ValueError, match="expected images"):
        load_idx_split(tmp_path, "train")
