import csv
from pathlib import Path

from domain_moe.timeseries.cli import ForecastWriter, run

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "trainer" / "smoke.yaml")
SYNTH = str(REPO / "configs" / "timeseries" / "moe_synthetic.yaml")


def test_predict_writes_forecasts_csv(tmp_path):
    out = tmp_path / "fc.csv"
    run(["predict", "--config", SYNTH, "--config", SMOKE, "--trainer.default_root_dir", str(tmp_path),
         "--forecasts", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 8 * 12  # 8 series x horizon 12
    assert rows[0]["series"] == "s0" and rows[0]["step"] == "1"
    assert {"forecast", "expert_3", "gate_0"} <= set(rows[0])


def test_links_input_size_and_horizon(tmp_path):
    cli = run(["--config", SYNTH, "--config", SMOKE, "--data.init_args.lookback", "16",
               "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert cli.model.model.input_size == 16 and cli.model.model.horizon == 12
    assert ForecastWriter(str(tmp_path / "x.csv")).rows == []
