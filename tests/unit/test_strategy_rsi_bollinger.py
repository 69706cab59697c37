"""rsi_bollinger: a close beyond the band with an RSI extreme enters, the middle band or the opposite RSI extreme
exits; strict thresholds; the fast path equals the event path."""

from __future__ import annotations

import pytest

from agents.strategies.rsi_bollinger import RsiBollinger
from tests.strategy_helpers import StrategyContract, assert_parity, candles, comparable

# ------------------------------------------------------------------------------------------------------- rules

# bb_period 2 / rsi_period 2 on [10, 10, 10, 6, 8]: bar 3 has middle 8, std 2, RSI 0; bar 4 middle 7, RSI 50
DIP = [10, 10, 10, 6, 8]
SMALL = {"bb_period": 2, "rsi_period": 2, "k": 0.5}
LONG_STOP = 1.0 - 3.0 / 100.0  # the default stop_pct of 3


def test_a_close_below_the_band_with_rsi_oversold_enters_long_and_the_middle_band_exits() -> None:
    events = assert_parity(RsiBollinger, SMALL, candles(DIP))
    assert comparable(events[2]) == [("exit", "long", "market", None, None)]  # RSI 100 > overbought
    assert comparable(events[3]) == [("enter", "long", "market", 6.0 * (1.0 - 3.0 / 100.0), None)]
    assert events[3][0].stop_loss == pytest.approx(5.82)
    assert comparable(events[4]) == [("exit", "long", "market", None, None)]  # 8 > middle 7
    wide = assert_parity(RsiBollinger, {**SMALL, "stop_pct": 10.0}, candles(DIP))
    assert comparable(wide[3]) == [("enter", "long", "market", 6.0 * (1.0 - 10.0 / 100.0), None)]


def test_a_close_on_the_band_or_on_the_middle_does_nothing() -> None:
    # k = 1: the lower band is 8 - 1 * 2 = 6, the close itself
    on_band = assert_parity(RsiBollinger, {**SMALL, "k": 1.0}, candles(DIP))
    assert not any(x.action == "enter" for e in on_band for x in e)
    # bar 4 closes at 6 = the middle band (and RSI 0): no exit, and no new entry on the (zero-width) band
    on_middle = assert_parity(RsiBollinger, SMALL, candles([10, 10, 10, 6, 6]))
    assert comparable(on_middle[3])[0][:2] == ("enter", "long")
    assert on_middle[4] == []


def test_the_rsi_must_be_oversold_too() -> None:
    # bar 3: 11 < 12.5 - 0.5 * 1.5 = 11.75, but the RSI is 40
    dip = candles([10, 12, 14, 11])
    assert not any(x.action == "enter" for e in assert_parity(RsiBollinger, SMALL, dip) for x in e)
    events = assert_parity(RsiBollinger, {**SMALL, "oversold": 45.0}, dip)
    assert comparable(events[3]) == [("enter", "long", "market", 11.0 * LONG_STOP, None)]


def test_an_overbought_rsi_exits_while_the_close_is_still_below_the_middle() -> None:
    params = {"bb_period": 4, "rsi_period": 2, "k": 1.0, "oversold": 10.0, "overbought": 20.0}
    events = assert_parity(RsiBollinger, params, candles([10, 10, 10, 10, 4, 5]))
    assert events[:3] == [[], [], []]  # the bands need 4 bars
    assert comparable(events[3]) == [("exit", "long", "market", None, None)]  # RSI 100
    assert comparable(events[4]) == [("enter", "long", "market", 4.0 * LONG_STOP, None)]
    assert comparable(events[5]) == [("exit", "long", "market", None, None)]  # RSI 25 > 20, close 5 < middle 7.25


def test_short_is_the_mirror_and_both_reverses() -> None:
    short = assert_parity(RsiBollinger, {**SMALL, "direction": "short"}, candles([10, 10, 10, 14, 12]))
    assert short[2] == []
    assert comparable(short[3]) == [("enter", "short", "market", 14.0 * (1.0 + 3.0 / 100.0), None)]
    assert comparable(short[4]) == [("exit", "short", "market", None, None)]  # 12 < middle 13
    both = assert_parity(RsiBollinger, {**SMALL, "direction": "both"}, candles(DIP))
    assert comparable(both[3]) == [("exit", "short", "market", None, None),
                                   ("enter", "long", "market", 6.0 * LONG_STOP, None)]
    assert comparable(both[4]) == [("exit", "long", "market", None, None)]


def test_no_intent_before_the_rsi_has_a_value() -> None:
    params = {**SMALL, "rsi_period": 5}
    assert RsiBollinger(params).warmup_bars() == 5
    assert RsiBollinger({"bb_period": 20, "rsi_period": 14}).warmup_bars() == 19
    events = assert_parity(RsiBollinger, params, candles([10, 10, 6, 6, 5]))
    assert not any(events)


# ----------------------------------------------------------- contract: registry, parameters, randomized parity


class TestContract(StrategyContract, strategy=RsiBollinger, registered_as="rsi_bollinger", seed=21):
    params = [
        {},
        {"bb_period": 10, "k": 1.5, "rsi_period": 7, "oversold": 35.0, "overbought": 65.0, "direction": "both"},
        {"bb_period": 30, "k": 2.5, "rsi_period": 21, "oversold": 40.0, "overbought": 60.0, "direction": "short"},
        {"bb_period": 5, "k": 1.0, "rsi_period": 3, "stop_pct": 1.5, "direction": "both"},
    ]
    min_entries = 5
    refused = [
        {"oversold": 70.0, "overbought": 70.0},
        {"oversold": 80.0, "overbought": 20.0},
        {"bb_period": 1},
        {"k": 0.0},
        {"stop_pct": 0.0},
        {"stop_pct": float("nan")},
        {"rsi_period": "fourteen"},
        {"direction": "up"},
        {"period": 20},
    ]
