"""``python -m domain_moe.recsys fit --config ...``."""

from domain_moe.recsys.cli import main

if __name__ == "__main__":
    main()
