import json

import pytest

from domain_moe.distill import benchmark
from domain_moe.distill.benchmark import METHODS, main, matched_fc_width, parse_verticals
from domain_moe.distill.models import head_weight_count


def test_matched_fc_width_is_closest_to_the_sc_head():
    s2 = matched_fc_width(32, 64, 16, 3, 100)
    target = head_weight_count("fc_sc", 32, 64, 16, 3, 100)
    best = min(range(1, 200), key=lambda w: abs(head_weight_count("fc", 32, 64, w, 3, 100) - target))
    assert abs(s2 - best) <= 1


def test_parse_verticals():
    assert parse_verticals("0,2,4,6/5,7,9/1,3,8") == [[0, 2, 4, 6], [5, 7, 9], [1, 3, 8]]
    assert parse_verticals(None) is None


def test_records_follow_the_contract_and_resume(idx_dir, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    argv = [
        "--dataset", f"idx:{idx_dir}", "--verticals", "0,2,4,6/5,7,9/1,3,8",
        "--methods", *METHODS, "--seeds", "1", "--out", str(out),
        "--num-train", "120", "--epochs", "1", "--teacher-epochs", "1", "--teacher", "convnet",
        "--teacher-widths", "4", "--student-widths", "4", "--shared-width", "8", "--block-width", "4",
        "--batch-size", "64",
    ]  # fmt: skip
    records = main(argv)
    keys = {"dataset", "method", "metric", "mean", "std", "n", "values", "higher_is_better", "device", "seconds"}
    assert all(set(r) == keys for r in records)
    cells = {(r["method"], r["metric"]) for r in records}
    for method in METHODS:
        assert {(method, "acc"), (method, "acc/v0"), (method, "acc_within/v2"), (method, "params")} <= cells
    acc = {r["method"]: r for r in records if r["metric"] == "acc"}
    assert all(0.0 <= r["mean"] <= 100.0 and r["n"] == 1 for r in acc.values())
    spec = {r["metric"]: r["mean"] for r in records if r["method"] == "specialists"}
    assert spec["acc/v1"] == spec["acc_within/v1"]  # the oracle never leaves the true vertical
    assert json.loads(out.read_text()) == records
    assert (tmp_path / "r.json.teachers").is_dir()
    lines = (tmp_path / "r.json.runs.jsonl").read_text().splitlines()

    def boom(*args, **kwargs):
        raise AssertionError("finished cells must not be recomputed")

    monkeypatch.setattr(benchmark, "run_one", boom)
    assert main(argv) == records
    assert (tmp_path / "r.json.runs.jsonl").read_text().splitlines() == lines


def test_softmax_variant_runs(idx_dir, tmp_path):
    argv = [
        "--dataset", f"idx:{idx_dir}", "--verticals", "0,2,4,6/5,7,9/1,3,8", "--loss", "ce",
        "--methods", "specialists", "concentration", "--seeds", "1", "--out", str(tmp_path / "ce.json"),
        "--num-train", "120", "--epochs", "1", "--teacher-epochs", "1", "--teacher", "convnet",
        "--teacher-widths", "4", "--student-widths", "4", "--shared-width", "8", "--block-width", "4",
        "--no-cross-fit",
    ]  # fmt: skip
    records = main(argv)
    assert {r["method"] for r in records} == {"specialists", "concentration"}


def test_unknown_method_is_rejected(tmp_path):
    with pytest.raises(SystemExit):
        main(["--methods", "distill-everything", "--out", str(tmp_path / "x.json")])


def test_cross_fitted_teachers_get_the_full_teachers_optimizer_steps(idx_dir, tmp_path, monkeypatch):
    """A teacher trained on one of two folds needs twice the epochs for as many steps as the full-data one."""
    counts: list[int] = []
    fit = benchmark._fit

    def counting_fit(task_cls, model, loader, epochs, args, **kwargs):
        counts.append(epochs * len(loader))
        return fit(task_cls, model, loader, epochs, args, **kwargs)

    monkeypatch.setattr(benchmark, "_fit", counting_fit)
    argv = [
        "--dataset", f"idx:{idx_dir}", "--verticals", "0,2,4,6/5,7,9/1,3,8",
        "--methods", "specialists", "concentration", "--seeds", "1", "--out", str(tmp_path / "cf.json"),
        "--num-train", "240", "--epochs", "1", "--teacher-epochs", "2", "--teacher", "convnet",
        "--teacher-widths", "4", "--student-widths", "4", "--shared-width", "8", "--block-width", "4",
        "--batch-size", "8",
    ]  # fmt: skip
    main(argv)
    # 3 full-data teachers, then fold 0's and fold 1's teachers of the 3 verticals, then the student
    assert len(counts) == 10
    full, parts = counts[:3], counts[3:9]
    for v in range(3):
        for fold_steps in (parts[v], parts[3 + v]):
            assert 0.75 * full[v] <= fold_steps <= 1.25 * full[v]  # the old default gave about half
    assert benchmark.teacher_epochs(benchmark.argparse.Namespace(teacher_epochs=3, cross_fit_epochs=5), 2, 1) == 5
