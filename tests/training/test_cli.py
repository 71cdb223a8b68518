import pytest
import torch
import yaml

from domain_moe.training import ClassificationTask, MoEClassifier, MoELightningCLI, main, run_cli

CONFIG = {
    "seed_everything": 7,
    "model": {
        "class_path": "domain_moe.training.ClassificationTask",
        "init_args": {
            "model": {
                "class_path": "domain_moe.training.MoEClassifier",
                # dropout makes the resume test depend on restoring the RNG states too
                "init_args": {"d_model": 16, "d_hidden": 16, "num_experts": 4, "num_layers": 1, "dropout": 0.1},
            },
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
        },
    },
    # 1257 training digits in batches of 256: 5 optimizer steps per epoch.
    "data": {"class_path": "domain_moe.training.DigitsDataModule", "init_args": {"batch_size": 256}},
    "trainer": {
        "accelerator": "cpu",
        "deterministic": True,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 1,
        "num_sanity_val_steps": 0,
    },
}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return str(path)


def fit(config_file, root, max_steps, *extra):
    args = ["fit", "--config", config_file, "--trainer.max_steps", str(max_steps)]
    return run_cli(args=[*args, "--trainer.default_root_dir", str(root), *extra])


def test_fit_links_data_into_model_and_saves_a_checkpoint(config_file, tmp_path):
    cli = fit(config_file, tmp_path / "run", 3)
    assert isinstance(cli, MoELightningCLI)
    assert isinstance(cli.model, ClassificationTask) and isinstance(cli.model.model, MoEClassifier)
    assert (cli.model.model.num_features, cli.model.model.num_classes, cli.model.num_classes) == (64, 10, 10)
    assert cli.trainer.global_step == 3
    checkpoints = list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 1
    restored = ClassificationTask.load_from_checkpoint(checkpoints[0], model=MoEClassifier(64, 10, 16, 16, 4, 2, 1))
    for key, value in cli.model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key


def test_resume_is_bitwise_identical(config_file, tmp_path):
    uninterrupted = fit(config_file, tmp_path / "full", 10).model.state_dict()
    fit(config_file, tmp_path / "first", 5)  # stops at the end of epoch 0, checkpoint written there
    (checkpoint,) = (tmp_path / "first" / "checkpoints").glob("*.ckpt")
    resumed = fit(config_file, tmp_path / "second", 10, "--ckpt_path", str(checkpoint))
    assert resumed.trainer.global_step == 10
    state = resumed.model.state_dict()
    assert state.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(state[key], value), key


class _TaskLinkCLI(MoELightningCLI):
    """Links a data attribute into the task itself, as the domain CLIs do (graph: metric, num_classes)."""

    def add_arguments_to_parser(self, parser):
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")


@pytest.mark.parametrize("subcommand", ["test", "fit"])
def test_ckpt_path_with_task_links_and_injected_network(config_file, tmp_path, subcommand):
    def cli(*extra):
        return _TaskLinkCLI(ClassificationTask, None, args=[*extra, "--config", config_file])

    first = cli("fit", "--trainer.max_steps", "3", "--trainer.default_root_dir", str(tmp_path / "a"))
    assert first.model.num_classes == 10
    (checkpoint,) = (tmp_path / "a" / "checkpoints").glob("*.ckpt")
    extra = ["--trainer.max_steps", "6"] if subcommand == "fit" else []
    again = cli(subcommand, "--ckpt_path", str(checkpoint), "--trainer.default_root_dir", str(tmp_path / "b"), *extra)
    assert isinstance(again.model.model, MoEClassifier)
    if subcommand == "fit":
        assert again.trainer.global_step == 6
    else:
        assert "test/acc" in again.trainer.callback_metrics


def test_print_config(config_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(args=["fit", "--config", config_file, "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["model"]["class_path"] == "domain_moe.training.MoEClassifier"
    assert printed["data"]["class_path"] == "domain_moe.training.DigitsDataModule"
    assert printed["test_after_fit"] is False


def test_dict_args_and_missing_link_targets(tmp_path):
    # nn.Linear has no num_features/num_classes argument: the links are skipped, not an error.
    args = {
        "fit": {
            "model": {
                "class_path": "domain_moe.training.ClassificationTask",
                "init_args": {
                    "model": {"class_path": "torch.nn.Linear", "init_args": {"in_features": 64, "out_features": 10}},
                    "num_classes": 10,
                },
            },
            "data": {"class_path": "domain_moe.training.DigitsDataModule", "init_args": {"batch_size": 512}},
            "trainer": {**CONFIG["trainer"], "max_steps": 2, "default_root_dir": str(tmp_path)},
            "test_after_fit": True,
        }
    }
    cli = run_cli(args=args)
    assert isinstance(cli.model.model, torch.nn.Linear)
    assert cli.trainer.global_step == 2
    assert "test/acc" in cli.trainer.callback_metrics  # test_after_fit ran


def test_main_runs_a_subcommand(config_file, tmp_path):
    assert main(["validate", "--config", config_file, "--trainer.default_root_dir", str(tmp_path)]) is None


def test_bad_args():
    with pytest.raises(TypeError, match="args"):
        run_cli(args="fit --config x.yaml")
    with pytest.raises(TypeError, match="data_links"):
        MoELightningCLI(data_links="num_features", args=["--help"])
