"""Backtests: one strategy over one bar series through the same session, simulator and sizing the agents run.

`run_backtest` is the event path: every closed bar goes through `TradingSession.on_bar`, exactly as the paper
trading agents feed them. `training.fast.run_fast` gives the same result from the strategy's vectorised signals
for optimisation; `path="auto"` uses it when the strategy has one (tests prove the two agree trade for trade).

The first `warmup` bars only feed the strategy's indicators (no orders); the equity curve and the metrics start
at the first tradable bar. With `finalize`, a position still open after the last bar is closed at its close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from agents.bars import Bar, BarSeries, FloatArray, HigherTimeframes, IntArray
from agents.execution.risk import RiskConfig
from agents.execution.session import TradingSession
from agents.execution.simulator import Events, ExecutionConfig, ExecutionSimulator, Fill, LowerBars, Rejection, Trade
from agents.strategies.base import Strategy
from training.metrics import TradeTable, compute_metrics

logger = logging.getLogger(__name__)

Path = Literal["event", "fast", "auto"]


@dataclass(frozen=True)
class BacktestConfig:
    """Everything about a backtest except the strategy and the data."""

    cash: float = 10_000.0
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    finalize: bool = True
    scope: str = "backtest"
    """Namespace of the deterministic order and trade ids (a configuration id in training and live)."""


Records = tuple[list[Trade], list[Fill], list[Rejection]]


@dataclass
class BacktestResult:
    """The equity curve (one value per tradable bar, at its close), the trades as columns, and the trade, fill
    and rejection records, which the fast path builds only when asked for."""

    series: BarSeries
    start: int
    """Index of the first tradable bar in `series`."""
    equity: FloatArray
    table: TradeTable
    build_records: Callable[[], Records]
    initial_cash: float
    path: str

    @classmethod
    def of_events(cls, series: BarSeries, start: int, equity: FloatArray, events: Events, initial_cash: float,
                  path: str) -> BacktestResult:
        records = (events.trades, events.fills, events.rejections)
        return cls(series, start, equity, TradeTable.of(events.trades), lambda: records, initial_cash, path)

    @cached_property
    def records(self) -> Records:
        return self.build_records()

    @property
    def trades(self) -> list[Trade]:
        return self.records[0]

    @property
    def fills(self) -> list[Fill]:
        return self.records[1]

    @property
    def rejections(self) -> list[Rejection]:
        return self.records[2]

    @property
    def ts(self) -> IntArray:
        return self.series.ts[self.start:]

    @cached_property
    def metrics(self) -> dict[str, float | int | None]:
        return compute_metrics(self.equity, self.table, initial=self.initial_cash, bar_ms=self.series.span_ms)


class BacktestError(ValueError):
    """A backtest that cannot run as asked (too few bars, bad range); the message says why."""


def new_simulator(config: BacktestConfig, series: BarSeries) -> ExecutionSimulator:
    return ExecutionSimulator(config.execution, config.risk, config.cash, series.span_ms, config.scope)


def lower_bars_finder(series: BarSeries, lower: BarSeries | None) -> Callable[[int], LowerBars | None]:
    """For bar `i` of `series`, a callable returning the `lower` bars inside it (None without lower data)."""
    if lower is None:
        return lambda i: None
    span = series.span_ms

    def finder(i: int) -> LowerBars:
        start = int(series.ts[i])

        def inside() -> list[Bar]:
            lo = int(np.searchsorted(lower.ts, start, side="left"))
            hi = int(np.searchsorted(lower.ts, start + span, side="left"))
            return list(lower.slice(lo, hi).bars())

        return inside

    return finder


def check_runnable(strategy: Strategy, series: BarSeries, warmup: int) -> None:
    """Refuse a backtest whose strategy cannot use this timeframe or that has too few bars to trade."""
    wanted = strategy.higher_timeframes()
    if wanted:
        try:
            HigherTimeframes(series.timeframe, wanted)
        except ValueError as exc:
            raise BacktestError(f"{strategy.name} with {strategy.params} cannot trade {series.timeframe} bars: {exc}")\
                from exc
    needed = max(warmup, strategy.warmup_bars()) + 2
    if len(series) < needed:
        raise BacktestError(
            f"{len(series)} bars of {series.symbol} {series.timeframe} are too few: {strategy.name} with "
            f"{strategy.params} needs at least {needed} (warm-up {strategy.warmup_bars()} plus two to trade)"
        )


def run_backtest(
    strategy: Strategy,
    series: BarSeries,
    config: BacktestConfig | None = None,
    *,
    warmup: int = 0,
    lower: BarSeries | None = None,
    path: Path = "event",
) -> BacktestResult:
    """Backtest `strategy` (a fresh instance: it is consumed) over `series`."""
    config = config or BacktestConfig()
    check_runnable(strategy, series, warmup)
    if path != "event":
        from training.fast import run_fast

        result = run_fast(strategy, series, config, warmup=warmup, lower=lower)
        if result is not None:
            return result
        if path == "fast":
            raise BacktestError(f"{strategy.name} has no vectorised fast path")
    simulator = new_simulator(config, series)
    session = TradingSession(strategy, simulator, series.timeframe)
    lower_for = lower_bars_finder(series, lower)
    events = Events()
    equity = np.empty(len(series) - warmup, dtype=np.float64)
    last: Bar | None = None
    for i, bar in enumerate(series.bars()):
        step = session.on_bar(bar, lower_for(i), trading=i >= warmup)
        events.extend(step.events)
        if i >= warmup:
            equity[i - warmup] = simulator.equity(bar.close)
        last = bar
    if config.finalize and last is not None:
        events.extend(simulator.close_all(last))
        equity[-1] = simulator.equity(last.close)
    return BacktestResult.of_events(series, warmup, equity, events, config.cash, "event")
