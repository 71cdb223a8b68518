import json

import pytest

from domain_moe.graph.benchmark import main, parse_dataset, split_datasets


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
        "mlp,mowst-gcn",
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
    } <= metrics
    assert json.loads(out.read_text()) == records
    capsys.readouterr()
    main(args)  # resumes: nothing is retrained
    assert '"split"' not in capsys.readouterr().out
