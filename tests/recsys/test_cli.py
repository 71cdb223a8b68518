"""The recsys CLI: data-to-model/task links and heatmaps (tests/test_configs.py smoke-fits every config)."""

from pathlib import Path

import pytest
import yaml

pytest.importorskip("lightning")

from domain_moe.recsys.cli import run
from domain_moe.recsys.tasks import MultiTaskTask

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "recsys").glob("*.yaml"))
SMOKE = str(REPO / "configs" / "trainer" / "smoke.yaml")

# Shrink each data set to a few hundred rows; real data sets are read from the shared data folder.
TINY = {
    "MMoESyntheticDataModule": {"num_train": 128, "num_val": 64, "num_test": 64, "batch_size": 32},
    "HoMESyntheticDataModule": {"num_samples": 2000, "num_users": 60, "num_items": 40, "batch_size": 64},
    "CensusIncomeDataModule": {"batch_size": 64},
    "MovieLensDataModule": {"batch_size": 64},
}
ROOTS = {"CensusIncomeDataModule": "census-income", "MovieLensDataModule": "ml-latest-small"}


def overrides(config: Path, data_root: Path) -> list[str]:
    data_cls = yaml.safe_load(config.read_text())["data"]["class_path"].rsplit(".", 1)[-1]
    args = [f"--data.init_args.{k}={v}" for k, v in TINY[data_cls].items()]
    if data_cls in ROOTS:
        root = data_root / "recsys" / ROOTS[data_cls]
        if not root.is_dir():
            pytest.skip(f"shared data {root} not available")
        args.append(f"--data.init_args.root={root}")
    return args


def test_every_model_and_data_set_has_a_config():
    names = {c.stem for c in CONFIGS}
    assert "mmoe_synthetic" in names  # the quickstart
    assert {"shared_bottom_synthetic", "omoe_synthetic", "cgc_synthetic", "ple_synthetic", "home_stress"} <= names
    assert any("census" in n for n in names) and any("movielens" in n for n in names)


def test_quickstart_links_data_into_model_and_task(tmp_path, data_root):
    # tests/test_configs.py smoke-fits every config at full size; this checks the recsys-specific links.
    cfg = REPO / "configs" / "recsys" / "mmoe_synthetic.yaml"
    cli = run([
        "fit", "--config", SMOKE, "--config", str(cfg), *overrides(cfg, data_root),
        f"--trainer.default_root_dir={tmp_path}",
    ])
    assert isinstance(cli.model, MultiTaskTask)
    assert cli.trainer.global_step == 2
    assert cli.model.task_names == cli.datamodule.task_names == cli.model.model.task_names == ["task1", "task2"]
    assert cli.model.task_types == ["regression", "regression"] and cli.model.model.embedding.num_dense == 100
    assert "test/task1/mse" in cli.trainer.callback_metrics


def test_cli_writes_expert_health_heatmaps(tmp_path):
    cfg = REPO / "configs" / "recsys" / "home_stress.yaml"
    run([
        "fit", "--config", SMOKE, "--config", str(cfg), *overrides(cfg, tmp_path),
        f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=true", "--test_after_fit=false",
        "--trainer.limit_train_batches=2",  # end the epoch, so that validation (and the plot) runs
    ])
    assert list(tmp_path.rglob("expert_health/epoch000.png"))
