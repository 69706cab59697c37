"""ema_trend: crosses enter with ATR levels, equal or touching averages do not, the fast path equals the event path."""

from __future__ import annotations

from agents.strategies.ema_trend import EmaTrend
from tests.strategy_helpers import StrategyContract, assert_parity, candles, comparable

# ------------------------------------------------------------------------------------------------------- rules

CROSS = [10, 10, 10, 9, 10, 11, 10, 9, 8]
# fast EMA(2) / slow EMA(3): equal on bars 1-2, below on 3, crosses above on 4 (9.78 > 9.75), stays above through 6
# (10.1975 > 10.1875), crosses below on 7 (9.40 < 9.59). Every true range is 2, so ATR(2) is exactly 2.0.
SMALL = {"fast": 2, "slow": 3, "atr_period": 2}


def test_an_up_cross_enters_long_with_the_atr_stop_and_a_down_cross_exits() -> None:
    events = assert_parity(EmaTrend, SMALL, candles(CROSS))
    assert [i for i, e in enumerate(events) if e] == [4, 7]
    assert comparable(events[4]) == [("enter", "long", "market", 10.0 - 2.0 * 2.0, None)]
    assert comparable(events[7]) == [("exit", "long", "market", None, None)]


def test_the_take_profit_is_atr_target_atrs_away() -> None:
    events = assert_parity(EmaTrend, {**SMALL, "atr_stop": 1.5, "atr_target": 3.0}, candles(CROSS))
    assert comparable(events[4]) == [("enter", "long", "market", 7.0, 16.0)]


def test_short_is_the_mirror_and_both_reverses_on_the_cross() -> None:
    short = assert_parity(EmaTrend, {**SMALL, "direction": "short", "atr_target": 3.0}, candles(CROSS))
    assert [i for i, e in enumerate(short) if e] == [4, 7]
    assert comparable(short[4]) == [("exit", "short", "market", None, None)]
    assert comparable(short[7]) == [("enter", "short", "market", 9.0 + 4.0, 9.0 - 6.0)]
    both = assert_parity(EmaTrend, {**SMALL, "direction": "both"}, candles(CROSS))
    assert comparable(both[4]) == [("exit", "short", "market", None, None), ("enter", "long", "market", 6.0, None)]
    assert comparable(both[7]) == [("exit", "long", "market", None, None), ("enter", "short", "market", 13.0, None)]


def test_equal_or_touching_averages_are_no_cross() -> None:
    # the averages are equal on bar 2, then the fast one is above: the previous bar was not strictly below
    events = assert_parity(EmaTrend, {**SMALL, "direction": "both"}, candles([10, 10, 10, 11, 12, 12]))
    assert not any(events)
    flat = assert_parity(EmaTrend, {**SMALL, "direction": "both"}, candles([10.0] * 8))
    assert not any(flat)


def test_no_intent_before_the_atr_has_a_value() -> None:
    strategy = EmaTrend({**SMALL, "atr_period": 6})
    assert strategy.warmup_bars() == 5
    events = assert_parity(EmaTrend, {**SMALL, "atr_period": 6}, candles(CROSS))
    assert [i for i, e in enumerate(events) if e] == [7]  # the cross of bar 4 came before the ATR
    assert EmaTrend(SMALL).warmup_bars() == 3


# ----------------------------------------------------------- contract: registry, parameters, randomized parity


class TestContract(StrategyContract, strategy=EmaTrend, registered_as="ema_trend", seed=11):
    params = [
        {},
        {"fast": 5, "slow": 20, "atr_period": 7, "atr_stop": 1.5, "atr_target": 3.0, "direction": "both"},
        {"fast": 3, "slow": 8, "atr_period": 30, "atr_stop": 3.0, "direction": "short"},
        {"fast": 9, "slow": 10, "atr_period": 14, "atr_target": 1.0, "direction": "both"},
    ]
    refused = [
        {"fast": 10, "slow": 10},
        {"fast": 20, "slow": 10},
        {"fast": 1},
        {"atr_stop": 0.0},
        {"atr_target": -1.0},
        {"atr_period": 2.5},
        {"direction": "sideways"},
        {"speed": 3},
    ]
