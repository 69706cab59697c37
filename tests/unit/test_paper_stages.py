"""The paper-trading stages chained on each candle (`step_bar`) over a candle series give exactly the backtest of
the same candles;
configuration changes are validated; deactivation stops entries and flattens or keeps as configured."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from agents.execution.risk import RiskLimits
from agents.paper import (
    ConfigError,
    TradingConfig,
    account_snapshot,
    has_applied,
    start_bar,
    step_bar,
    step_orders,
    step_signal,
    takes_bar,
    trading_config,
)
from agents.strategies import STRATEGIES
from streams.codecs import decode, encode
from streams.keys import stable_id
from streams.records import SCHEMA_VERSION, Candle, ConfigChange, PortfolioSnapshot, Signal, make_candle
from tests.strategy_helpers import random_series, sample_params
from training.backtest import BacktestConfig, run_backtest

LIMITS = RiskLimits(max_open_positions=100, max_positions_per_symbol=100, max_exposure=100.0, daily_loss_limit=1.0)


def change(**overrides: Any) -> ConfigChange:
    values: dict[str, Any] = {
        "event_id": stable_id("config", "c1"), "ts": 1, "schema_version": SCHEMA_VERSION, "configuration_id": "c1",
        "action": "activate", "strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "exchange": "synthetic",
        "symbols": ["BTC/USDT"], "timeframe": "1h", "account_id": "paper-1", "allocation": 10_000.0,
        "execution": {"fee_rate": 0.001, "slippage_bps": 2.0}, "risk": {"sizing": "fixed_fraction", "fraction": 0.5},
    }
    values.update(overrides)
    return ConfigChange(**values)


def candles_of(series: Any) -> list[Candle]:
    return [make_candle(series.exchange, series.symbol, series.timeframe, b.ts,
                        (b.open, b.high, b.low, b.close, b.volume), source="test") for b in series.bars()]


def roundtrip(record: Any) -> Any:
    """Through the wire, as the agents see it."""
    return decode(type(record), encode(record))


def through_table(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """Through a Table's changelog, as a restarted agent gets it back."""
    return orjson.loads(orjson.dumps(state)) if state is not None else None


def paper_session(config: TradingConfig, candles: list[Candle]) -> list[Any]:
    strategy_state: dict[str, Any] | None = None
    simulator_state: dict[str, Any] | None = None
    trades = []
    for candle in candles:
        step = step_bar(config, strategy_state, simulator_state, roundtrip(candle), LIMITS, None, None)
        strategy_state, simulator_state = through_table(step.strategy_state), through_table(step.fills.state)
        trades += [roundtrip(t) for t in step.fills.trades]
    return trades


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_paper_stages_trade_exactly_like_the_backtest(name: str) -> None:
    cls = STRATEGIES[name]
    series = random_series(1500, 31)
    count = 0
    for params in sample_params(cls, 3, seed=4):
        config = trading_config(change(strategy=name, params=params, execution={"fee_rate": 0.001,
                                                                                "slippage_bps": 2.0,
                                                                                "allow_short": True}))
        paper = paper_session(config, candles_of(series))
        backtest = run_backtest(cls(params), series, BacktestConfig(
            cash=config.allocation, execution=config.execution, risk=config.risk, finalize=False))
        expected = [(t.side, t.quantity, t.entry_ts, t.entry_price, t.exit_ts, t.exit_price, t.pnl, t.fees,
                     t.exit_reason) for t in backtest.trades]
        got = [(t.side, t.quantity, t.entry_ts, t.entry_price, t.ts, t.exit_price, t.pnl, t.fees, t.exit_reason)
               for t in paper]
        assert got == expected
        count += len(got)
    assert count > 0


def test_a_redelivered_candle_changes_nothing() -> None:
    config = trading_config(change())
    candles = candles_of(random_series(300, 2))
    once = paper_session(config, candles)
    twice = paper_session(config, [c for c in candles for _ in (0, 1)])
    assert once == twice and once


def test_has_applied_is_true_exactly_when_the_strategy_step_would_change_nothing() -> None:
    active = trading_config(change())
    candles = candles_of(random_series(60, 3))
    state: dict[str, Any] | None = None
    for candle in candles[:40]:
        state = step_signal(active, state, candle, flat=True).state
    for candle in (candles[0], candles[39], candles[40]):
        step = step_signal(active, state, candle, flat=True)
        assert has_applied(active, state, candle.ts) == (step.signal is None and step.state == state)
    assert has_applied(active, state, candles[39].ts) and not has_applied(active, state, candles[40].ts)
    assert not has_applied(active, None, candles[0].ts)  # a configuration yet to start
    retuned = trading_config(change(params={"fast": 4, "slow": 20}))
    assert not has_applied(retuned, state, candles[0].ts)  # new parameters: the strategy starts afresh
    stopped = trading_config(change(action="deactivate"))
    assert has_applied(stopped, None, candles[40].ts)  # deactivated and forgotten: nothing to do


