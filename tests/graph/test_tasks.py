import lightning as L
import pytest
import torch

from domain_moe.graph.data import ContextualSBMDataModule
from domain_moe.graph.models import GNN, Mowst, NodeMLP
from domain_moe.graph.tasks import MowstStarTask, MowstTask, NodeClassificationTask, node_metric


def _trainer(epochs):
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def _dm():
    return ContextualSBMDataModule(num_nodes=120, num_classes=3, num_features=8)


def test_node_metric():
    proba = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    y = torch.tensor([0, 1, 1])
    assert node_metric(proba, y, "accuracy") == pytest.approx(2 / 3)
    assert node_metric(proba, y, "auroc") == pytest.approx(1.0)


@pytest.mark.parametrize("model_cls", [NodeMLP, GNN])
def test_baseline_fits(model_cls):
    dm = _dm()
    task = NodeClassificationTask(model_cls(8, 3, hidden_channels=8))
    trainer = _trainer(3)
    trainer.fit(task, datamodule=dm)
    assert "val/metric" in trainer.callback_metrics
    assert "test/acc" in trainer.test(task, datamodule=dm, verbose=False)[0]


def test_mowst_schedule():
    task = MowstTask(
        Mowst(num_features=4, num_classes=3),
        pretrain_strong_epochs=2,
        pretrain_weak_epochs=1,
        weak_turn_epochs=2,
        strong_turn_epochs=1,
    )
    assert [task.phase(e) for e in range(8)] == [
        "pretrain_strong",
        "pretrain_strong",
        "pretrain_weak",
        "weak",
        "weak",
        "strong",
        "weak",
        "weak",
    ]
    with pytest.raises(TypeError, match="must be a Mowst"):
        MowstTask(GNN(4, 3))
    with pytest.raises(ValueError, match="variant='mowst_star'"):
        MowstStarTask(Mowst(num_features=4, num_classes=3))


def test_turns_touch_only_their_side_and_freeze_batchnorm():
    dm = _dm()
    model = Mowst(num_features=8, num_classes=3, hidden_channels=8)
    task = MowstTask(model, pretrain_strong_epochs=1, weak_turn_epochs=1, strong_turn_epochs=1)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    _trainer(2).fit(task, datamodule=dm)  # epoch 0: strong pre-training, epoch 1: weak turn
    after = model.state_dict()
    weak_changed = any(not torch.equal(snapshot[k], after[k]) for k in after if k.startswith(("weak.", "gate.")))
    assert weak_changed
    # The strong expert moved in pre-training only; its BatchNorm stats must not move in the weak turn.
    mid = {k: v.clone() for k, v in after.items()}
    task2 = MowstTask(model, pretrain_strong_epochs=0, weak_turn_epochs=1, strong_turn_epochs=1)
    _trainer(1).fit(task2, datamodule=dm)  # one weak turn
    for k, v in model.state_dict().items():
        if k.startswith("strong."):
            assert torch.equal(v, mid[k]), k


def test_set_modes_trains_only_the_active_side():
    model = Mowst(num_features=4, num_classes=3)
    task = MowstTask(model)
    task.set_modes("weak")
    assert model.weak.training and model.gate.training and not model.strong.training
    task.set_modes("strong")
    assert model.strong.training and not model.weak.training and not model.gate.training
    task.set_modes("joint")
    assert model.strong.training and model.weak.training


def test_mowst_and_star_fit_and_log():
    dm = _dm()
    for task in (
        MowstTask(
            Mowst(num_features=8, num_classes=3, hidden_channels=8),
            pretrain_strong_epochs=1,
            weak_turn_epochs=1,
            strong_turn_epochs=1,
            eval_mode="sample",
        ),
        MowstStarTask(Mowst(num_features=8, num_classes=3, hidden_channels=8, variant="mowst_star")),
    ):
        trainer = _trainer(4)
        trainer.fit(task, datamodule=dm)
        result = trainer.test(task, datamodule=dm, verbose=False)[0]
        assert 0.0 <= result["test/mean_confidence"] <= 1.0
        assert {"test/metric", "test/weak_metric", "test/strong_metric"} <= set(result)
        proba = trainer.predict(task, datamodule=dm)[0]
        assert torch.allclose(proba.sum(-1), torch.ones(120), atol=1e-5)
