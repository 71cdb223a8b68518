import subprocess
import sys


def test_models_import_is_torch_only():
    code = (
        "import sys, domain_moe.timeseries, domain_moe.timeseries.models, domain_moe.timeseries.losses\n"
        "print([m for m in ('lightning', 'statsmodels', 'pandas', 'pmdarima') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
