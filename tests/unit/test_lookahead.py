"""Look-ahead is impossible on the event path and caught on vectorised paths; a strategy that cheats fails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.bars import Bar, BarSeries
from agents.strategies import STRATEGIES
from agents.strategies.base import Intent, Signals, Strategy, enter, exit_
from streams.keys import TIMEFRAMES
from tests.strategy_helpers import event_intents, random_series, sample_params
from training.lookahead import LookAheadError, check_no_lookahead


class PeeksAhead(Strategy):
    """Cheats in its fast path: buys when the *next* close is higher (np.roll brings the future back)."""

    name = "peeks_ahead"
    parameters = {}

    def setup(self) -> None:
        self.prev = None

    def on_bar(self, bar: Bar) -> list[Intent]:
        return []

    def signals(self, series: BarSeries) -> Signals:
        out = Signals.empty(len(series))
        out.enter_long[:] = np.roll(series.close, -1) > series.close
        out.exit_long[:] = np.roll(series.close, -1) < series.close
        return out


class NormalisesOverTheWholeSeries(PeeksAhead):
    """A subtler cheat: a z-score against the mean and deviation of the whole column, future included."""

    name = "whole_series_zscore"

    def signals(self, series: BarSeries) -> Signals:
        z = (series.close - series.close.mean()) / series.close.std()
        out = Signals.empty(len(series))
        out.enter_long[:] = z < -1.0
        out.exit_long[:] = z > 0.0
        return out


class WatchesHigherBars(Strategy):
    """Records every higher-timeframe bar it is given with the base bar it then sees."""

    name = "watches_higher_bars"
    parameters = {}

    def setup(self) -> None:
        self.pending: list[tuple[str, Bar]] = []
        self.seen: list[tuple[str, Bar, Bar]] = []

    def higher_timeframes(self) -> tuple[str, ...]:
        return ("4h", "1d")

    def on_higher_bar(self, timeframe: str, bar: Bar) -> None:
        self.pending.append((timeframe, bar))

    def on_bar(self, bar: Bar) -> list[Intent]:
        self.seen += [(timeframe, higher, bar) for timeframe, higher in self.pending]
        self.pending = []
        return [enter("long")] if bar.close > bar.open else [exit_("long")]


@pytest.mark.parametrize("cheat", [PeeksAhead, NormalisesOverTheWholeSeries])
def test_a_fast_path_that_uses_the_future_is_caught(cheat: type[Strategy]) -> None:
    with pytest.raises(LookAheadError, match="look ahead"):
        check_no_lookahead(cheat(), random_series(2000, 4))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_no_shipped_strategy_looks_ahead(name: str) -> None:
    cls = STRATEGIES[name]
    for seed, params in enumerate(sample_params(cls, 3, seed=5)):
        check_no_lookahead(cls(params), random_series(2500, 40 + seed))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_decisions_on_a_prefix_do_not_change_when_later_bars_change(name: str) -> None:
    """The event path, fed a series and the same series with a different future, decides identically until then."""
    cls = STRATEGIES[name]
    series = random_series(2000, 8)
    other = random_series(2000, 9)
    cut = 1200
    spliced = BarSeries(series.exchange, series.symbol, series.timeframe, series.ts,
                        *(np.concatenate([getattr(series, c)[:cut], getattr(other, c)[cut:] * 3.0])
                          for c in ("open", "high", "low", "close", "volume")))
    for params in sample_params(cls, 3, seed=2):
        assert event_intents(cls(params), series)[:cut] == event_intents(cls(params), spliced)[:cut]


def test_higher_timeframe_bars_arrive_closed_and_built_only_from_the_past() -> None:
    series = random_series(24 * 30, 12)
    strategy = WatchesHigherBars()
    event_intents(strategy, series)
    frame = pd.DataFrame({"open": series.open, "high": series.high, "low": series.low, "close": series.close},
                         index=pd.to_datetime(series.ts, unit="ms"))
    assert len(strategy.seen) > 30
    assert {tf for tf, _, _ in strategy.seen} == {"4h", "1d"}
    for timeframe, higher, base in strategy.seen:
        span = TIMEFRAMES[timeframe]
        assert higher.ts + span <= base.ts + series.span_ms, "a higher bar was delivered before it closed"
        bucket = _bucket_bars(frame, higher.ts, span)
        assert bucket.index[-1] <= pd.Timestamp(base.ts, unit="ms")
        assert (higher.open, higher.high, higher.low, higher.close) == (
            bucket.open.iloc[0], bucket.high.max(), bucket.low.min(), bucket.close.iloc[-1])


def _bucket_bars(frame: pd.DataFrame, start: int, span: int) -> pd.DataFrame:
    return frame[(frame.index >= pd.Timestamp(start, unit="ms")) & (frame.index < pd.Timestamp(start + span,
                                                                                                  unit="ms"))]
