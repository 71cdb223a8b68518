"""``import domain_moe.recsys`` and its models need torch only; Lightning comes with data, tasks and the CLI."""

import subprocess
import sys


def test_models_import_without_lightning():
    code = (
        "import sys, domain_moe.recsys, domain_moe.recsys.models, domain_moe.recsys.diagnostics\n"
        "print([m for m in ('lightning', 'pytorch_lightning', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names():
    import domain_moe.recsys as recsys

    assert {"HoME", "MMoE", "OMoE", "CGC", "PLE", "SharedBottom"} <= set(recsys.__all__)
