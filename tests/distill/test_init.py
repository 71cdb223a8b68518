import subprocess
import sys


def test_models_import_without_lightning():
    code = (
        "import sys; import domain_moe.distill, domain_moe.distill.models; "
        "bad = [m for m in ('lightning', 'timm') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names():
    import domain_moe.distill as distill

    for name in distill.__all__:
        assert getattr(distill, name) is not None
