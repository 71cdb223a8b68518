from pathlib import Path

from domain_moe.vision.cli import VisionCLI, run

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "vision"


def test_cli_instantiates_a_config_without_running():
    cli = run(["--config", str(CONFIGS / "quickstart.yaml"), "--trainer.logger", "false"], run=False)
    assert isinstance(cli, VisionCLI)
    assert type(cli.model).__name__ == "MoVATask"
    assert cli.model.model.route_mode == "all"
    assert not any(p.requires_grad for p in cli.model.model.pool.parameters())
