import lightning as L
import torch

from domain_moe.rl.data import ICRLDataModule
from domain_moe.rl.models import ADTransformer
from domain_moe.rl.tasks import InContextRLTask, action_loss

KW = {"grid_size": 5, "episode_length": 4}


def _setup(steps=2, seed=0):
    L.seed_everything(seed)
    dm = ICRLDataModule(
        env_kwargs=KW,
        num_train_tasks=12,
        num_test_tasks=4,
        num_episodes=6,
        context_episodes=3,
        tasks_per_batch=4,
        batches_per_epoch=steps,
    )
    model = ADTransformer(dm.state_dim, dm.action_dim, True, dm.max_episode_steps, dm.max_context_steps, d_model=16)
    return dm, InContextRLTask(model, warmup_steps=2, eval_episodes=3)


def _trainer(tmp_path, steps):
    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )


def test_action_loss_forms():
    logits = torch.tensor([[[10.0, 0.0]]])
    assert action_loss(logits, torch.tensor([[0]]), True) < 1e-3
    out = torch.tensor([[[0.5, 0.0]]])  # mean 0.5, log-std 0
    torch.testing.assert_close(action_loss(out, torch.tensor([[[0.5]]]), False), torch.tensor(0.0))


def test_training_reduces_action_loss_and_moves_ema(tmp_path):
    dm, task = _setup(steps=60)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    layer = task.model.t2mir_layers()[0]
    ema0 = layer.ema_gate.clone()
    before = float(task.compute_loss(batch, "val")[0])
    _trainer(tmp_path, 60).fit(task, datamodule=dm)
    after = float(task.compute_loss(batch, "val")[0])
    assert after < before - 0.1
    assert not torch.equal(layer.ema_gate, ema0)


def test_checkpoint_round_trip(tmp_path):
    dm, task = _setup()
    trainer = _trainer(tmp_path, 2)
    trainer.fit(task, datamodule=dm)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    _, fresh = _setup(seed=5)
    restored = InContextRLTask.load_from_checkpoint(path, model=fresh.model)
    for (name, a), b in zip(task.state_dict().items(), restored.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert any("ema_gate" in k for k in restored.state_dict())
    assert restored.eval_episodes == 3
    batch = next(iter(dm.train_dataloader()))
    task.eval()
    restored.eval()
    torch.testing.assert_close(task.compute_loss(batch, "val")[0], restored.compute_loss(batch, "val")[0])


def test_test_runs_in_context_evaluation(tmp_path):
    dm, task = _setup()
    trainer = _trainer(tmp_path, 2)
    trainer.fit(task, datamodule=dm)
    metrics = trainer.test(task, datamodule=dm, verbose=False)[0]
    assert {"test/first_return", "test/final_return", "test/return_ep3"} <= set(metrics)
