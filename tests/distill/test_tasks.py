import lightning as L
import pytest
import torch
from torch import nn

from domain_moe.distill.data import VerticalDataModule
from domain_moe.distill.models import ConcentrationStudent, ConvNet, TeacherEnsemble
from domain_moe.distill.targets import concentration_loss, concentration_targets
from domain_moe.distill.tasks import ConcentrationTask, SpecialistTask, hard_label_loss

from .conftest import VERTICALS


def _student(seed=0):
    torch.manual_seed(seed)
    return ConcentrationStudent(ConvNet(1, 0, (4, 8)), VERTICALS, shared_width=8, block_width=4)


def _teachers(seed=1):
    torch.manual_seed(seed)
    return TeacherEnsemble([ConvNet(1, len(v), (4,)) for v in VERTICALS], VERTICALS)


def _trainer(tmp_path, **kwargs):
    return L.Trainer(
        accelerator="cpu",
        max_steps=kwargs.pop("max_steps", 3),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        default_root_dir=tmp_path,
        deterministic=True,
        **kwargs,
    )


def test_teachers_stay_frozen_in_training(idx_dir, tmp_path):
    teachers = _teachers()
    before = {k: v.clone() for k, v in teachers.state_dict().items()}
    task = ConcentrationTask(_student(), teachers)
    task.train()
    assert not any(m.training for m in teachers.modules()) and task.model.training
    optimizer = task.configure_optimizers()
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for p in teachers.parameters()}
    assert in_optimizer == {id(p) for p in task.model.parameters()}
    assert [g.get("weight_decay") for g in optimizer.param_groups][1] == 0.0  # the scales
    x = torch.rand(6, 1, 28, 28)
    loss = task.training_step((x, torch.tensor([0, 5, 1, 2, 9, 8])), 0)
    loss.backward()
    assert all(p.grad is None for p in teachers.parameters())
    assert all(p.grad is not None for p in task.model.parameters())
    dm = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, batch_size=16)
    _trainer(tmp_path, enable_checkpointing=False).fit(task, datamodule=dm)
    assert not any(m.training for m in teachers.modules())
    for k, v in teachers.state_dict().items():  # BatchNorm statistics included
        assert torch.equal(v, before[k]), k


def test_kd_loss_uses_the_label_verticals_teacher():
    teachers = _teachers()
    task = ConcentrationTask(_student(), teachers, top_k=2, hard_mix="max")
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([6, 7, 3, 0])
    loss, out = task.compute_loss((x, y), "train")
    probs = torch.zeros(4, 10)
    for i, label in enumerate(y.tolist()):
        v = next(k for k, c in enumerate(VERTICALS) if label in c)
        probs[i, VERTICALS[v]] = torch.sigmoid(teachers.teachers[v](x[i : i + 1]))[0]
    targets = concentration_targets(probs, y, task.class_to_vertical, top_k=2, hard_mix="max")
    torch.testing.assert_close(out["targets"], targets)
    torch.testing.assert_close(loss, concentration_loss(out["logits"], targets))


def test_cached_targets_and_generalist_paths():
    task = ConcentrationTask(_student(), None)
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    loss, out = task.compute_loss((x, y), "train")
    torch.testing.assert_close(loss, hard_label_loss(out["logits"], y, "bce"))
    soft = torch.rand(3, 10)
    loss, out = task.compute_loss((x, y, soft), "train")
    targets = concentration_targets(soft, y, task.class_to_vertical)
    torch.testing.assert_close(loss, concentration_loss(out["logits"], targets))


def test_softmax_kd_path():
    task = ConcentrationTask(_student(), None, kd_loss="softmax")
    x, y, soft = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3]), torch.rand(3, 10)
    loss, out = task.compute_loss((x, y, soft), "train")
    targets = concentration_targets(soft, y, task.class_to_vertical)
    torch.testing.assert_close(loss, concentration_loss(out["logits"], targets, kind="softmax"))


