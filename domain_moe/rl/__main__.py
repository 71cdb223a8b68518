"""``python -m domain_moe.rl fit --config ...``."""

from domain_moe.rl.cli import main

if __name__ == "__main__":
    main()
