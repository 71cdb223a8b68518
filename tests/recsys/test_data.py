import math

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

from domain_moe.recsys.data import (
    CensusIncomeDataModule,
    HoMESyntheticDataModule,
    MMoESyntheticDataModule,
    MovieLensDataModule,
    RecBatch,
    RecDataset,
    home_synthetic,
    mmoe_synthetic,
)


@pytest.mark.parametrize("p", [1.0, 0.9, 0.5, 0.0, -0.5])
def test_mmoe_generator_has_the_papers_task_correlation(p):
    x, y, info = mmoe_synthetic(20_000, p, input_dim=100, seed=3)
    w1, w2 = info["w1"], info["w2"]
    assert float(w1 @ w2 / (w1.norm() * w2.norm())) == pytest.approx(p, abs=1e-6)
    assert float(w1.norm()) == pytest.approx(1.0, abs=1e-9) and float(w2.norm()) == pytest.approx(1.0, abs=1e-9)
    assert info["alpha"].shape == (10,) and info["beta"].shape == (10,)
    # Recompute the labels from the definition: the residual is the noise, std 0.1 (variance 0.01).
    xd = x.double()
    clean = torch.stack(
        [xd @ w + torch.sin(info["alpha"] * (xd @ w).unsqueeze(1) + info["beta"]).sum(1) for w in (w1, w2)], 1
    )
    noise = y.double() - clean
    assert float(noise.std()) == pytest.approx(0.1, rel=0.03)
    assert abs(float(noise.mean())) < 0.01


def test_mmoe_linear_case_label_correlation_is_p():
    _, y, _ = mmoe_synthetic(50_000, 0.5, num_sines=0, noise_std=0.0, seed=1)
    assert float(np.corrcoef(y.T.numpy())[0, 1]) == pytest.approx(0.5, abs=0.02)


def test_mmoe_datamodule_splits_share_task_weights():
    dm = MMoESyntheticDataModule(correlation=0.9, num_train=100, num_val=20, num_test=30, batch_size=16, seed=2)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 100, "val": 20, "test": 30}
    assert not torch.equal(dm.splits["train"].data.dense[:20], dm.splits["val"].data.dense)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, RecBatch) and batch.dense.shape == (16, 100) and batch.labels.shape == (16, 2)
    again = MMoESyntheticDataModule(correlation=0.9, num_train=100, num_val=20, num_test=30, seed=2)
    again.setup()
    assert torch.equal(again.splits["test"].data.labels, dm.splits["test"].data.labels)
    with pytest.raises(ValueError, match="correlation"):
        MMoESyntheticDataModule(correlation=1.5)


def test_home_synthetic_rates_groups_and_correlations():
    data = home_synthetic(num_samples=60_000, num_users=300, num_items=200, seed=0)
    rates = data["labels"].mean(0).tolist()
    for got, want in zip(rates, [0.30, 0.20, 0.08, 0.03, 0.01, 0.005]):
        assert got == pytest.approx(want, rel=0.25)
    corr = data["score_correlation"]
    assert float(corr[1, 2]) > 0.7 and float(corr[3, 4]) > 0.7  # within a group
    assert float(corr[1, 3]) < 0.4  # across groups
    assert data["task_groups"] == {"watch": ["effective_view", "long_view"], "interact": ["like", "comment", "follow"]}
    assert (data["sparse"].max(0).values < torch.tensor(data["cardinalities"])).all()


def test_home_datamodule_conditional_masks():
    dm = HoMESyntheticDataModule(num_samples=3000, num_users=50, num_items=30, conditional=True, batch_size=100)
    dm.setup()
    data = dm.splits["train"].data
    comment = dm.task_names.index("comment")
    assert torch.equal(data.mask[:, comment], data.labels[:, 0] > 0)
    assert bool(data.mask[:, 1].all()) and data.user is not None


def test_recbatch_validates_shapes():
    with pytest.raises(ValueError, match=r"labels must have shape \[B, T\]"):
        RecBatch(labels=torch.zeros(3))
    with pytest.raises(ValueError, match="dense has 2 rows but labels has 3"):
        RecBatch(labels=torch.zeros(3, 2), dense=torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"mask must match"):
        RecBatch(labels=torch.zeros(3, 2), mask=torch.ones(3, 1, dtype=torch.bool))
    ds = RecDataset(torch.zeros(5, 2), dense=torch.arange(10.0).view(5, 2))
    assert torch.equal(ds.__getitems__([3, 1]).dense, torch.tensor([[6.0, 7.0], [2.0, 3.0]]))


@pytest.fixture(scope="module")
def census(data_root):
    root = data_root / "recsys" / "census-income"
    if not root.is_dir():
        pytest.skip(f"{root} not available")
    return root


def test_census_income_tasks_features_and_split(census):
    dm = CensusIncomeDataModule(census, group=1)
    labels = dm._arrays["labels"]
    assert labels.shape == (99_762, 2)
    assert int(labels[:, 0].sum()) == 6_186 and int(labels[:, 1].sum()) == 43_143
    assert float(np.corrcoef(labels.T)[0, 1]) == pytest.approx(-0.1787, abs=5e-4)
    # 42 columns - weight - income - marital = 39 features: 7 continuous + 32 categorical.
    assert dm.num_dense == 7 and len(dm.cardinalities) == 32
    dm.setup()
    sizes = [len(dm.splits[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 99_762 and sizes[0] == pytest.approx(0.6 * 99_762, abs=3)
    train = dm.splits["train"].data
    assert float(train.dense.mean(0).abs().max()) < 1e-4  # standardised with training statistics
    rate = [float(dm.splits[s].data.labels[:, 0].mean()) for s in ("train", "test")]
    assert rate[0] == pytest.approx(rate[1], abs=1e-3)  # stratified
    group2 = CensusIncomeDataModule(census, group=2)
    assert group2.task_names == ["education", "marital"] and len(group2.cardinalities) == 31  # education dropped
    assert float(np.corrcoef(group2._arrays["labels"].T)[0, 1]) == pytest.approx(-0.2376, abs=5e-4)
    assert float(group2._arrays["labels"][:, 0].mean()) == pytest.approx(0.195, abs=1e-3)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"census-income.test.gz.*DOMAIN_MOE_DATA"):
        CensusIncomeDataModule(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ratings\.csv"):
        MovieLensDataModule(tmp_path)
    with pytest.raises(ValueError, match="group must be 1 or 2"):
        CensusIncomeDataModule(tmp_path, group=3)


def test_movielens_tasks(data_root):
    root = data_root / "recsys" / "ml-latest-small"
    if not root.is_dir():
        pytest.skip(f"{root} not available")
    dm = MovieLensDataModule(root)
    labels = dm._arrays["labels"]
    assert labels.shape == (100_836, 3) and dm.task_types == ["regression", "binary", "binary"]
    assert torch.equal(torch.from_numpy(labels[:, 1]), torch.from_numpy((labels[:, 0] >= 4).astype(np.float32)))
    assert 0.005 < labels[:, 2].mean() < 0.05  # the sparse "tag" task
    assert dm.cardinalities[0] == 610 and math.isclose(labels[:, 0].min(), 0.5)
