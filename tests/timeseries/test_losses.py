import pytest
import torch

from domain_moe.timeseries.losses import calibration_mask, combined_loss, expert_loss, pointwise_loss
from domain_moe.timeseries.models import ExpertLossMoE


def _parts():
    expert_y = torch.tensor([[[1.0, 1.0], [3.0, 5.0]], [[0.0, 2.0], [2.0, 2.0]]])  # B=2, E=2, H=2
    y = torch.tensor([[2.0, 2.0], [2.0, 2.0]])
    gate = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    return expert_y, y, gate


def test_variants_by_hand():
    expert_y, y, gate = _parts()
    # per-sample MAE: sample 0 -> [1, 2], sample 1 -> [1, 0]
    assert float(expert_loss(expert_y, y, variant="uniform")) == pytest.approx((1 + 2 + 1 + 0) / 4)
    assert float(expert_loss(expert_y, y, gate, variant="gate")) == pytest.approx((0.25 + 1.5 + 1.0 + 0.0) / 2)
    mask = torch.tensor([[True, False], [True, True]])
    # expert 0 sees both samples (1, 1) -> 1 ; expert 1 sees sample 1 only (0) -> 0 ; mean 0.5
    assert float(expert_loss(expert_y, y, mask=mask, variant="masked")) == pytest.approx(0.5)
    # MSE base: sample 0 -> [1, (1+9)/2=5]
    assert float(pointwise_loss(expert_y, y.unsqueeze(1), "mse")[0, 1]) == pytest.approx(5.0)


def test_gamma_zero_is_the_base_loss():
    expert_y, y, gate = _parts()
    y_hat = torch.einsum("be,beh->bh", gate, expert_y)
    total, parts = combined_loss(y_hat, expert_y, gate, y, gamma=0.0)
    assert torch.equal(total, pointwise_loss(y_hat, y).mean())
    assert float(parts["expert"]) == 0.0
    total, parts = combined_loss(y_hat, expert_y, gate, y, gamma=0.5, variant="uniform")
    assert float(total) == pytest.approx(float(parts["base"]) + 0.5 * 1.0)


def test_expert_loss_gradient_reaches_an_expert_with_near_zero_gate_weight():
    torch.manual_seed(0)
    model = ExpertLossMoE(input_size=6, horizon=3, num_experts=3, num_linear=1, d_hidden=8)
    with torch.no_grad():  # the gate gives expert 2 a weight of ~1e-13
        model.moe.router.weight.zero_()
        model.moe.router.weight[0, 0] = 30.0
    x, y = torch.ones(16, 6), torch.randn(16, 3)

    def grad_of_expert_2(gamma):
        model.zero_grad()
        out = model(x)
        assert out.gate[:, 2].max() < 1e-12
        loss, _ = combined_loss(out.y, out.expert_y, out.gate, y, gamma=gamma, variant="uniform")
        loss.backward()
        return model.moe.experts.experts[2][0].weight.grad.abs().max().item()

    assert grad_of_expert_2(0.0) < 1e-10  # the plain MoE starves it
    assert grad_of_expert_2(0.5) > 1e-4  # the expert loss feeds it


def test_errors_name_the_argument():
    expert_y, y, gate = _parts()
    with pytest.raises(ValueError, match="variant must be one of"):
        expert_loss(expert_y, y, variant="top1")
    with pytest.raises(ValueError, match="needs gate"):
        expert_loss(expert_y, y, variant="gate")
    with pytest.raises(ValueError, match="needs mask"):
        expert_loss(expert_y, y, variant="masked")
    with pytest.raises(ValueError, match=r"expert_y must be \[B, E, H\]"):
        expert_loss(expert_y[0], y)
    with pytest.raises(ValueError, match="gamma must be"):
        combined_loss(y, expert_y, gate, y, gamma=-1.0)
    with pytest.raises(ValueError, match="base_loss must be"):
        pointwise_loss(y, y, "huber")


def test_calibration_mask():
    mask = calibration_mask(torch.tensor([0, 3, 9]), [None, 4, 1])
    assert mask.tolist() == [[True, True, True], [True, True, False], [True, False, False]]
    with pytest.raises(ValueError, match=r"windows\[1\]"):
        calibration_mask(torch.tensor([0]), [None, 0])
