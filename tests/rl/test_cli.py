from pathlib import Path

import torch

from domain_moe.rl.cli import run

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "rl" / "t2mir_dark_room_quickstart.yaml"
SMOKE = Path(__file__).resolve().parents[2] / "configs" / "trainer" / "smoke.yaml"


def test_fit_then_test_on_command_line_tasks(tmp_path):
    common = [
        "--config",
        str(CONFIG),
        "--config",
        str(SMOKE),
        "--trainer.default_root_dir",
        str(tmp_path),
        "--model.init_args.eval_episodes",
        "2",
    ]
    cli = run(["fit", *common, "--test_after_fit", "false", "--trainer.enable_checkpointing", "true"])
    assert cli.model.model.state_dim == cli.datamodule.state_dim
    trained = {k: v.clone() for k, v in cli.model.state_dict().items()}
    ckpt = next(Path(tmp_path).rglob("*.ckpt"))
    cli = run(["test", *common, "--ckpt_path", str(ckpt), "--data.init_args.eval_tasks", "[[0, 0], [6, 6]]"])
    for key, value in trained.items():
        assert torch.equal(cli.model.state_dict()[key], value), key
    metrics = cli.trainer.callback_metrics
    assert "test/final_return" in metrics and "test/return_ep2" in metrics
    assert cli.datamodule.goals_for_test.tolist() == [[0, 0], [6, 6]]
