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


def load_strategy_modules(modules: list[str]) -> None:
    """Import modules that define more strategies (`TRADEPULSE_STRATEGY_MODULES`) and register them by name."""
    import importlib

    for module in modules:
        try:
            loaded = importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"cannot import strategy module {module!r}: {exc}") from exc
        for value in vars(loaded).values():
            if isinstance(value, type) and issubclass(value, Strategy) and value is not Strategy \
                    and getattr(value, "name", None) and value.__module__ == loaded.__name__:
                if value.name in STRATEGIES and STRATEGIES[value.name] is not value:
                    raise ValueError(f"strategy {value.name!r} of {module} is already defined")
                STRATEGIES[value.name] = value
