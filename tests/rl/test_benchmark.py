import json

import pytest

from domain_moe.rl import benchmark


def test_parse_eval_tasks():
    assert benchmark.parse_eval_tasks("n=4,seed=9") == (4, 9)
    with pytest.raises(ValueError, match="n=<int>"):
        benchmark.parse_eval_tasks("count=4")


def test_tiny_run_writes_records_and_resumes(tmp_path, monkeypatch):
    env = dict(benchmark.ENVS["dark-room"], steps=2, eval_episodes=3, num_episodes=4, context_episodes=2)
    env["env_kwargs"] = {"grid_size": 7, "episode_length": 4}
    monkeypatch.setitem(benchmark.ENVS, "dark-room", env)
    out = tmp_path / "r.json"
    argv = [
        "--env",
        "dark-room",
        "--variants",
        "t2mir,ad-dense-matched",
        "--seeds",
        "2",
        "--eval-tasks",
        "n=2,seed=1",
        "--out",
        str(out),
    ]
    lines = []
    records = benchmark.main(argv, log=lines.append)
    keys = {(r["method"], r["metric"]) for r in records}
    assert {
        ("t2mir", "first_return"),
        ("t2mir", "final_return"),
        ("ad-dense-matched", "final_return"),
        ("t2mir", "token_entropy_ratio"),
        ("t2mir", "task_nmi"),
        ("source", "return_ep1"),
    } <= keys
    rec = next(r for r in records if r["method"] == "t2mir" and r["metric"] == "final_return")
    assert rec["n"] == 2 and len(rec["values"]) == 2 and set(rec) >= {"dataset", "std", "higher_is_better", "device"}
    assert json.loads(out.read_text()) == records
    assert "| t2mir |" in lines[-1]
    # Resuming recomputes nothing.
    monkeypatch.setattr(benchmark, "run_one", lambda *a, **k: pytest.fail("recomputed a finished run"))
    assert benchmark.main(argv, log=lambda _: None) == records


def test_unknown_variant():
    with pytest.raises(SystemExit):
        benchmark.main(["--variants", "moe", "--out", "x.json"])


def test_dark_room_trains_on_several_histories_per_goal():
    # One history per goal (39 in all) was memorised instead of distilled into an in-context learner.
    assert benchmark.ENVS["dark-room"]["histories_per_task"] >= 8