def test_curriculum_weights_in_the_loss():
    task = ConcentrationTask(_student(), None, pace_schedule="loss_quantile", pace_q0=0.5, pace_rho=0.5)
    task.progress = lambda: 0.0  # start of training: half of each vertical's samples
    x, y = torch.rand(8, 1, 28, 28), torch.tensor([0, 2, 4, 6, 1, 3, 8, 1])
    soft = torch.rand(8, 10)
    loss, out = task.compute_loss((x, y, soft), "train")
    per = concentration_loss(out["logits"], out["targets"], reduction="none")
    v = task.class_to_vertical[y]
    keep = torch.zeros(8, dtype=torch.bool)
    for k in (0, 2):
        idx = (v == k).nonzero().squeeze(1)
        keep[idx] = per[idx] <= torch.quantile(per[idx], 0.5)
    torch.testing.assert_close(loss, per[keep].mean())


def test_specialist_task_trains_on_local_labels(idx_dir, tmp_path):
    dm = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, vertical=0, batch_size=16)
    task = SpecialistTask(ConvNet(1, 4, (4,)), loss="ce")
    _trainer(tmp_path, enable_checkpointing=False).fit(task, datamodule=dm)
    with pytest.raises(ValueError, match="N_v"):
        SpecialistTask(nn.Linear(4, 2)).compute_loss((torch.rand(2, 4), torch.tensor([0, 3])), "train")


def test_checkpoint_round_trip(idx_dir, tmp_path):
    dm = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, batch_size=16)
    task = ConcentrationTask(_student(), _teachers(), vertical_names=["a", "b", "c"])
    trainer = _trainer(tmp_path, enable_checkpointing=False)
    trainer.fit(task, datamodule=dm)
    path = tmp_path / "kc.ckpt"
    trainer.save_checkpoint(path)
    restored = ConcentrationTask.load_from_checkpoint(path, model=_student(seed=5), teachers=_teachers(seed=6))
    assert restored.vertical_names == ["a", "b", "c"]
    x = torch.rand(4, 1, 28, 28)
    task.eval()
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(x), task(x), rtol=0, atol=0)
        vertical = torch.tensor([0, 1, 2, 0])
        torch.testing.assert_close(restored.teachers(x, vertical), task.teachers(x, vertical), rtol=0, atol=0)
    assert not any(m.training for m in restored.teachers.modules())


def test_seeded_training_is_deterministic(idx_dir, tmp_path):
    weights = []
    for run in range(2):
        L.seed_everything(0, verbose=False)
        dm = VerticalDataModule(f"idx:{idx_dir}", verticals=VERTICALS, batch_size=16)
        task = ConcentrationTask(_student(), _teachers(), pace_schedule="loss_quantile")
        _trainer(tmp_path / str(run), enable_checkpointing=False, max_steps=4).fit(task, datamodule=dm)
        weights.append(torch.cat([p.detach().flatten() for p in task.model.parameters()]))
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"teachers": nn.Linear(2, 2)}, TypeError, "TeacherEnsemble"),
        ({"vertical_names": ["a"]}, ValueError, "vertical_names must hold 3"),
        ({"loss": "hinge"}, ValueError, "loss must be one of"),
        ({"pace_schedule": "linear"}, ValueError, "pace_schedule"),
        ({"kd_loss": "mse"}, ValueError, "kd_loss"),
        ({"gt_weight": -1.0}, ValueError, "gt_weight"),
        ({"pace_q0": 0.0}, ValueError, "q0"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        ConcentrationTask(_student(), **kwargs)


def test_teacher_verticals_must_match_the_students():
    other = TeacherEnsemble([nn.Linear(2, 5), nn.Linear(2, 5)], [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    with pytest.raises(ValueError, match=r"teachers\.verticals must equal"):
        ConcentrationTask(_student(), other)
    with pytest.raises(ValueError, match="verticals must be given"):
        ConcentrationTask(nn.Linear(3, 10))
