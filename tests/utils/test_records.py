import json
import math

import pytest

from domain_moe.utils.records import RunLog, lower_is_better, record, summarise

KEYS = ["dataset", "method", "metric", "mean", "std", "n", "values", "higher_is_better", "device", "seconds"]


def _run(method, seed, metrics, seconds=1.0, dataset="d"):
    return {"dataset": dataset, "method": method, "seed": seed, "metrics": metrics, "seconds": seconds}


def test_run_log_round_trip_and_resume_keys(tmp_path):
    log = RunLog.beside(tmp_path / "sub" / "results.json")
    assert log.path == tmp_path / "sub" / "results.json.runs.jsonl"
    assert log.load() == [] and log.done("method", "seed") == set()  # nothing finished yet
    runs = [_run("a", 0, {"acc": 0.5, "nan": math.nan}), _run("b", 1, {"acc": 0.25}, seconds=2.5)]
    for run in runs:
        log.append(run)
    # The on-disk format every benchmark has written: json.dumps of the run, one line each.
    assert log.path.read_text() == "".join(json.dumps(r) + "\n" for r in runs)
    loaded = log.load()
    assert loaded[1] == runs[1] and math.isnan(loaded[0]["metrics"]["nan"])
    assert log.done("method", "seed") == {("a", 0), ("b", 1)}
    assert RunLog(log.path).done("dataset", "method", "seed") == {("d", "a", 0), ("d", "b", 1)}


def test_run_log_skips_blank_lines(tmp_path):
    path = tmp_path / "r.runs.jsonl"
    path.write_text(json.dumps(_run("a", 0, {})) + "\n\n")
    assert len(RunLog(path).load()) == 1


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "r.json.runs.jsonl"
    path.write_text(json.dumps(_run("a", 0, {"acc": 1.0})) + "\n" + '{"dataset": "d", "meth\n')  # cut off mid-write
    with pytest.raises(ValueError, match=rf"{path}:2"):
        RunLog(path).load()
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=rf"{path}:1 is a list"):
        RunLog(path).load()


def test_done_names_a_missing_key(tmp_path):
    log = RunLog(tmp_path / "r.runs.jsonl")
    log.append({"method": "a"})
    with pytest.raises(ValueError, match=r"r.runs.jsonl:1 has no 'seed'"):
        log.done("method", "seed")
    with pytest.raises(ValueError, match="keys"):
        log.done()


def test_summarise_matches_a_hand_computation():
    runs = [
        _run("m", 0, {"acc": 70.0, "loss": 0.5}, seconds=10.0),
        _run("m", 1, {"acc": 74.0}, seconds=20.0),
        _run("m", 2, {"acc": 72.0, "loss": 0.3}, seconds=30.0),
        _run("single", 0, {"acc": 60.0}, seconds=5.0),
    ]
    records = summarise(runs, "cpu", lower_is_better(suffixes=("loss",)))
    assert [list(r) for r in records] == [KEYS] * 3
    acc, loss, single = records
    assert (acc["method"], acc["metric"], acc["values"], acc["n"]) == ("m", "acc", [70.0, 74.0, 72.0], 3)
    assert acc["mean"] == pytest.approx(72.0)
    assert acc["std"] == pytest.approx(2.0)  # sqrt(((-2)^2 + 2^2 + 0^2) / (3 - 1))
    assert loss["mean"] == pytest.approx(0.4) and loss["std"] == pytest.approx(math.sqrt(0.02)) and loss["n"] == 2
    assert single["std"] == 0.0 and single["n"] == 1 and single["mean"] == 60.0  # one value: std 0
    assert acc["seconds"] == loss["seconds"] == 60.0  # every run of the (dataset, method)
    assert (acc["higher_is_better"], loss["higher_is_better"]) == (True, False)
    assert {r["device"] for r in records} == {"cpu"}
    by_cell = summarise(runs, "cpu", seconds="cell")
    assert [r["seconds"] for r in by_cell] == [60.0, 40.0, 5.0]  # loss: runs 0 and 2 only


def test_rows_shape_becomes_one_method_per_row():
    runs = [
        {"dataset": "d", "method": "all", "seed": s, "rows": {"e1": {"acc": a}, "e2": {"acc": b}}, "seconds": 2.0}
        for s, (a, b) in enumerate([(0.5, 0.7), (0.7, math.nan)])
    ]
    e1, e2 = summarise(runs, "gpu", nan="skip")
    assert (e1["method"], e1["mean"], e1["seconds"]) == ("e1", pytest.approx(0.6), 4.0)
    # NaN left out of mean and std, kept in values and counted in n.
    assert e2["mean"] == 0.7 and e2["std"] == 0.0 and e2["n"] == 2 and math.isnan(e2["values"][1])


@pytest.mark.parametrize(
    ("nan", "mean", "n", "values"),
    [
        ("keep", math.nan, 3, [1.0, math.nan, 3.0]),
        ("skip", 2.0, 3, [1.0, math.nan, 3.0]),
        ("null", 2.0, 2, [1.0, None, 3.0]),
    ],
)
def test_nan_policies(nan, mean, n, values):
    r = record("d", "m", "auc", [1.0, math.nan, 3.0], higher_is_better=True, device="cpu", seconds=0.0, nan=nan)
    assert r["n"] == n
    assert json.dumps(r["values"]) == json.dumps(values)
    if math.isnan(mean):
        assert math.isnan(r["mean"]) and math.isnan(r["std"])
    else:
        assert r["mean"] == mean and r["std"] == pytest.approx(math.sqrt(2.0))


def test_all_nan_cell():
    nans = [math.nan, math.nan]
    assert record("d", "m", "x", nans, higher_is_better=True, device="c", seconds=0, nan="null")["mean"] is None
    skipped = record("d", "m", "x", nans, higher_is_better=True, device="c", seconds=0, nan="skip")
    assert math.isnan(skipped["mean"]) and skipped["std"] == 0.0 and skipped["n"] == 2


def test_higher_is_better_rules():
    runs = [_run("m", 0, {"acc": 1.0, "step_ms": 2.0, "epochs": 3.0, "min_gate_usage": 0.1})]

    def flags(rule):
        return {r["metric"]: r["higher_is_better"] for r in summarise(runs, "cpu", rule)}

    assert set(flags(True).values()) == {True} and set(flags(False).values()) == {False}
    assert flags(lower_is_better({"epochs"}, suffixes=("_ms",))) == {
        "acc": True,
        "step_ms": False,
        "epochs": False,
        "min_gate_usage": True,
    }
    assert flags({"min_gate_usage"}) == {"acc": False, "step_ms": False, "epochs": False, "min_gate_usage": True}
    assert flags(lambda metric: metric == "acc")["acc"] is True
    with pytest.raises(TypeError, match="higher_is_better"):
        summarise(runs, "cpu", "acc")


def test_clear_errors():
    with pytest.raises(ValueError, match="seconds must be"):
        summarise([], "cpu", seconds="run")
    with pytest.raises(ValueError, match="nan must be"):
        record("d", "m", "x", [1.0], higher_is_better=True, device="c", seconds=0, nan="drop")
    with pytest.raises(ValueError, match="must not be empty"):
        record("d", "m", "x", [], higher_is_better=True, device="c", seconds=0)
    with pytest.raises(ValueError, match=r"runs\[1\] needs"):
        summarise([_run("m", 0, {"acc": 1.0}), {"method": "m", "metrics": {"acc": 1.0}}], "cpu")
