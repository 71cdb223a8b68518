"""Time-series tests need the ``timeseries`` extra (Lightning, pandas, statsmodels)."""

import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("pandas")
pytest.importorskip("statsmodels")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: on a busy CPU one thread is many times faster than two (spec §7 note)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
