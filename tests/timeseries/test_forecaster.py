import numpy as np
import pytest
import torch

from domain_moe.timeseries.data import synthetic_panel
from domain_moe.timeseries.forecaster import NeuralForecaster


@pytest.fixture(scope="module")
def panel():
    return synthetic_panel(num_series=6, length=72, period=6, horizon=6, seed=0)


def test_fit_predict_shapes_names_and_gate_usage(panel):
    assert NeuralForecaster(gamma=0.0).name == "moe"
    assert NeuralForecaster(num_experts=1, num_linear=0, gamma=0.0).name == "single-expert"
    model = NeuralForecaster(lookback=12, epochs=3, gamma=0.5, residual=True).fit(panel)
    assert model.name == "expert-loss-moe"
    fc = model.forecast()
    assert fc["y"].shape == (6, 6) and fc["expert_y"].shape == (6, 4, 6) and fc["gate"].shape == (6, 4)
    np.testing.assert_allclose(fc["y"], np.einsum("be,beh->bh", fc["gate"], fc["expert_y"]), rtol=1e-4, atol=1e-3)
    assert sum(model.gate_usage) == pytest.approx(1.0, abs=1e-5)


def test_training_reduces_error_below_untrained(panel):
    untrained = NeuralForecaster(lookback=12, epochs=0).fit(panel).predict()
    trained = NeuralForecaster(lookback=12, epochs=6, batch_size=32, gamma=0.5).fit(panel).predict()
    assert np.abs(trained - panel.test).mean() < 0.5 * np.abs(untrained - panel.test).mean()


def test_seeded_determinism(panel):
    a = NeuralForecaster(lookback=12, epochs=2, seed=4).fit(panel).predict()
    b = NeuralForecaster(lookback=12, epochs=2, seed=4).fit(panel).predict()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("params", ["gate", "experts"])
def test_update_touches_only_the_allowed_parameters(panel, params):
    model = NeuralForecaster(lookback=12, epochs=1).fit(panel)
    gate_before = [p.detach().clone() for p in model.model.gate_parameters]
    experts_before = [p.detach().clone() for p in model.model.expert_parameters]
    model.update(panel, epochs=2, window=5, params=params)
    gate_same = all(torch.equal(a, b) for a, b in zip(gate_before, model.model.gate_parameters))
    experts_same = all(torch.equal(a, b) for a, b in zip(experts_before, model.model.expert_parameters))
    assert (gate_same, experts_same) == ((True, False) if params == "experts" else (False, True))
    assert all(p.requires_grad for p in model.model.parameters())


def test_masked_variant_and_errors(panel):
    model = NeuralForecaster(lookback=12, epochs=1, gamma=1.0, variant="masked").fit(panel)
    assert model.masks() == [None, 24, 12, 6]
    with pytest.raises(ValueError, match="calibration_windows must have num_experts=4"):
        NeuralForecaster(lookback=12, epochs=1, gamma=1.0, variant="masked", calibration_windows=[None]).fit(panel)
    with pytest.raises(RuntimeError, match="call fit"):
        NeuralForecaster().update(panel)
    with pytest.raises(ValueError, match="params must be one of"):
        model.update(panel, params="router")
