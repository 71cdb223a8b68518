import pytest
import torch

from domain_moe.distill.data import VerticalDataModule

from .conftest import VERTICALS


def test_idx_dataset_splits_and_verticals(idx_dir):
    dm = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, val_fraction=0.2, batch_size=32)
    assert dm.num_classes == 10 and dm.verticals == VERTICALS  # known before setup (the CLI links it)
    dm.setup()
    assert dm.split("train")[0].shape == (240, 1, 28, 28) and dm.split("val")[0].shape[0] == 60
    assert dm.split("test")[0].shape[0] == 100
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and y.shape == (32,)
    assert dm.vertical_names == ["v0", "v1", "v2"]


def test_specialist_data_is_local_to_its_vertical(idx_dir):
    full = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS)
    full.setup()
    dm = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, vertical=1)
    dm.setup()
    _, y = dm.split("train")
    _, y_full = full.split("train")
    assert dm.num_outputs == 3 and set(y.tolist()) == {0, 1, 2}
    assert len(y) == int((full.class_to_vertical[y_full] == 1).sum())


def test_train_parts_partition_the_training_samples(idx_dir):
    full = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, train_parts=3)
    full.setup()
    sizes = []
    for part in range(3):
        dm = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, train_parts=3, train_part=part)
        dm.setup()
        sizes.append(len(dm.split("train")[1]))
        assert torch.equal(dm.split("train")[0], full.split("train")[0][full.train_fold == part])
    assert sum(sizes) == len(full.split("train")[1])


def test_pairs_have_100_classes_built_from_two_real_items(idx_dir):
    single = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS)
    single.setup()
    dm = VerticalDataModule(f"pairs:{idx_dir}", verticals=VERTICALS, num_train=64, num_test=32, seed=3)
    dm.setup()
    x, y = dm.split("train")
    assert dm.num_classes == 100 and x.shape == (64, 1, 28, 56)
    assert [len(v) for v in dm.verticals] == [40, 30, 30]
    # Each half is a real image whose label is the matching digit of the pair label.
    images, labels = single._splits["train"][0].squeeze(1), single._splits["train"][1]
    images = torch.cat([images, single._splits["val"][0].squeeze(1)])
    labels = torch.cat([labels, single._splits["val"][1]])
    for i in range(4):
        for half, digit in ((x[i, 0, :, :28], int(y[i]) // 10), (x[i, 0, :, 28:], int(y[i]) % 10)):
            match = (images == half).flatten(1).all(1)
            assert match.any() and set(labels[match].tolist()) == {digit}
    again = VerticalDataModule(f"pairs:{idx_dir}", verticals=VERTICALS, num_train=64, num_test=32, seed=3)
    again.setup()
    assert torch.equal(again.split("train")[0], x)  # deterministic given the seed
    nine = VerticalDataModule(f"pairs:{idx_dir}", verticals=VERTICALS, pair_grouping="pair", num_train=8, num_test=8)
    assert len(nine.verticals) == 9


def test_cached_targets_join_training_batches(idx_dir):
    dm = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, batch_size=16)
    dm.setup()
    n = len(dm.split("train")[1])
    dm.set_train_targets(torch.rand(n, 10))
    assert len(next(iter(dm.train_dataloader()))) == 3
    with pytest.raises(ValueError, match=r"targets must have shape \[N_train="):
        dm.set_train_targets(torch.rand(n + 1, 10))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "cifar"}, "dataset must be"),
        ({"verticals": [[0, 1], [1, 2]]}, "overlap"),
        ({"pair_grouping": "diag"}, "pair_grouping"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"train_part": 2}, "train_part"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VerticalDataModule(**kwargs)


def test_bad_arguments_found_at_setup(idx_dir, tmp_path):
    with pytest.raises(ValueError, match="missing classes"):
        VerticalDataModule(f"idx:{idx_dir}", verticals=[[0, 1, 2], [3, 4]]).setup()
    with pytest.raises(ValueError, match="vertical must be in"):
        VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, vertical=3).setup()
    with pytest.raises(FileNotFoundError):
        VerticalDataModule(f"idx:{tmp_path}").setup()
