"""Few-shot splits, their DataModule, and the GMoPE benchmark's contract on a tiny generated setting."""

import json

import pytest
import torch

from domain_moe.graph import fewshot
from domain_moe.graph.fewshot import FewShotDataModule, few_shot_split


def test_few_shot_split_counts_and_disjointness():
    y = torch.tensor([0] * 10 + [1] * 7 + [2] * 3)
    train, val, test = few_shot_split(y, shots=2, seed=0)
    for c, n_train, n_val in ((0, 2, 2), (1, 2, 2), (2, 2, 0)):
        assert int(train[y == c].sum()) == n_train and int(val[y == c].sum()) == n_val
    assert not (train & val).any() and not (train & test).any() and not (val & test).any()
    assert bool((train | val | test).all())
    assert int(test[y == 2].sum()) == 1  # a tiny class keeps a test node


def test_few_shot_split_small_classes_and_val_shots():
    y = torch.tensor([0, 1, 1, 1, 1, 1, 1])
    train, val, _ = few_shot_split(y, shots=5, seed=0, val_shots=0)
    assert int(train[0]) == 1 and int(train[1:].sum()) == 5 and not val.any()


def test_few_shot_split_is_seeded():
    y = torch.arange(60) % 4
    a = few_shot_split(y, 3, seed=7)
    b = few_shot_split(y, 3, seed=7)
    c = few_shot_split(y, 3, seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize(("kwargs", "match"), [({"shots": 0}, "shots"), ({"val_shots": -1}, "val_shots")])
def test_few_shot_split_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        few_shot_split(torch.arange(6) % 2, **{"shots": 1, **kwargs})
    with pytest.raises(ValueError, match=r"y must be \[N\]"):
        few_shot_split(torch.zeros(2, 2, dtype=torch.long), 1)


def test_datamodule_aligns_and_splits():
    dm = FewShotDataModule("csbm:num_nodes=90,num_features=20,num_classes=3,seed=1", shots=4, num_features=8)
    assert dm.num_features == 8 and dm.num_classes == 3 and dm.metric == "accuracy"
    data = dm.data
    assert data.x.shape == (90, 8)
    assert int(data.train_mask.sum()) == 12 and int(data.val_mask.sum()) == 12
    raw = FewShotDataModule("csbm:num_nodes=90,num_features=20,seed=1", num_features=None)
    assert raw.num_features == 20
    with pytest.raises(ValueError, match="shots"):
        FewShotDataModule(shots=0)
    with pytest.raises(ValueError, match="num_features"):
        FewShotDataModule(num_features=0)


def test_benchmark_records_and_resume(tmp_path, capsys):
    out = tmp_path / "fs.json"
    argv = [
        "--targets",
        "csbm:num_nodes=120,num_features=10,num_classes=3,seed=4",
        "--sources",
        "csbm:num_nodes=80,num_features=14,seed=1",
        "--methods",
        "gnn-scratch,pretrain-gpf,gmope,gmope-random-router",
        "--shots",
        "1",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--num-features",
        "8",
        "--hidden",
        "8",
        "--experts",
        "2",
        "--egos-per-graph",
        "16",
        "--pretrain-epochs",
        "1",
        "--tune-epochs",
        "3",
    ]
    records = fewshot.main(argv)
    keys = {"dataset", "method", "metric", "mean", "std", "n", "values", "higher_is_better", "device", "seconds"}
    assert all(set(r) == keys for r in records)
    acc = {r["method"]: r for r in records if r["metric"] == "accuracy"}
    assert set(acc) == {"gnn-scratch", "pretrain-gpf", "gmope", "gmope-random-router"}
    assert all(r["n"] == 2 and 0 <= r["mean"] <= 100 for r in acc.values())
    params = {r["method"]: r["mean"] for r in records if r["metric"] == "trainable_params"}
    summary = 3 * 8 + 1
    assert params["gmope"] == 2 * 8 + 2 * summary + 8 * 3 + 3  # prompts + router + head
    assert params["gmope-random-router"] == 2 * 8 + 8 * 3 + 3
    assert {r["method"] for r in records if r["metric"] == "prompt_cos"} == {"gmope", "gmope-random-router"}
    assert json.loads(out.read_text()) == records
    assert sorted(p.name for p in (tmp_path / "fewshot_ckpt").glob("*.pt")) == [
        "csbm:num_nodes=120,num_features=10,num_classes=3,seed=4-gmope-F8-E1.pt",
        "csbm:num_nodes=120,num_features=10,num_classes=3,seed=4-single-F8-E1.pt",
    ]
    assert "| dataset | gnn-scratch |" in capsys.readouterr().out
    runs = (tmp_path / "fs.json.runs.jsonl").read_text()
    again = fewshot.main(argv)  # resumable: nothing recomputed
    assert (tmp_path / "fs.json.runs.jsonl").read_text() == runs
    assert [r["values"] for r in again] == [r["values"] for r in records]


def test_benchmark_rejects_unknown_methods(tmp_path):
    with pytest.raises(SystemExit):
        fewshot.main(["--methods", "gmope,lora", "--out", str(tmp_path / "x.json")])
