"""``python -m domain_moe.graph fit --config ...``."""

from domain_moe.graph.cli import main

if __name__ == "__main__":
    main()
