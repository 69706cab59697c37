"""The strategies TradePulse ships, by name. Agents and training look strategies up here and nowhere else."""

from __future__ import annotations

from agents.strategies.base import ParamError, Strategy
from agents.strategies.donchian import DonchianBreakout
from agents.strategies.ema_trend import EmaTrend
from agents.strategies.htf_sweep import HtfSweep
from agents.strategies.rsi_bollinger import RsiBollinger
from agents.strategies.sma_cross import SmaCross
from agents.strategies.volume_breakout import VolumeBreakout

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (SmaCross, EmaTrend, RsiBollinger, DonchianBreakout, VolumeBreakout, HtfSweep)
}


class UnknownStrategy(ParamError):
    """A strategy name that is not registered."""


def strategy_class(name: str) -> type[Strategy]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategy(f"unknown strategy {name!r}; available: {', '.join(sorted(STRATEGIES))}") from None


def create_strategy(name: str, params: dict[str, object] | None = None) -> Strategy:
    """A validated instance of a registered strategy (raises `ParamError` with a clear message)."""
    return strategy_class(name)(params)
