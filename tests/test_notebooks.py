"""Every notebook in ``notebooks/`` executes top to bottom (at the small settings it ships with)."""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
REQUIRES = {
    "graph": "torch_geometric",
    "timeseries": "statsmodels",
    "rl": "gymnasium",
    "vision": "timm",
    "distill": "lightning",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    if path.stem in REQUIRES:
        pytest.importorskip(REQUIRES[path.stem])
    nb = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "outputs must be stripped"
    # Run inside tmp_path so logs and checkpoints never land in the repository.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if "DOMAIN_MOE_DATA" not in os.environ:
        monkeypatch.setenv("DOMAIN_MOE_DATA", str(path.parents[2] / "shared" / "data"))
    resources = {"metadata": {"path": str(tmp_path)}}
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources)
    client.execute()
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
