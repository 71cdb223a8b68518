import numpy as np
import pytest

from domain_moe.rl.contexts import ContextSampler
from domain_moe.rl.envs import DarkRoom
from domain_moe.rl.histories import generate_histories


@pytest.fixture
def histories():
    return generate_histories(
        "domain_moe/DarkRoom-v0",
        DarkRoom.all_cells(5)[:12],
        "noise",
        6,
        seed=0,
        env_kwargs={"grid_size": 5, "episode_length": 4},
    )


def test_batch_layout_two_views_per_task(histories):
    batch = ContextSampler(histories, 3).sample(8, np.random.default_rng(0))
    assert batch["states"].shape == (16, 12, 12) and batch["actions"].shape == (16, 12, 5)
    assert batch["targets"].shape == (16, 12) and batch["rewards"].shape == (16, 12)
    task = batch["task"].numpy()
    np.testing.assert_array_equal(task[:8], task[8:])
    assert len(set(task[:8].tolist())) == 8  # distinct tasks: no false negatives in a half
    assert batch["timesteps"][0].tolist() == [0, 1, 2, 3] * 3


def test_consecutive_windows_copy_the_history(histories):
    sampler = ContextSampler(histories, 2)
    batch = sampler.gather(np.array([5]), np.array([[2, 3]]))
    np.testing.assert_array_equal(batch["targets"][0].numpy(), histories.actions[5, 2:4].reshape(-1))
    np.testing.assert_array_equal(batch["rewards"][0].numpy(), histories.rewards[5, 2:4].reshape(-1))
    eps = sampler.episodes(0, np.random.default_rng(1))
    assert np.all(np.diff(eps) == 1)


def test_sorted_windows_order_by_return(histories):
    sampler = ContextSampler(histories, 3, window="sorted")
    rng = np.random.default_rng(0)
    for task in range(12):
        eps = sampler.episodes(task, rng)
        assert np.all(np.diff(histories.returns()[task, eps]) >= 0)


def test_bad_arguments(histories):
    with pytest.raises(ValueError, match="context_episodes must be in \\[1, 6\\], got 7"):
        ContextSampler(histories, 7)
    with pytest.raises(ValueError, match="window"):
        ContextSampler(histories, 2, window="random")


def test_several_histories_per_task_pair_views_by_task():
    goals = DarkRoom.all_cells(5)[:6]
    hist = generate_histories(
        "domain_moe/DarkRoom-v0",
        np.repeat(goals, 4, axis=0),
        "noise",
        6,
        seed=0,
        env_kwargs={"grid_size": 5, "episode_length": 4},
    )
    task_ids = np.repeat(np.arange(6), 4)
    sampler = ContextSampler(hist, 2, task_ids=task_ids)
    rows_seen = set()
    for seed in range(20):
        batch = sampler.sample(6, np.random.default_rng(seed))
        task = batch["task"].numpy()
        np.testing.assert_array_equal(task[:6], task[6:])
        assert sorted(task[:6].tolist()) == list(range(6))  # distinct tasks, never a history id
        # Every view's data comes from a history of its task: match the goal through the rewarded cells.
        for b in range(12):
            rows = np.flatnonzero(task_ids == task[b])
            states = batch["states"][b].numpy()
            matches = {
                int(r)
                for r in rows
                for e in range(5)
                if np.array_equal(states, sampler.states[r, e : e + 2].reshape(states.shape))
            }
            assert matches  # the view is a window of a history of its own task
            rows_seen.update(matches)
    assert len(rows_seen) > 6  # more than one history per task is used
    with pytest.raises(ValueError, match="task_ids"):
        ContextSampler(hist, 2, task_ids=np.zeros(3))
