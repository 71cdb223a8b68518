import doctest
import functools
import math
import warnings

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import domain_moe.training.task as task_module
from domain_moe.core import collect_aux
from domain_moe.training import MoEClassifier, MoETask, named_moe_layers


class RegressionTask(MoETask):
    def compute_loss(self, batch, stage):
        x, y = batch
        pred = self(x).squeeze(-1)
        return torch.nn.functional.mse_loss(pred, y), {"pred": pred}


def model():
    return MoEClassifier(num_features=6, num_classes=1, d_model=16, d_hidden=16, num_experts=4, num_layers=2)


def loader(n=32, batch_size=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return DataLoader(TensorDataset(x, x.sum(-1)), batch_size=batch_size)


def test_examples():
    assert doctest.testmod(task_module).failed == 0


def test_named_moe_layers():
    assert [name for name, _ in named_moe_layers(model())] == ["moes.0", "moes.1"]


def test_training_step_adds_weighted_aux_loss():
    torch.manual_seed(0)
    net = model()
    task = RegressionTask(net, aux_weight=2.5)
    batch = next(iter(loader()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        total = task.training_step(batch, 0)
    loss, _ = task.compute_loss(batch, "train")
    aux = collect_aux(net)
    assert aux.item() > 0
    torch.testing.assert_close(total, loss + 2.5 * aux)


def test_aux_weight_zero_is_task_loss_only():
    task = RegressionTask(model(), aux_weight=0.0)
    batch = next(iter(loader()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = task.training_step(batch, 0)
    torch.testing.assert_close(total, task.compute_loss(batch, "train")[0])


def test_clear_aux_forgets_stale_statistics():
    task = RegressionTask(model())
    task(torch.randn(3, 6))
    assert all(layer.last_aux is not None for _, layer in named_moe_layers(task.model))
    task.clear_aux()
    assert all(layer.last_aux is None for _, layer in named_moe_layers(task.model))
    assert task.aux_loss().item() == 0


def test_fit_logs_losses_and_load_statistics(quiet_trainer_kwargs):
    task = RegressionTask(model())
    trainer = L.Trainer(max_steps=3, log_every_n_steps=1, **quiet_trainer_kwargs)
    trainer.fit(task, loader(n=24), loader())  # 3 batches: validation runs at the epoch end
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/aux_loss", "train/total_loss", "val/loss"):
        assert key in metrics
    for layer in ("moes.0", "moes.1"):
        for stat in ("max_load", "min_load", "dropped", "entropy", "mean_k"):
            assert f"moe/{layer}/{stat}" in metrics
        assert metrics[f"moe/{layer}/max_load"] >= 1.0 >= metrics[f"moe/{layer}/min_load"]
        assert metrics[f"moe/{layer}/mean_k"] == pytest.approx(2.0)
        assert metrics[f"moe/{layer}/dropped"] == 0
    assert math.isclose(
        float(metrics["train/total_loss"]), float(metrics["train/loss"] + metrics["train/aux_loss"]), rel_tol=1e-5
    )


def test_base_task_needs_compute_loss():
    with pytest.raises(NotImplementedError, match="compute_loss"):
        MoETask(model()).compute_loss(None, "train")


@pytest.mark.parametrize("aux_weight", [-0.1, float("nan"), float("inf")])
def test_bad_aux_weight(aux_weight):
    with pytest.raises(ValueError, match="aux_weight"):
        RegressionTask(model(), aux_weight=aux_weight)


def test_bad_arguments():
    with pytest.raises(TypeError, match="aux_weight"):
        RegressionTask(model(), aux_weight="1")
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        RegressionTask("not a model")
    with pytest.raises(TypeError, match="optimizer"):
        RegressionTask(model(), optimizer=0.1)
    with pytest.raises(ValueError, match="scheduler_interval"):
        RegressionTask(model(), scheduler_interval="batch")


def test_configure_optimizers():
    task = RegressionTask(model(), optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    opt = task.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 0.1

    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2)
    config = RegressionTask(model(), scheduler=step, scheduler_interval="step").configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.AdamW)
    assert config["lr_scheduler"]["interval"] == "step"
    assert "monitor" not in config["lr_scheduler"]

    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau
    config = RegressionTask(model(), scheduler=plateau).configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == "val/loss"


def test_checkpoint_round_trip_needs_model(quiet_trainer_kwargs, tmp_path):
    torch.manual_seed(0)
    task = RegressionTask(model(), aux_weight=0.5)
    trainer = L.Trainer(max_steps=2, **quiet_trainer_kwargs)
    trainer.fit(task, loader())
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)

    checkpoint = torch.load(path, weights_only=True)  # what LightningCLI's --ckpt_path does
    assert "model" not in checkpoint["hyper_parameters"]
    assert "domain_moe_rng_states" in checkpoint

    restored = RegressionTask.load_from_checkpoint(path, model=model())
    assert restored.aux_weight == 0.5
    for key, value in task.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    with pytest.raises(TypeError, match="model="):
        RegressionTask.load_from_checkpoint(path)


def test_rng_states_restored_when_training_resumes():
    task = RegressionTask(model())
    checkpoint = {}
    torch.manual_seed(123)
    task.on_save_checkpoint(checkpoint)
    expected = torch.rand(3)
    torch.manual_seed(0)
    task.on_load_checkpoint(checkpoint)
    task.on_train_start()
    assert torch.equal(torch.rand(3), expected)
