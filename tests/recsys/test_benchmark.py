import json

import pytest

pytest.importorskip("lightning")

from domain_moe.recsys import benchmark


def test_parse_dataset():
    assert benchmark.parse_dataset("mmoe:p=0.5,n=100") == ("mmoe", {"p": "0.5", "n": "100"})
    assert benchmark.parse_dataset("census-income") == ("census-income", {})
    with pytest.raises(ValueError, match="unknown dataset"):
        benchmark.parse_dataset("criteo")
    with pytest.raises(ValueError, match="key=value"):
        benchmark.parse_dataset("mmoe:p")


def test_every_model_builds(data_root):
    dm = benchmark.make_data("home-synthetic", {"n": "500", "users": "20", "items": "10"}, 0, data_root)
    for method in benchmark.MODELS:
        model = benchmark.build_model(method, "home-synthetic", dm)
        assert model.task_names == dm.task_names
    with pytest.raises(ValueError, match="unknown model"):
        benchmark.build_model("dcn", "mmoe", dm)


def test_records_follow_the_contract_and_runs_resume(tmp_path, data_root, capsys):
    out = tmp_path / "r.json"
    argv = ["--dataset", "mmoe:p=0.9,n=200,epochs=1", "--dataset", "home-synthetic:n=1500,users=30,items=20,epochs=1",
            "--models", "mmoe,home-no-mask", "--seeds", "2", "--out", str(out), "--data-root", str(data_root)]
    records = benchmark.main(argv, log=lambda s: None)
    assert json.loads(out.read_text()) == records
    keys = {"dataset", "method", "metric", "mean", "std", "n", "values", "higher_is_better", "device", "seconds"}
    assert all(set(r) == keys for r in records)
    by = {(r["dataset"], r["method"], r["metric"]): r for r in records}
    mse = by[("mmoe:p=0.9,n=200,epochs=1/task1", "mmoe", "mse")]
    assert mse["n"] == 2 and not mse["higher_is_better"] and len(mse["values"]) == 2
    assert ("mmoe:p=0.9,n=200,epochs=1", "mmoe", "mse_mean") in by
    spec = "home-synthetic:n=1500,users=30,items=20,epochs=1"
    assert by[(f"{spec}/follow", "home-no-mask", "auc")]["higher_is_better"]
    assert (f"{spec}/like", "home-no-mask", "gauc") in by and (spec, "home-no-mask", "diag_max_zero_rate") in by
    assert "| mmoe |" in capsys.readouterr().out
    # A second call finds every run in <out>.runs.jsonl and trains nothing.
    logged = []
    again = benchmark.main(argv, log=logged.append)
    assert not logged and [r["values"] for r in again] == [r["values"] for r in records]


def test_a_seed_reproduces_its_run(data_root):
    options = {"p": "0.5", "n": "300", "epochs": "2"}
    first = benchmark.run_one("mmoe", options, "ple", 3, data_root)
    assert benchmark.run_one("mmoe", options, "ple", 3, data_root) == first
    assert benchmark.run_one("mmoe", options, "ple", 4, data_root) != first
