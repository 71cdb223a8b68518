"""``python -m domain_moe.vision fit --config ...``."""

from domain_moe.vision.cli import main

if __name__ == "__main__":
    main()
