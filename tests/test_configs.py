"""Every shipped experiment config trains for two steps with ``configs/trainer/smoke.yaml``."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
SMOKE = CONFIG_DIR / "trainer" / "smoke.yaml"
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.relative_to(CONFIG_DIR).parts[0] != "trainer")


@pytest.fixture(autouse=True)
def _one_thread():
    """Smoke models are tiny: on a busy 2-core machine OpenMP synchronisation costs more than the ops."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _entry_point(domain: str):
    """The domain's ``cli.main`` (its own links and bases); ``core`` configs use the shared CLI."""
    name = "domain_moe.training.cli" if domain == "core" else f"domain_moe.{domain}.cli"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:  # a missing optional dependency names its pip extra
        pytest.skip(str(err))
    return module.main


def test_configs_found():
    assert CONFIG_DIR / "core" / "moe_digits.yaml" in CONFIGS


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(CONFIG_DIR)) for p in CONFIGS])
def test_config_smoke_fits(config, tmp_path):
    main = _entry_point(config.relative_to(CONFIG_DIR).parts[0])
    main(["fit", "--config", str(config), "--config", str(SMOKE), "--trainer.default_root_dir", str(tmp_path)])