def test_deactivation_stops_entries_and_closes_or_keeps_the_position() -> None:
    active = trading_config(change(params={"fast": 2, "slow": 3}))
    candles = candles_of(random_series(200, 5))
    state: dict[str, Any] | None = None
    for candle in candles[:100]:
        state = step_signal(active, state, candle, flat=True).state
    closing = trading_config(change(params={"fast": 2, "slow": 3}, action="deactivate", on_deactivate="close"))
    step = step_signal(closing, state, candles[100], flat=False)
    assert step.signal is not None and step.signal.status == "stopping"
    assert [(i["action"], i["side"]) for i in step.signal.intents] == [("exit", "long"), ("exit", "short")]
    later = step_signal(closing, step.state, candles[101], flat=False)
    assert later.signal is not None and later.signal.intents == []  # asked once; bars still flow to the fills
    done = step_signal(closing, later.state, candles[102], flat=True)
    assert done.signal is not None and done.signal.status == "stopped" and done.state is None
    keeping = trading_config(change(params={"fast": 2, "slow": 3}, action="deactivate", on_deactivate="keep"))
    kept = step_signal(keeping, state, candles[100], flat=False)
    assert kept.signal is not None and kept.signal.intents == [] and kept.state is not None


def test_a_deactivated_configuration_closes_its_position_then_forgets_its_strategy() -> None:
    active = trading_config(change(params={"fast": 2, "slow": 3}))
    candles = candles_of(random_series(300, 5))
    strategy_state: dict[str, Any] | None = None
    simulator_state: dict[str, Any] | None = None
    index = 0
    while simulator_state is None or simulator_state["simulator"]["position"] is None:
        step = step_bar(active, strategy_state, simulator_state, candles[index], LIMITS, None, None)
        strategy_state, simulator_state, index = step.strategy_state, step.fills.state, index + 1
    closing = trading_config(change(params={"fast": 2, "slow": 3}, action="deactivate", on_deactivate="close"))
    statuses, exits = [], []
    while strategy_state is not None:
        step = step_bar(closing, strategy_state, simulator_state, candles[index], LIMITS, None, None)
        assert step.signal is not None and step.order is not None
        assert all(order["action"] == "exit" for order in step.order.orders)
        statuses.append(step.signal.status)
        exits += [t.exit_reason for t in step.fills.trades]
        strategy_state, simulator_state, index = step.strategy_state, step.fills.state, index + 1
    assert statuses[0] == "stopping" and statuses[-1] == "stopped" and len(statuses) <= 3
    assert exits == ["signal"]  # closed at market by the exit it asked for, not by a bracket
    assert simulator_state is not None and simulator_state["simulator"]["position"] is None
    assert step_bar(closing, None, simulator_state, candles[index], LIMITS, None, None).signal is None


def test_a_strategy_that_raises_puts_only_its_configuration_in_error(monkeypatch: pytest.MonkeyPatch) -> None:
    config = trading_config(change())
    candle = candles_of(random_series(30, 1))[0]
    cls = STRATEGIES["sma_cross"]

    def broken(self: Any, bar: Any) -> list[Any]:
        raise ZeroDivisionError("bad strategy")

    monkeypatch.setattr(cls, "on_bar", broken)
    step = step_signal(config, None, candle, flat=True)
    assert step.signal is None and step.error is not None and "ZeroDivisionError" in step.error
    assert step.state is not None and step.state["error"] == step.error
    monkeypatch.undo()
    assert step_signal(config, step.state, candles_of(random_series(30, 1))[1], flat=True).signal is None


def test_the_sub_account_works_the_bar_before_the_strategy_decides() -> None:
    """What `start_bar` fills is what the whole step fills (market orders fill at the next open): trade_paper
    publishes it before any strategy of the batch runs."""
    config = trading_config(change(params={"fast": 2, "slow": 3}))
    strategy_state: dict[str, Any] | None = None
    simulator_state: dict[str, Any] | None = None
    filled = 0
    for candle in candles_of(random_series(300, 6)):
        worked = start_bar(config, strategy_state, simulator_state, candle)
        step = step_bar(config, strategy_state, simulator_state, candle, LIMITS, None, None)
        assert worked is not None
        assert worked.fills == step.fills.fills and worked.trades == step.fills.trades
        filled += len(worked.fills)
        strategy_state, simulator_state = step.strategy_state, step.fills.state
    assert filled > 10
    assert strategy_state is not None and start_bar(config, strategy_state, simulator_state, candle) is None


def test_takes_bar_is_true_exactly_when_the_strategy_step_gives_a_signal() -> None:
    active = trading_config(change(params={"fast": 2, "slow": 3}))
    deactivated = trading_config(change(params={"fast": 2, "slow": 3}, action="deactivate"))
    candles = candles_of(random_series(60, 7))
    state = None
    for candle in candles[:40]:
        state = step_signal(active, state, candle, flat=True).state
    assert state is not None
    broken = {**state, "error": "Traceback: ZeroDivisionError"}
    for config, strategy_state, candle in [(active, state, candles[40]), (active, state, candles[39]),
                                          (active, None, candles[40]), (deactivated, state, candles[40]),
                                          (deactivated, None, candles[40]), (active, broken, candles[40])]:
        expected = step_signal(config, strategy_state, candle, flat=False).signal is not None
        assert takes_bar(config, strategy_state, candle.ts) is expected


