import lightning as L
import pytest
import torch

from domain_moe.graph.data import ContextualSBMDataModule
from domain_moe.graph.models import GNN, Mowst, MowstOutput, NodeMLP
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


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_turns_end_on_patience_and_restore_the_best_mixture():
    model = Mowst(num_features=4, num_classes=3, hidden_channels=8)
    task = MowstTask(model, weak_turn_epochs=10, strong_turn_epochs=10, turn_patience=2, restore_best=True)
    assert task.current_phase == "weak"
    task.advance_schedule(0.5)  # new best: stored
    best = _weights(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    task.advance_schedule(None)  # an epoch without a validation check does not count against patience
    task.advance_schedule(0.4)
    assert task.current_phase == "weak"
    task.advance_schedule(0.45)  # second check without a gain: the turn ends, the best weights return
    assert task.current_phase == "strong" and task.phase_history == [("weak", 4)]
    assert torch.equal(_weights(model), best)
    # A strong turn that never beats 0.5 is undone too, and one such round triggers outer patience 1.
    task.outer_patience = 1
    with torch.no_grad():
        model.strong.convs[0].bias.add_(3.0)
    for _ in range(3):  # the turn's own best, then two checks without a gain
        task.advance_schedule(0.3)
    assert torch.equal(_weights(model), best)
    assert task.current_phase == "weak" and not task.stop_requested  # the round gained (from -inf to 0.5)
    for _ in range(6):
        task.advance_schedule(0.2)
    assert task.phase_history[-2:] == [("weak", 3), ("strong", 3)] and task.stop_requested


def test_pretraining_stops_on_its_own_patience_and_keeps_the_expert_best():
    model = Mowst(num_features=4, num_classes=3, hidden_channels=8)
    task = MowstTask(model, pretrain_strong_epochs=100, pretrain_patience=1, restore_best=True)
    task.advance_schedule(0.7)
    best = _weights(model)
    with torch.no_grad():
        model.strong.convs[0].bias.add_(1.0)
    task.advance_schedule(0.6)
    assert task.phase_history == [("pretrain_strong", 2)] and task.current_phase == "weak"
    assert torch.equal(_weights(model), best)
    assert task.best_score == float("-inf")  # an expert alone is not a mixture score


def test_fixed_schedule_without_patience_matches_phase():
    task = MowstTask(
        Mowst(num_features=4, num_classes=3), pretrain_strong_epochs=2, weak_turn_epochs=2, strong_turn_epochs=3
    )
    seen = []
    for epoch in range(12):
        seen.append(task.current_phase)
        assert task.current_phase == task.phase(epoch)
        task.advance_schedule(float(epoch))
    assert len(set(seen)) == 3


def test_joint_phase_stops_training_on_patience():
    task = MowstStarTask(Mowst(num_features=4, num_classes=3, variant="mowst_star"), turn_patience=2)
    for score in (0.1, 0.2, 0.2):
        task.advance_schedule(score)
    assert not task.stop_requested
    task.advance_schedule(0.15)
    assert task.stop_requested and task.phase_history == [("joint", 4)]


def test_schedule_score_uses_validation_nodes_only():
    dm = _dm()
    dm.setup()
    data = dm.data
    task = MowstTask(Mowst(num_features=8, num_classes=3, hidden_channels=8), turn_patience=3)
    task.trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    task.log = lambda *args, **kwargs: None  # outside a loop Lightning refuses to log
    task.eval()

    def score(graph):
        with torch.no_grad():
            task.compute_loss(graph, "val")
        return task._pending_score

    base = score(data)
    out = task.mowst(data.x, data.edge_index)
    val = data.val_mask
    assert base == pytest.approx(float(task.evaluate(MowstOutput(*(t[val] for t in out)), data.y[val])))
    moved_train = data.clone()
    moved_train.y = torch.where(data.train_mask, (data.y + 1) % 3, data.y)
    assert score(moved_train) == pytest.approx(base)
    moved_val = data.clone()
    moved_val.y = torch.where(val, (data.y + 1) % 3, data.y)
    assert score(moved_val) != pytest.approx(base)


def test_gate_holdout_separates_expert_and_gate_gradients():
    task = MowstTask(Mowst(num_features=4, num_classes=3), gate_holdout=0.3, holdout_seed=1)
    gen = torch.Generator().manual_seed(0)
    n = 40
    train = torch.rand(n, generator=gen) < 0.6
    expert_mask, gate_mask = task.split_train_mask(train)
    assert not (expert_mask & gate_mask).any() and torch.equal(expert_mask | gate_mask, train)
    assert int(gate_mask.sum()) == round(0.3 * int(train.sum()))
    assert torch.equal(task.split_train_mask(train)[1], gate_mask)  # same nodes every step
    weak = torch.randn(n, 3, generator=gen, requires_grad=True)
    strong = torch.randn(n, 3, generator=gen, requires_grad=True)
    gate_logits = torch.randn(n, generator=gen, requires_grad=True)
    out = MowstOutput(weak, strong, torch.sigmoid(gate_logits), gate_logits)
    task.mixture_training_loss(out, torch.randint(3, (n,), generator=gen), train).backward()
    rows = lambda g: g.abs().sum(-1) > 0 if g.dim() == 2 else g.abs() > 0  # noqa: E731
    assert torch.equal(rows(weak.grad), expert_mask) and torch.equal(rows(strong.grad), expert_mask)
    assert torch.equal(rows(gate_logits.grad), gate_mask)
    with pytest.raises(ValueError, match="gate_holdout"):
        MowstTask(Mowst(num_features=4, num_classes=3), gate_holdout=1.0)
    with pytest.raises(ValueError, match="turn_patience"):
        MowstTask(Mowst(num_features=4, num_classes=3), turn_patience=0)


def test_fit_with_early_stopping_ends_on_the_best_mixture():
    dm = _dm()
    model = Mowst(num_features=8, num_classes=3, hidden_channels=8)
    task = MowstTask(
        model,
        pretrain_strong_epochs=5,
        pretrain_patience=2,
        weak_turn_epochs=5,
        strong_turn_epochs=5,
        turn_patience=2,
        outer_patience=1,
        restore_best=True,
        gate_holdout=0.2,
    )
    trainer = _trainer(60)
    trainer.fit(task, datamodule=dm)
    assert task.stop_requested and trainer.current_epoch < 60
    assert task.phase_history[0][0] == "pretrain_strong"
    metric = trainer.validate(task, datamodule=dm, verbose=False)[0]["val/metric"]
    assert metric == pytest.approx(task.best_score, abs=1e-6)


def test_reusing_the_frozen_side_trains_identically():
    dm = _dm()
    weights = []
    for reuse in (True, False):
        torch.manual_seed(0)
        model = Mowst(num_features=8, num_classes=3, hidden_channels=8)
        task = MowstTask(model, pretrain_strong_epochs=1, weak_turn_epochs=3, strong_turn_epochs=3, reuse_frozen=reuse)
        L.seed_everything(0, verbose=False)
        _trainer(8).fit(task, datamodule=dm)
        weights.append(_weights(model))
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
