import pytest
import torch

from domain_moe.distill.cli import run
from domain_moe.distill.tasks import ConcentrationTask, SpecialistTask

from .conftest import VERTICALS

TRAINER = {
    "max_steps": 2,
    "limit_val_batches": 1,
    "limit_test_batches": 1,
    "num_sanity_val_steps": 0,
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def _data(idx_dir, **extra):
    init = {"dataset": f"idx:{idx_dir}", "verticals": VERTICALS, "batch_size": 16, **extra}
    return {"class_path": "domain_moe.distill.data.VerticalDataModule", "init_args": init}


def test_specialist_then_concentration_through_the_cli(idx_dir, tmp_path):
    spec_dir = tmp_path / "footwear"
    cli = run(
        {
            "fit": {
                "model": {
                    "class_path": "domain_moe.distill.tasks.SpecialistTask",
                    "init_args": {
                        "model": {"class_path": "domain_moe.distill.models.ConvNet", "init_args": {"widths": [4]}}
                    },
                },
                "data": _data(idx_dir, vertical=1),
                "trainer": {**TRAINER, "default_root_dir": str(spec_dir)},
            }
        }
    )
    assert isinstance(cli.model, SpecialistTask) and cli.model.model.num_classes == 3  # N_v linked
    teacher = {"class_path": "domain_moe.distill.models.ConvNet", "init_args": {"widths": [4]}}
    cli = run(
        {
            "fit": {
                "model": {
                    "class_path": "domain_moe.distill.tasks.ConcentrationTask",
                    "init_args": {
                        "model": {
                            "class_path": "domain_moe.distill.models.ConcentrationStudent",
                            "init_args": {
                                "backbone": {
                                    "class_path": "domain_moe.distill.models.ConvNet",
                                    "init_args": {"widths": [4, 8]},
                                },
                                "shared_width": 8,
                                "block_width": 4,
                            },
                        },
                        "teachers": {
                            "class_path": "domain_moe.distill.models.TeacherEnsemble",
                            "init_args": {
                                "teachers": [
                                    {**teacher, "init_args": {"widths": [4], "num_classes": len(v)}} for v in VERTICALS
                                ],
                                "verticals": VERTICALS,
                                "checkpoints": [None, str(spec_dir), None],
                            },
                        },
                    },
                },
                "data": _data(idx_dir),
                "trainer": {**TRAINER, "default_root_dir": str(tmp_path / "kc")},
                "test_after_fit": True,
            }
        }
    )
    assert isinstance(cli.model, ConcentrationTask)
    assert cli.model.model.verticals == VERTICALS  # linked from the DataModule
    loaded = cli.model.teachers.teachers[1].state_dict()
    ckpt = next(spec_dir.rglob("*.ckpt"))
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in loaded.items():
        assert torch.equal(value, saved[f"model.{key}"])
    assert "test/acc" in cli.trainer.callback_metrics and "test/teacher_acc" in cli.trainer.callback_metrics


def test_bad_config_value_names_the_argument(idx_dir):
    with pytest.raises((SystemExit, ValueError)):
        run(
            {
                "fit": {
                    "model": {
                        "class_path": "domain_moe.distill.tasks.SpecialistTask",
                        "init_args": {
                            "model": {
                                "class_path": "torch.nn.Linear",
                                "init_args": {"in_features": 2, "out_features": 2},
                            },
                            "loss": "hinge",
                        },
                    },
                    "data": _data(idx_dir),
                    "trainer": TRAINER,
                }
            }
        )
