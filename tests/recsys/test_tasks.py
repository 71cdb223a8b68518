import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lightning")

import lightning as L

from domain_moe.recsys.data import HoMESyntheticDataModule, RecBatch
from domain_moe.recsys.models import HoME, MMoE
from domain_moe.recsys.tasks import MultiTaskTask, multitask_loss


def test_loss_is_weighted_masked_bce_and_mse():
    logits = torch.randn(6, 2)
    labels = torch.tensor([[1, 0.3], [0, 1.2], [1, -0.5], [0, 0.0], [1, 2.0], [0, 1.0]])
    mask = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1], [1, 0], [0, 1]], dtype=torch.bool)
    total, per_task = multitask_loss(logits, labels, ["binary", "regression"], torch.tensor([2.0, 0.5]), mask)
    m0, m1 = mask[:, 0], mask[:, 1]
    bce = F.binary_cross_entropy_with_logits(logits[m0, 0], labels[m0, 0])
    mse = F.mse_loss(logits[m1, 1], labels[m1, 1])
    torch.testing.assert_close(per_task, torch.stack([bce, mse]))
    torch.testing.assert_close(total, 2.0 * bce + 0.5 * mse)
    # Masked rows get no gradient.
    logits.requires_grad_(True)
    multitask_loss(logits, labels, ["binary", "regression"], torch.ones(2), mask)[0].backward()
    assert torch.equal(logits.grad[~mask], torch.zeros(int((~mask).sum())))


def test_label_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"labels must have the logits' shape \[B, T\]=\(4, 2\), got \(4, 3\)"):
        multitask_loss(torch.zeros(4, 2), torch.zeros(4, 3), ["binary"] * 2, torch.ones(2))
    task = MultiTaskTask(MMoE(["a", "b"], num_dense=3, num_experts=2, d_hidden=4))
    with pytest.raises(ValueError, match="labels must have"):
        task.compute_loss(RecBatch(labels=torch.zeros(4, 3), dense=torch.randn(4, 3)), "train")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task_weights": {"c": 1.0}}, r"task_weights names unknown tasks \['c'\]"),
        ({"task_weight_decay": {"zz": 0.9}}, "task_weight_decay names unknown tasks"),
        ({"task_names": ["b", "a"]}, "do not match the model's task_names"),
        ({"task_types": ["binary"]}, "one entry per task"),
        ({"task_types": ["binary", "ranking"]}, "task_types must be in"),
    ],
)
def test_bad_task_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiTaskTask(MMoE(["a", "b"], num_dense=3, num_experts=2, d_hidden=4), **kwargs)


def test_dynamic_task_weights():
    task = MultiTaskTask(
        MMoE(["a", "b"], num_dense=3, num_experts=2, d_hidden=4), task_weights={"a": 2.0}, task_weight_decay={"b": 0.5}
    )
    torch.testing.assert_close(task.task_weight_values(), torch.tensor([2.0, 1.0]))
    assert torch.equal(task.base_weights * task.weight_decay.pow(2), torch.tensor([2.0, 0.25]))


def test_fit_logs_per_task_metrics_gauc_and_diagnostics(tmp_path):
    dm = HoMESyntheticDataModule(num_samples=3000, num_users=40, num_items=30, batch_size=256, conditional=True)
    model = HoME(dm.task_names, dm.task_groups, dm.cardinalities, dm.num_dense, embed_dim=4, d_hidden=8)
    task = MultiTaskTask(model, dm.task_names, dm.task_types)
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=3, limit_val_batches=2, limit_test_batches=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )
    trainer.fit(task, dm)
    metrics = trainer.callback_metrics
    for name in dm.task_names:
        assert f"val/{name}/auc" in metrics and f"val/{name}/gauc" in metrics and f"val/{name}/loss" in metrics
    assert "val/auc_mean" in metrics and "diag/levels.1/max_zero_rate" in metrics and "diag/follow/own_mass" in metrics
    assert task.last_health is not None and set(task.last_health) == {"levels.0", "levels.1"}
    trainer.test(task, dm)
    assert "test/click/auc" in trainer.callback_metrics
    # Checkpoint round trip: the injected model is rebuilt, weights and BatchNorm statistics come back.
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    fresh = HoME(dm.task_names, dm.task_groups, dm.cardinalities, dm.num_dense, embed_dim=4, d_hidden=8)
    restored = MultiTaskTask.load_from_checkpoint(path, model=fresh, weights_only=True)
    batch = next(iter(dm.test_dataloader()))
    task.eval()
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(batch.dense, batch.sparse), task(batch.dense, batch.sparse))
    assert restored.task_types == task.task_types
