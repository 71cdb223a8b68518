import pytest
import torch
from torch import nn

from domain_moe.distill.models.convnet import ConvNet
from domain_moe.distill.models.teachers import TeacherEnsemble, load_module_weights

VERTICALS = [[0, 2, 4, 6], [5, 7, 9], [1, 3, 8]]


def _teachers():
    torch.manual_seed(0)
    return [ConvNet(1, len(v), widths=(4, 8)) for v in VERTICALS]


def test_each_sample_uses_only_its_verticals_teacher():
    teachers = _teachers()
    ens = TeacherEnsemble(teachers, VERTICALS)
    calls = [0, 0, 0]
    for i, t in enumerate(teachers):
        t.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + a[0].shape[0]))
    x = torch.randn(5, 1, 28, 28)
    vertical = torch.tensor([2, 0, 2, 2, 0])
    probs = ens(x, vertical)
    assert calls == [2, 0, 3]  # rows per teacher; the footwear teacher is never called
    for i, v in enumerate(vertical.tolist()):
        expected = torch.zeros(10)
        expected[VERTICALS[v]] = torch.sigmoid(teachers[v](x[i : i + 1]))[0]
        torch.testing.assert_close(probs[i], expected)


def test_temperature_softens():
    ens = TeacherEnsemble([nn.Linear(3, 2), nn.Linear(3, 1)], [[0, 1], [2]], temperature=4.0)
    x = torch.randn(2, 3)
    logits = ens.teachers[0](x)
    torch.testing.assert_close(ens(x, torch.tensor([0, 0]))[:, :2], torch.sigmoid(logits / 4.0))


def test_frozen_eval_no_grad_even_after_train():
    ens = TeacherEnsemble(_teachers(), VERTICALS)
    parent = nn.ModuleDict({"teachers": ens, "student": nn.Linear(2, 2)})
    parent.train()
    assert parent["student"].training
    assert not any(m.training for m in ens.modules())
    assert not any(p.requires_grad for p in ens.parameters())
    out = ens(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 0]))
    assert not out.requires_grad


def test_teacher_output_width_must_match_its_vertical():
    with pytest.raises(ValueError, match=r"teachers\[1\] has num_classes=4 but its vertical 1 has N_v=3"):
        TeacherEnsemble([ConvNet(1, 4, (4,)), ConvNet(1, 4, (4,)), ConvNet(1, 3, (4,))], VERTICALS)
    ens = TeacherEnsemble([nn.Linear(3, 2), nn.Linear(3, 2)], [[0, 1], [2]])  # no num_classes attribute
    with pytest.raises(ValueError, match=r"teachers\[1\] must output \[B, N_v=1\] logits for its vertical"):
        ens(torch.randn(2, 3), torch.tensor([1, 1]))


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"teachers": [nn.Linear(3, 2)]}, ValueError, r"one module per vertical \(2\), got 1"),
        ({"teachers": nn.Linear(3, 2)}, TypeError, "sequence of nn.Modules"),
        ({"teachers": [nn.Linear(3, 2), "x"]}, TypeError, r"teachers\[1\] must be an nn.Module"),
        ({"verticals": [[0, 1], [1, 2]]}, ValueError, "overlap"),
        ({"verticals": [[0, 1], [3]]}, ValueError, "missing classes"),
        ({"temperature": 0.0}, ValueError, "temperature"),
    ],
)
def test_bad_inputs(kwargs, err, match):
    args = {"teachers": [nn.Linear(3, 2), nn.Linear(3, 1)], "verticals": [[0, 1], [2]]}
    args.update(kwargs)
    with pytest.raises(err, match=match):
        TeacherEnsemble(**args)


def test_checkpoints_load_and_missing_ones_raise_or_warn(tmp_path):
    source = nn.Linear(3, 2)
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "a.ckpt")
    target = nn.Linear(3, 2)
    ens = TeacherEnsemble([target, nn.Linear(3, 1)], [[0, 1], [2]], checkpoints=[str(tmp_path), None])
    torch.testing.assert_close(ens.teachers[0].weight, source.weight)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        TeacherEnsemble([nn.Linear(3, 2), nn.Linear(3, 1)], [[0, 1], [2]], checkpoints=[None, str(tmp_path / "x")])
    with pytest.warns(UserWarning, match="untrained weights"):
        TeacherEnsemble(
            [nn.Linear(3, 2), nn.Linear(3, 1)], [[0, 1], [2]], checkpoints=[None, "nowhere"], require_checkpoints=False
        )
    with pytest.raises(FileNotFoundError):
        load_module_weights(nn.Linear(3, 2), tmp_path / "missing.pt")


def test_softmax_teachers_give_a_distribution_over_their_vertical():
    ens = TeacherEnsemble(_teachers(), VERTICALS, activation="softmax", temperature=2.0)
    x = torch.randn(4, 1, 28, 28)
    vertical = torch.tensor([0, 1, 2, 1])
    probs = ens(x, vertical)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))
    expected = (ens.teachers[1](x[1:2]) / 2.0).softmax(1)[0]
    torch.testing.assert_close(probs[1, VERTICALS[1]], expected)
    with pytest.raises(ValueError, match="activation must be"):
        TeacherEnsemble(_teachers(), VERTICALS, activation="relu")