def test_a_strategy_that_raises_places_nothing_but_its_bar_is_worked(monkeypatch: pytest.MonkeyPatch) -> None:
    config = trading_config(change(params={"fast": 2, "slow": 3}))
    candles = candles_of(random_series(300, 5))
    strategy_state: dict[str, Any] | None = None
    simulator_state: dict[str, Any] | None = None
    index = 0
    while simulator_state is None or not simulator_state["simulator"]["orders"]:
        step = step_bar(config, strategy_state, simulator_state, candles[index], LIMITS, None, None)
        strategy_state, simulator_state, index = step.strategy_state, step.fills.state, index + 1
    working = start_bar(config, strategy_state, simulator_state, candles[index])
    assert working is not None and working.fills

    def broken(self: Any, bar: Any) -> list[Any]:
        raise ZeroDivisionError("bad strategy")

    monkeypatch.setattr(STRATEGIES["sma_cross"], "on_bar", broken)
    step = step_bar(config, strategy_state, simulator_state, candles[index], LIMITS, None, None)
    assert step.signal is None and step.order is None and step.error is not None
    assert step.fills.fills == working.fills and step.fills.snapshot is not None
    assert step.fills.state is not None and step.fills.state["last_bar"] == candles[index].ts
    assert not step.fills.state["simulator"]["orders"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"strategy": "nope"}, "unknown strategy 'nope'"),
    ({"params": {"fast": 40, "slow": 20}}, "must be shorter"),
    ({"params": {"fast": "x"}}, "must be an integer"),
    ({"symbols": ["A/B", "C/D"]}, "exactly one symbol"),
    ({"timeframe": "2h"}, "unknown timeframe"),
    ({"action": "pause"}, "unknown action"),
    ({"allocation": 0.0}, "allocation must be positive"),
    ({"execution": {"fee_rate": 0.5}}, "invalid execution settings"),
    ({"risk": {"leverage": 3}}, "unknown risk setting"),
    ({"strategy": "HTF_SWEEP", "params": {"htf": "4h"}, "timeframe": "1d"}, "cannot trade 1d bars"),
])
def test_invalid_configurations_are_refused_with_a_reason(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        trading_config(change(**overrides))


def test_risk_limits_refuse_entries_but_never_exits() -> None:
    config = trading_config(change(params={"fast": 2, "slow": 3}))
    signal = Signal(
        event_id="s", ts=3_600_000, schema_version=SCHEMA_VERSION, configuration_id="c1", account_id="paper-1",
        exchange="synthetic", symbol="BTC/USDT", timeframe="1h", bar_ts=0, open=100, high=101, low=99, close=100,
        volume=1, intents=[{"action": "exit", "side": "long"}, {"action": "enter", "side": "long"}])
    halted = step_orders(signal, config, LIMITS, None, None, "trading halted by the operator")
    assert [o["action"] for o in halted.orders] == ["exit"]
    assert halted.refused[0]["reason"] == "trading halted by the operator"
    snapshots = {"c1": PortfolioSnapshot(event_id="p", ts=1, schema_version=1, account_id="paper-1",
                                         configuration_id="c1", cash=9_000.0, equity=9_000.0, realized_pnl=-1_000.0,
                                         unrealized_pnl=0.0, positions={})}
    from agents.paper import account_view

    view = account_view(account_snapshot("paper-1", snapshots, 1), day_start_equity=10_000.0)
    limited = step_orders(signal, config, RiskLimits(daily_loss_limit=0.05), view, 9_000.0, None)
    assert [o["action"] for o in limited.orders] == ["exit"]
    assert "daily loss limit" in limited.refused[0]["reason"]
    fine = step_orders(signal, config, LIMITS, view, 9_000.0, None)
    entry = fine.orders[1]
    assert entry["quantity"] == pytest.approx(9_000.0 * 0.5 / (100 * 1.001), abs=1e-8)


def test_a_parameter_change_restarts_the_strategy_with_the_new_parameters() -> None:
    candles = candles_of(random_series(200, 8))
    old = trading_config(change(params={"fast": 5, "slow": 20}))
    state: dict[str, Any] | None = None
    for candle in candles[:150]:
        state = step_signal(old, state, candle, flat=True).state
    assert state is not None and STRATEGIES["sma_cross"].from_state(state["strategy"]).params["fast"] == 5
    new = trading_config(change(params={"fast": 3, "slow": 10}, action="update"))
    step = step_signal(new, state, candles[150], flat=True)
    assert step.state is not None and step.state["fingerprint"] == new.fingerprint != old.fingerprint
    restored = STRATEGIES["sma_cross"].from_state(step.state["strategy"])
    assert restored.params == {"fast": 3, "slow": 10} and restored.fast.count == 1  # started afresh
    assert step.state["last_bar"] == candles[150].ts
