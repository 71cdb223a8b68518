"""Forecasting networks (plain ``nn.Module``s, torch only)."""

from domain_moe.timeseries.models.expert_loss_moe import ExpertLossMoE, ForecastOutput

__all__ = ["ExpertLossMoE", "ForecastOutput"]
