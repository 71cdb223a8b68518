from pathlib import Path

from domain_moe.graph.cli import run

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "trainer" / "smoke.yaml"


def test_quickstart_links_data_into_model(tmp_path):
    cli = run(
        [
            "fit",
            "--config",
            str(REPO / "configs/graph/mowst_quickstart.yaml"),
            "--config",
            str(SMOKE),
            "--data.init_args.num_nodes",
            "100",
            "--data.init_args.num_features",
            "6",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert cli.model.mowst.weak.num_features == 6
    assert cli.model.metric == "accuracy" and cli.model.num_classes == 5
