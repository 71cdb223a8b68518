import argparse
import json

import pytest
import torch

from domain_moe.graph.benchmark import build_task, main, parse_dataset, split_datasets, step_closures


def test_split_datasets():
    assert split_datasets("csbm:a=1,b=2,cora:split=public,texas") == ["csbm:a=1,b=2", "cora:split=public", "texas"]


def test_parse_dataset_errors():
    with pytest.raises(ValueError, match="unknown dataset"):
        parse_dataset("pubmed", 0, None)


def test_tiny_run_writes_contract_records_and_resumes(tmp_path, capsys):
    out = tmp_path / "r.json"
    args = [
        "--datasets",
        "csbm:num_nodes=60,num_features=4,num_classes=2",
        "--methods",
        "mlp,sage,mowst-gcn,mowst-star-sage",
        "--splits",
        "1",
        "--epochs",
        "2",
        "--pretrain",
        "1",
        "--turn",
        "1",
        "--hidden",
        "8",
        "--eval-every",
        "1",
        "--step-reps",
        "1",
        "--out",
        str(out),
    ]
    records = main(args)
    keys = {"dataset", "method", "metric", "mean", "std", "n", "values", "higher_is_better", "device", "seconds"}
    assert all(keys <= set(r) for r in records)
    metrics = {(r["method"], r["metric"]) for r in records}
    assert {
        ("mlp", "auroc"),
        ("mowst-gcn", "auroc"),
        ("mowst-gcn", "gnn_work_saved"),
        ("mowst-gcn", "weak_share"),
        ("mowst-gcn", "expected_auroc"),
        ("mowst-gcn", "weak_step_ms"),
        ("mowst-star-sage", "step_ms"),
        ("sage", "step_ms"),
    } <= metrics
    assert all(r["mean"] > 0 for r in records if r["metric"].endswith("_ms"))
    assert all(not r["higher_is_better"] for r in records if r["metric"] in ("step_ms", "epochs"))
    assert json.loads(out.read_text()) == records
    capsys.readouterr()
    main(args)  # resumes: nothing is retrained
    assert '"split"' not in capsys.readouterr().out


def test_hyper_gate_with_holdout_runs(tmp_path):
    args = ["--datasets", "csbm:num_nodes=60,num_features=4,num_classes=3", "--methods", "mowst-gcn", "--splits", "1"]
    args += [
        "--pretrain",
        "1",
        "--pretrain-weak",
        "1",
        "--turn",
        "1",
        "--rounds",
        "1",
        "--hidden",
        "8",
        "--eval-every",
        "1",
    ]
    args += ["--gate", "hyper", "--gate-holdout", "0.3", "--step-reps", "0", "--out", str(tmp_path / "h.json")]
    records = main(args)
    metrics = {r["metric"]: r for r in records}
    assert "step_ms" not in metrics and 0.0 <= metrics["mean_confidence"]["mean"] <= 1.0
    assert metrics["epochs"]["mean"] <= 4


def test_timing_mode_reports_step_ratios(tmp_path):
    args = ["--datasets", "csbm:num_nodes=60,num_features=4,num_classes=3", "--methods", "gcn,mowst-gcn,mowst-star-gcn"]
    args += ["--timing", "--step-reps", "2", "--hidden", "8", "--out", str(tmp_path / "t.json")]
    records = {(r["method"], r["metric"]): r for r in main(args)}
    assert records[("gcn", "step_ms")]["mean"] > 0
    assert ("gcn", "step_ratio") not in records
    for method in ("mowst-gcn", "mowst-star-gcn"):
        assert records[(method, "step_ratio")]["mean"] > 0
        assert not records[(method, "step_ratio")]["higher_is_better"]


def test_step_closures_leave_the_trained_model_alone():
    dm = parse_dataset("csbm:num_nodes=60,num_features=4,num_classes=3", 0, None)
    args = argparse.Namespace(
        hidden=8,
        layers=2,
        dropout=0.5,
        batch_norm=True,
        lr=0.01,
        weight_decay=0.0,
        sparse=True,
        gate="mlp",
        gate_features=False,
        gate_dropout=0.0,
        pretrain=1,
        pretrain_patience=0,
        turn_patience=0,
        gate_holdout=0.0,
        turn=1,
        outer_patience=0,
        pretrain_weak=0,
    )
    task = build_task("mowst-gcn", dm, args)
    steps = step_closures(task, dm.data)
    model = task.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps["weak_step"]()
    steps["strong_step"]()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # closures work on a copy
