"""The compiled fast path gives the event path's backtest exactly: same trades, fills, ids, refusals and a
bit-identical equity curve, for every strategy and across execution settings."""

from __future__ import annotations

import numpy as np
import pytest

from agents.bars import Bar, BarSeries
from agents.execution.risk import RiskConfig
from agents.execution.simulator import ExecutionConfig
from agents.strategies import STRATEGIES
from agents.strategies.base import Intent, Signals, Strategy, enter, exit_
from streams.keys import stable_id
from tests.strategy_helpers import as_signals, assert_signals_match_events, random_series, sample_params
from training.backtest import BacktestConfig, BacktestResult, run_backtest
from training.fast import run_fast

CONFIGS = {
    "plain": BacktestConfig(),
    "costly": BacktestConfig(cash=2_500.0, execution=ExecutionConfig(fee_rate=0.002, maker_fee_rate=0.0004,
                                                                     slippage_bps=7.5)),
    "close-fills": BacktestConfig(execution=ExecutionConfig(fill="close", slippage_bps=3.0)),
    "shorts-fixed": BacktestConfig(execution=ExecutionConfig(allow_short=True),
                                   risk=RiskConfig("fixed_fraction", 0.3, lot_size=0.001)),
    "risk-per-trade": BacktestConfig(execution=ExecutionConfig(allow_short=True),
                                     risk=RiskConfig("risk_per_trade", 0.02, max_position_fraction=0.8)),
}


def assert_same_result(event: BacktestResult, fast: BacktestResult) -> None:
    assert fast.path == "fast" and event.path == "event"
    assert fast.trades == event.trades
    assert fast.fills == event.fills
    assert [(r.ts, r.order_id) for r in fast.rejections] == [(r.ts, r.order_id) for r in event.rejections]
    assert np.array_equal(fast.equity, event.equity)
    assert fast.metrics == event.metrics


class RandomIntents(Strategy):
    """Test-only: decisions drawn from a hash of each bar, so both paths can compute them: entries either way
    with brackets near, far or on the wrong side of the price, exits, reversals and repeated intents."""

    name = "random_intents"
    parameters = {}

    def setup(self) -> None:
        pass

    @staticmethod
    def _draw(ts: int, salt: str) -> float:
        return int(stable_id("draw", ts, salt)[:8], 16) / 0xFFFFFFFF

    def decide(self, bar: Bar) -> list[Intent]:
        out: list[Intent] = []
        for side in ("long", "short"):
            if self._draw(bar.ts, f"exit-{side}") < 0.08:
                out.append(exit_(side))  # type: ignore[arg-type]
        for side in ("long", "short"):
            if self._draw(bar.ts, f"enter-{side}") < 0.06:
                sign = 1.0 if side == "long" else -1.0
                width = 0.002 + 0.05 * self._draw(bar.ts, f"width-{side}")
                skew = self._draw(bar.ts, f"skew-{side}")
                stop = bar.close * (1 - sign * width) if skew > 0.15 else bar.close * (1 + sign * width)
                target = bar.close * (1 + sign * 2 * width) if skew < 0.85 else None
                out.append(enter(side, stop_loss=stop if skew > 0.05 else None, take_profit=target))  # type: ignore[arg-type]
                break
        return out

    def on_bar(self, bar: Bar) -> list[Intent]:
        return self.decide(bar)

    def signals(self, series: BarSeries) -> Signals:
        return as_signals([self.decide(bar) for bar in series.bars()])


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_intents_through_both_paths(config_name: str, seed: int) -> None:
    series = random_series(4000, seed)
    assert_signals_match_events(RandomIntents, {}, series)
    config = CONFIGS[config_name]
    exits: set[str] = set()
    refusals: list[str] = []
    for warmup in (0, 137):
        event = run_backtest(RandomIntents(), series, config, warmup=warmup)
        fast = run_fast(RandomIntents(), series, config, warmup=warmup)
        assert fast is not None
        assert_same_result(event, fast)
        assert len(event.trades) > 5
        exits |= {t.exit_reason for t in event.trades}
        refusals += [r.reason for r in event.rejections]
    long_trade = next(t for t in event.trades if t.exit_ts - t.entry_ts >= 3 * series.span_ms)
    cut = int(np.searchsorted(series.ts, long_trade.entry_ts)) + 2  # the data ends while that trade is open
    event = run_backtest(RandomIntents(), series.slice(0, cut), config)
    fast = run_fast(RandomIntents(), series.slice(0, cut), config)
    assert fast is not None
    assert_same_result(event, fast)
    exits |= {t.exit_reason for t in event.trades}
    assert {"signal", "stop_loss", "take_profit", "end_of_data"} <= exits, "the data should exercise every exit"
    assert any("wrong side" in reason for reason in refusals)


def test_entries_refused_below_the_minimum_notional_are_refused_on_both_paths() -> None:
    config = BacktestConfig(cash=1_000.0, risk=RiskConfig("fixed_fraction", 0.152, min_notional=151.0))
    refusals = 0
    for seed in (1, 2, 3):
        series = random_series(4000, seed)
        event = run_backtest(RandomIntents(), series, config)
        fast = run_fast(RandomIntents(), series, config)
        assert fast is not None
        assert_same_result(event, fast)
        assert event.trades
        refusals += sum("below the minimum" in r.reason for r in event.rejections)
    assert refusals > 0


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_gives_the_same_backtest_on_both_paths(name: str) -> None:
    cls = STRATEGIES[name]
    trades = 0
    for seed, params in enumerate(sample_params(cls, 4, seed=11)):
        series = random_series(3000, 20 + seed)
        assert_signals_match_events(cls, params, series)
        for config_name in ("plain", "costly", "shorts-fixed", "close-fills"):
            config = CONFIGS[config_name]
            event = run_backtest(cls(params), series, config, warmup=cls(params).warmup_bars())
            fast = run_fast(cls(params), series, config, warmup=cls(params).warmup_bars())
            assert fast is not None, f"{name} has no fast path"
            assert_same_result(event, fast)
            trades += len(event.trades)
    assert trades > 0, f"{name} never traded on the test data: the comparison proves nothing"


def test_the_fast_path_steps_aside_where_it_does_not_model_the_rules() -> None:
    series = random_series(500, 5)
    lower = random_series(500 * 60, 5, "1m", gaps=False)
    config = BacktestConfig(execution=ExecutionConfig(intrabar="lower_timeframe"))
    assert run_fast(STRATEGIES["sma_cross"](), series, config, lower=lower) is None
    result = run_backtest(STRATEGIES["sma_cross"](), series, config, lower=lower, path="auto")
    assert result.path == "event"


