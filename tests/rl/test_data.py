import numpy as np
import pytest

from domain_moe.rl.data import ICRLDataModule

KW = {"grid_size": 5, "episode_length": 4}


def test_sizes_and_batches(tmp_path):
    dm = ICRLDataModule(
        env_kwargs=KW,
        num_train_tasks=10,
        num_test_tasks=5,
        num_episodes=5,
        context_episodes=2,
        tasks_per_batch=4,
        batches_per_epoch=3,
        history_path=str(tmp_path / "h.npz"),
    )
    assert (dm.state_dim, dm.action_dim, dm.discrete_actions) == (12, 5, True)
    assert (dm.max_episode_steps, dm.max_context_steps) == (4, 8)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and batches[0]["states"].shape == (8, 8, 12)
    assert (tmp_path / "h.npz").is_file()
    # Reloading the written histories gives the same training data.
    dm2 = ICRLDataModule(
        env_kwargs=KW,
        num_train_tasks=10,
        num_test_tasks=5,
        num_episodes=5,
        context_episodes=2,
        tasks_per_batch=4,
        batches_per_epoch=3,
        history_path=str(tmp_path / "h.npz"),
        history_seed=99,
    )
    dm2.setup("fit")
    np.testing.assert_array_equal(dm2.histories.actions, dm.histories.actions)
    goals = next(iter(dm.test_dataloader()))["goals"]
    assert goals.shape == (5, 2)


def test_epochs_are_seeded():
    def first(seed):
        dm = ICRLDataModule(
            env_kwargs=KW,
            num_train_tasks=10,
            num_test_tasks=5,
            num_episodes=5,
            context_episodes=2,
            tasks_per_batch=4,
            batches_per_epoch=2,
            seed=seed,
        )
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))["task"]

    assert first(0).tolist() == first(0).tolist() != first(1).tolist()


def test_eval_tasks_override_the_split():
    dm = ICRLDataModule(
        env_kwargs=KW, num_train_tasks=10, num_test_tasks=5, num_episodes=5, eval_tasks=[[0, 0], [4, 4]]
    )
    dm.setup("test")
    assert dm.goals_for_test.tolist() == [[0, 0], [4, 4]]


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="env_id"):
        ICRLDataModule(env_id="domain_moe/Nope-v0")
    dm = ICRLDataModule(
        env_kwargs=KW, num_train_tasks=10, num_test_tasks=5, num_episodes=5, history_path=str(tmp_path / "h.npz")
    )
    dm.setup()
    other = ICRLDataModule(env_kwargs=KW, num_train_tasks=8, num_test_tasks=5, history_path=str(tmp_path / "h.npz"))
    with pytest.raises(ValueError, match="holds 10 histories"):
        other.setup()


def test_several_histories_per_task(tmp_path):
    kwargs = dict(
        env_kwargs=KW,
        num_train_tasks=6,
        num_test_tasks=5,
        num_episodes=5,
        context_episodes=2,
        tasks_per_batch=6,
        batches_per_epoch=2,
        histories_per_task=3,
        history_path=str(tmp_path / "h.npz"),
    )
    dm = ICRLDataModule(**kwargs)
    dm.setup("fit")
    assert dm.histories.num_tasks == 18
    np.testing.assert_array_equal(dm.histories.goals, np.repeat(dm.train_goals, 3, axis=0))
    # The histories of one goal are independent runs, not copies.
    assert not np.array_equal(dm.histories.actions[0], dm.histories.actions[1])
    batch = next(iter(dm.train_dataloader()))
    assert sorted(batch["task"][:6].tolist()) == list(range(6))  # task ids, not history rows
    dm2 = ICRLDataModule(**kwargs)
    dm2.setup("fit")  # reloads the file
    np.testing.assert_array_equal(dm2.train_goals, dm.train_goals)
    with pytest.raises(ValueError, match="holds 18 histories"):
        ICRLDataModule(**{**kwargs, "histories_per_task": 2}).setup("fit")
    with pytest.raises(ValueError, match="histories_per_task"):
        ICRLDataModule(**{**kwargs, "histories_per_task": 0})
