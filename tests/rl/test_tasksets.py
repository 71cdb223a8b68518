import numpy as np
import pytest

from domain_moe.rl.tasksets import draw_eval_tasks, split_tasks


def test_dark_room_split_is_disjoint_and_seeded():
    train, test = split_tasks("domain_moe/DarkRoom-v0", 39, 10, seed=0)
    assert len(train) == 39 and len(test) == 10
    assert not {tuple(c) for c in train} & {tuple(c) for c in test}
    again, _ = split_tasks("domain_moe/DarkRoom-v0", 39, 10, seed=0)
    np.testing.assert_array_equal(train, again)
    with pytest.raises(ValueError, match="<= 49 cells"):
        split_tasks("domain_moe/DarkRoom-v0", 45, 10)


def test_eval_tasks_never_train():
    train, _ = split_tasks("domain_moe/DarkRoom-v0", 39, 10, seed=0)
    drawn = draw_eval_tasks("domain_moe/DarkRoom-v0", 10, 5, train)
    assert not {tuple(c) for c in drawn} & {tuple(c) for c in train}
    train_p, test_p = split_tasks("domain_moe/PointRobot-v0", 20, 5, seed=0)
    drawn_p = draw_eval_tasks("domain_moe/PointRobot-v0", 10, 5, train_p)
    assert drawn_p.shape == (10, 2) and np.abs(drawn_p[:, None] - train_p[None]).sum(-1).min() > 0
    with pytest.raises(ValueError, match="env_id"):
        split_tasks("x", 1, 1)
