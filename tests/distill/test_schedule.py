import pytest
import torch

from domain_moe.distill.schedule import pace_quantile, self_paced_weights


def test_pace_quantile_follows_the_schedule():
    # q(t) = min(1, q0 + (1 - q0) t / rho)
    for t in (0.0, 0.1, 0.2, 0.3, 0.45):
        assert pace_quantile(t, q0=0.4, rho=0.5) == pytest.approx(0.4 + 0.6 * t / 0.5)
    assert pace_quantile(0.5, q0=0.4, rho=0.5) == 1.0
    assert pace_quantile(0.8) == 1.0
    assert pace_quantile(0.0) == 0.5


def test_self_paced_weights_admit_the_easiest_per_vertical():
    losses = torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 30.0, 20.0])
    vertical = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    # Vertical 0 losses sorted 1..5: the 0.5-quantile is 3 -> admits 1, 2, 3; vertical 1: median 20 -> 10, 20.
    w = self_paced_weights(losses, vertical, 0.5)
    assert w.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    # Each vertical is paced on its own: the hard vertical 1 is not starved by vertical 0's small losses.
    assert self_paced_weights(losses, vertical, 0.0).tolist() == [0, 1, 0, 0, 0, 1, 0, 0]
    assert self_paced_weights(losses, vertical, 1.0).tolist() == [1.0] * 8


def test_admitted_fraction_grows_with_progress():
    torch.manual_seed(0)
    losses, vertical = torch.rand(400), torch.randint(0, 3, (400,))
    fractions = [float(self_paced_weights(losses, vertical, pace_quantile(t)).mean()) for t in (0.0, 0.25, 0.5)]
    assert fractions[0] == pytest.approx(0.5, abs=0.02)
    assert fractions[1] == pytest.approx(0.75, abs=0.02)
    assert fractions[2] == 1.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: pace_quantile(0.1, q0=0.0), "q0"),
        (lambda: pace_quantile(0.1, rho=0.0), "rho"),
        (lambda: self_paced_weights(torch.rand(3), torch.zeros(4, dtype=torch.long), 0.5), "same shape"),
        (lambda: self_paced_weights(torch.rand(3), torch.zeros(3, dtype=torch.long), 1.5), "quantile"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
