import json

import pytest

from domain_moe.vision import benchmark

TINY = [
    "--dataset",
    "synthetic",
    "--seeds",
    "1",
    "--num-train",
    "96",
    "--num-test",
    "48",
    "--expert-steps",
    "2",
    "--probe-steps",
    "2",
    "--router-steps",
    "2",
    "--adapter-steps",
    "2",
    "--prealign-steps",
    "1",
    "--batch-size",
    "16",
]


def test_records_follow_the_contract_and_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.json"
    args = [
        *TINY,
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--methods",
        "single-experts",
        "mova",
        "astrea-no-moco",
    ]
    records = benchmark.main(args)
    keys = {"dataset", "method", "metric", "mean", "std", "n", "values", "higher_is_better", "device", "seconds"}
    assert all(set(r) == keys for r in records)
    methods = {r["method"] for r in records}
    assert {"expert:base", "expert:segmentation", "best-single-expert", "mova", "astrea-no-moco"} <= methods
    acc = {r["method"]: r["mean"] for r in records if r["metric"] == "acc"}
    singles = [v for k, v in acc.items() if k.startswith("expert:")]
    assert acc["best-single-expert"] == max(singles)
    assert json.loads(out.read_text()) == records
    assert "| synthetic | mova |" in capsys.readouterr().out
    # A second call finds every run done and trains nothing.
    monkeypatch.setattr(benchmark, "run_method", lambda *a, **k: pytest.fail("recomputed a finished run"))
    monkeypatch.setattr(benchmark, "prepare", lambda *a, **k: pytest.fail("prepared again"))
    assert benchmark.main(args) == records


def test_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        benchmark.main([*TINY, "--out", str(tmp_path / "r.json"), "--methods", "mova-xl"])
