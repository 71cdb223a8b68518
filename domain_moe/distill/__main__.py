"""``python -m domain_moe.distill fit --config ...``."""

from domain_moe.distill.cli import main

if __name__ == "__main__":
    main()
