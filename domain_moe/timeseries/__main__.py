"""``python -m domain_moe.timeseries fit --config configs/timeseries/quickstart_macrodata.yaml``."""

from domain_moe.timeseries.cli import main

if __name__ == "__main__":
    main()
