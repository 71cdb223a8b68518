import doctest
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

import domain_moe.training.callbacks as callbacks_module
from domain_moe.training import ClassificationTask, ExpertBiasCallback, ExpertLoadMonitor, MoEClassifier


def task(**kwargs):
    args = {"num_features": 8, "num_classes": 3, "d_model": 16, "d_hidden": 16, "num_experts": 4, "top_k": 2}
    return ClassificationTask(MoEClassifier(**{**args, **kwargs}), optimizer=lambda p: torch.optim.SGD(p, lr=0.05))


def loader(n=64, batch_size=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()), batch_size=batch_size)


def fit(model, callbacks, trainer_kwargs, max_steps=8, batch_size=8, **kwargs):
    trainer = L.Trainer(max_steps=max_steps, callbacks=callbacks, limit_val_batches=0, **{**trainer_kwargs, **kwargs})
    trainer.fit(model, loader(n=16 * batch_size, batch_size=batch_size))
    return trainer


def collapse_warnings(record):
    return [w for w in record if "collapsed" in str(w.message)]


def test_examples():
    assert doctest.testmod(callbacks_module).failed == 0


def test_records_history_and_saves_plot(quiet_trainer_kwargs, tmp_path):
    monitor = ExpertLoadMonitor(every_n_steps=2, warmup_steps=0, collapse_threshold=0.0)
    fit(task(num_layers=2), [monitor], quiet_trainer_kwargs)
    assert sorted(monitor.history) == ["moes.0", "moes.1"]
    entry = monitor.history["moes.0"]
    assert entry["step"] == [2, 4, 6, 8]
    for share in entry["share"]:
        assert len(share) == 4 and sum(share) == pytest.approx(1.0)
    assert monitor.plot_path == str(tmp_path / "expert_load.png")
    with open(monitor.plot_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_goes_to_the_logger_directory(quiet_trainer_kwargs, tmp_path):
    monitor = ExpertLoadMonitor(every_n_steps=4, filename="load.png")
    logger = CSVLogger(tmp_path / "logs", name="run")
    fit(task(), [monitor], {**quiet_trainer_kwargs, "logger": logger}, log_every_n_steps=1)
    assert monitor.plot_path == f"{logger.log_dir}/load.png"
    with open(f"{logger.log_dir}/metrics.csv") as f:
        header = f.readline()
    assert "expert_load/moes.0/3" in header


def test_heatmap_for_many_experts(tmp_path):
    monitor = ExpertLoadMonitor()
    monitor.history = {"layer": {"step": [1, 2, 3], "share": [[1 / 20] * 20] * 3}}
    path = monitor.save_plot(str(tmp_path / "sub" / "heat.png"))
    assert (tmp_path / "sub" / "heat.png").stat().st_size > 0
    assert path.endswith("heat.png")


def test_warns_about_collapsed_experts(quiet_trainer_kwargs):
    model = task(bias_balancing=True)
    # Selection biases (never updated without ExpertBiasCallback) force experts 0 and 1 for every token.
    for layer in model.model.moes:
        layer.router.selection_bias.copy_(torch.tensor([10.0, 10.0, -10.0, -10.0]))
    monitor = ExpertLoadMonitor(every_n_steps=2, warmup_steps=4, collapse_threshold=0.1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit(model, [monitor], quiet_trainer_kwargs)
    messages = [str(w.message) for w in collapse_warnings(record)]
    assert len(messages) == 4  # once per collapsed expert and layer, not once per record
    for layer, expert in [("moes.0", 2), ("moes.0", 3), ("moes.1", 2), ("moes.1", 3)]:
        assert sum(f"expert {expert} of MoE layer '{layer}'" in m for m in messages) == 1
    assert all(issubclass(w.category, UserWarning) for w in collapse_warnings(record))
    assert monitor.history["moes.0"]["share"][0] == [0.5, 0.5, 0.0, 0.0]


def test_no_warning_for_balanced_routing_or_during_warmup(quiet_trainer_kwargs):
    monitor = ExpertLoadMonitor(every_n_steps=2, warmup_steps=0, collapse_threshold=0.1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit(task(num_layers=1), [monitor], quiet_trainer_kwargs, batch_size=32)
    assert collapse_warnings(record) == []
    assert min(min(s) for s in monitor.history["moes.0"]["share"]) > 0.1 / 4

    collapsed = task(bias_balancing=True)
    collapsed.model.moes[0].router.selection_bias.copy_(torch.tensor([10.0, 10.0, -10.0, -10.0]))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit(collapsed, [ExpertLoadMonitor(every_n_steps=2, warmup_steps=100)], quiet_trainer_kwargs)
    assert collapse_warnings(record) == []


def test_state_dict_round_trip():
    monitor = ExpertLoadMonitor()
    monitor.history = {"moes.0": {"step": [1], "share": [[0.5, 0.5]]}}
    other = ExpertLoadMonitor()
    other.load_state_dict(monitor.state_dict())
    assert other.history == monitor.history


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every_n_steps": 0}, "every_n_steps"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"collapse_threshold": 1.0}, "collapse_threshold"),
        ({"filename": "load.jpg"}, "filename"),
    ],
)
def test_monitor_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExpertLoadMonitor(**kwargs)


class BiasSpy(L.Callback):
    def __init__(self):
        self.biases = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.biases.append(pl_module.model.moes[0].router.selection_bias.clone())


def test_bias_callback_updates_once_per_optimizer_step(quiet_trainer_kwargs):
    model = task(bias_balancing=True)
    router = model.model.moes[0].router
    spy = BiasSpy()
    trainer = fit(
        model, [ExpertBiasCallback(rate=0.01), spy], quiet_trainer_kwargs, max_steps=2, accumulate_grad_batches=2
    )
    assert trainer.global_step == 2
    assert len(spy.biases) == 4
    initial = torch.zeros(4)
    changed = [not torch.equal(before, after) for before, after in zip([initial, *spy.biases[:-1]], spy.biases)]
    assert changed == [False, True, False, True]
    # Centred sign updates of size `rate`, and the accumulated loads are cleared after each update.
    assert spy.biases[-1].sum().abs() < 1e-6
    assert 0 < spy.biases[1].abs().max() <= 2 * 0.01 + 1e-6
    assert int(router.load_accum.sum()) == 0


def test_bias_callback_rebalances_a_skewed_router(quiet_trainer_kwargs):
    model = task(bias_balancing=True, num_layers=1)
    router = model.model.moes[0].router
    router.selection_bias.copy_(torch.tensor([0.3, 0.3, -0.3, -0.3]))
    fit(model, [ExpertBiasCallback(rate=0.05)], quiet_trainer_kwargs, max_steps=8)
    assert router.selection_bias[0] < 0.3 and router.selection_bias[3] > -0.3


def test_bias_callback_warns_without_balancing_routers(quiet_trainer_kwargs):
    with pytest.warns(UserWarning, match="bias_balancing=True"):
        fit(task(), [ExpertBiasCallback()], quiet_trainer_kwargs, max_steps=1)


def test_bias_callback_bad_rate():
    with pytest.raises(ValueError, match="rate"):
        ExpertBiasCallback(rate=0.0)
