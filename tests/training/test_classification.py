import doctest

import lightning as L
import pytest
import torch

import domain_moe.training.classification as classification_module
from domain_moe.training import ClassificationTask, DigitsDataModule, MoEClassifier


def model(**kwargs):
    args = {"num_features": 64, "num_classes": 10, "d_model": 32, "d_hidden": 32, "num_experts": 4, "num_layers": 1}
    return MoEClassifier(**{**args, **kwargs})


def test_examples():
    assert doctest.testmod(classification_module).failed == 0


def test_trains_on_digits_and_logs_accuracy(quiet_trainer_kwargs):
    L.seed_everything(0, verbose=False)
    task = ClassificationTask(model(), optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2))
    data = DigitsDataModule(batch_size=64)
    trainer = L.Trainer(max_epochs=2, **quiet_trainer_kwargs)
    trainer.fit(task, data)
    assert {"train/acc_step", "train/acc_epoch", "val/acc", "val/loss"} <= set(trainer.callback_metrics)
    (result,) = trainer.test(task, data, verbose=False)
    assert result["test/acc"] > 0.85, result
    assert "test/loss" in result


def test_num_classes_from_model_or_argument():
    assert ClassificationTask(model()).num_classes == 10
    assert ClassificationTask(torch.nn.Linear(64, 5), num_classes=5).num_classes == 5
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationTask(torch.nn.Linear(64, 5))
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationTask(model(), num_classes=1)


def test_bad_label_smoothing():
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassificationTask(model(), label_smoothing=1.0)


def test_label_smoothing_changes_loss():
    torch.manual_seed(0)
    net = model()
    batch = (torch.randn(8, 64), torch.randint(0, 10, (8,)))
    plain, _ = ClassificationTask(net).compute_loss(batch, "val")
    smooth, _ = ClassificationTask(net, label_smoothing=0.2).compute_loss(batch, "val")
    assert not torch.isclose(plain, smooth)


def test_bad_batches():
    task = ClassificationTask(model())
    with pytest.raises(ValueError, match=r"\(x, y\) pair"):
        task.compute_loss(torch.randn(4, 64), "val")
    wrong = ClassificationTask(torch.nn.Linear(64, 3), num_classes=10)
    with pytest.raises(ValueError, match="num_classes=10"):
        wrong.compute_loss((torch.randn(4, 64), torch.zeros(4, dtype=torch.long)), "val")


def test_predict_step_returns_probabilities():
    task = ClassificationTask(model())
    probs = task.predict_step((torch.randn(5, 64), torch.zeros(5)), 0)
    assert probs.shape == (5, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    assert task.predict_step(torch.randn(2, 64), 0).shape == (2, 10)
