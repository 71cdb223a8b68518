import lightning as L
import pytest
import torch

from domain_moe.timeseries.data import SyntheticDataModule
from domain_moe.timeseries.models import ExpertLossMoE
from domain_moe.timeseries.tasks import ForecastTask


@pytest.fixture
def datamodule():
    dm = SyntheticDataModule(num_series=4, length=48, period=4, horizon=4, lookback=8, batch_size=32)
    dm.setup()
    return dm


def _trainer(tmp_path, **kwargs):
    return L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


def test_loss_matches_combined_objective_and_gamma_zero(datamodule):
    batch = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(0)
    model = ExpertLossMoE(8, 4)
    plain = ForecastTask(model, gamma=0.0)
    loss0, _ = plain.compute_loss(batch, "train")
    out = model(batch["x"])
    torch.testing.assert_close(loss0, (out.y - batch["y"]).abs().mean())
    loss1, _ = ForecastTask(model, gamma=1.0).compute_loss(batch, "train")
    torch.testing.assert_close(loss1 - loss0, (out.expert_y - batch["y"][:, None]).abs().mean())


def test_fit_test_and_predict(datamodule, tmp_path):
    torch.manual_seed(0)
    windows = [None, 8, 4, 2]
    task = ForecastTask(ExpertLossMoE(8, 4, d_hidden=8), gamma=0.5, variant="masked", calibration_windows=windows)
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=datamodule)
    assert {"gate/expert_3", "val/mase", "train/expert_loss"} <= set(trainer.callback_metrics)
    metrics = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    assert metrics["test/mase"] > 0
    preds = trainer.predict(task, datamodule=datamodule)
    assert preds[0]["forecast"].shape == (4, 4) and preds[0]["gate"].shape == (4, 4)


def test_checkpoint_round_trip(datamodule, tmp_path):
    torch.manual_seed(0)
    task = ForecastTask(ExpertLossMoE(8, 4, d_hidden=8), gamma=0.3)
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(task, datamodule=datamodule)
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    restored = ForecastTask.load_from_checkpoint(path, model=ExpertLossMoE(8, 4, d_hidden=8))
    x = torch.randn(3, 8)
    assert restored.gamma == 0.3
    torch.testing.assert_close(restored(x).y, task(x).y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": -0.1}, "gamma must be"),
        ({"variant": "soft"}, "variant must be one of"),
        ({"base_loss": "huber"}, "base_loss must be one of"),
        ({"variant": "masked"}, "needs calibration_windows"),
        ({"variant": "masked", "calibration_windows": [None, 2]}, "num_experts=4"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ForecastTask(ExpertLossMoE(8, 4), **kwargs)
