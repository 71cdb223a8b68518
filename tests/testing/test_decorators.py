import pytest

from domain_moe.testing import requires


@requires("definitely_not_a_module_xyz")
def test_skipped_when_missing():
    raise AssertionError("must be skipped")


def _target():
    return None


def test_requires_marks_skip():
    marker = requires("definitely_not_a_module_xyz")(_target).pytestmark[-1]
    assert marker.name == "skipif" and marker.args[0] is True
    del _target.pytestmark
    marker = requires("torch")(_target).pytestmark[-1]
    assert marker.args[0] is False


@pytest.mark.gpu
def test_gpu_marker_is_deselected_on_cpu():
    import torch

    assert torch.cuda.is_available()
