import doctest
from types import SimpleNamespace

import pytest
import torch

import domain_moe.training.digits as digits_module
from domain_moe.training import DigitsDataModule


def test_examples():
    assert doctest.testmod(digits_module).failed == 0


def test_metadata_before_setup():
    data = DigitsDataModule()
    assert (data.num_features, data.num_classes) == (64, 10)
    assert data.train_set is None


def test_split_is_stratified_disjoint_and_seeded():
    data = DigitsDataModule(seed=3)
    data.setup("fit")
    sizes = [len(data.train_set), len(data.val_set), len(data.test_set)]
    assert sum(sizes) == 1797
    assert sizes[2] == pytest.approx(0.15 * 1797, abs=2) and sizes[1] == pytest.approx(0.15 * 1797, abs=2)
    for subset in (data.train_set, data.val_set, data.test_set):
        assert torch.unique(subset.tensors[1]).numel() == 10
    rows = [{tuple(x.tolist()) for x in s.tensors[0]} for s in (data.train_set, data.val_set, data.test_set)]
    # A few digits are exact duplicates in the dataset, so allow a tiny overlap of identical images.
    assert len(rows[0] & rows[2]) <= 3

    again = DigitsDataModule(seed=3)
    again.setup("fit")
    assert torch.equal(again.test_set.tensors[0], data.test_set.tensors[0])
    other = DigitsDataModule(seed=4)
    other.setup("fit")
    assert not torch.equal(other.test_set.tensors[1], data.test_set.tensors[1])


def test_standardised_with_training_statistics():
    data = DigitsDataModule()
    data.setup()
    x = data.train_set.tensors[0]
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    torch.testing.assert_close(x.mean(0), torch.zeros(64), atol=1e-4, rtol=0)
    raw = DigitsDataModule(standardize=False)
    raw.setup()
    assert raw.train_set.tensors[0].max() == 16.0


def test_train_order_depends_on_seed_and_epoch_only():
    data = DigitsDataModule(batch_size=16)
    data.setup()
    first = lambda loader: next(iter(loader))[1]  # noqa: E731
    loader = data.train_dataloader()
    epoch0 = first(loader)
    assert torch.equal(first(loader), epoch0)  # re-iterating the same epoch repeats its order
    loader.sampler.set_epoch(1)
    epoch1 = first(loader)
    assert not torch.equal(epoch1, epoch0)
    # With a trainer attached its current_epoch decides (robust to Lightning's resume bookkeeping).
    data.trainer = SimpleNamespace(current_epoch=1)
    loader.sampler.set_epoch(5)
    assert torch.equal(first(loader), epoch1)
    assert torch.equal(first(data.val_dataloader()), first(data.val_dataloader()))
    assert len(data.test_dataloader().dataset) == len(data.predict_dataloader().dataset)


def test_dataloader_before_setup():
    with pytest.raises(RuntimeError, match="setup"):
        DigitsDataModule().train_dataloader()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"test_fraction": 1.2}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.45}, "val_fraction \\+ test_fraction"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)
