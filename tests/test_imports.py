"""``import domain_moe`` must stay light: torch only."""

import subprocess
import sys

import pytest

HEAVY = ("lightning", "pytorch_lightning", "timm", "torch_geometric", "statsmodels", "gymnasium", "triton")


@pytest.mark.parametrize("module", ["domain_moe", "domain_moe.core", "domain_moe.testing"])
def test_import_loads_no_heavy_dependency(module):
    code = f"import sys, {module}\nheavy = [m for m in {HEAVY!r} if m in sys.modules]\nprint(','.join(heavy))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"


def test_core_imports_no_domain_or_training():
    code = (
        "import sys, domain_moe.core\n"
        "allowed = ('domain_moe.core', 'domain_moe.utils')\n"
        "print([m for m in sys.modules if m.startswith('domain_moe.') and not m.startswith(allowed)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
