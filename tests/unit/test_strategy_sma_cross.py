"""sma_cross: a strict cross of the SMAs enters long and the cross back exits; touching or equal averages do not."""

from __future__ import annotations

from agents.strategies.sma_cross import SmaCross
from tests.strategy_helpers import StrategyContract, assert_parity, candles, comparable

# fast SMA(2) / slow SMA(3) of the closes:
#   bar:    0     1     2      3      4      5      6      7
#   close: 10    10    10     12     8      8      12     2
#   fast:   -    10    10     11     10     8      10     7
#   slow:   -     -    10   10.67   10   9.33   9.33   7.33
# bar 3: fast was equal (not below) on bar 2, so no cross; bar 4: back to equal, no exit; bar 5 below; bar 6 crosses
# above (8 < 9.33, then 10 > 9.33): enter; bar 7 crosses below (10 > 9.33, then 7 < 7.33): exit.
CLOSES = [10, 10, 10, 12, 8, 8, 12, 2]
SMALL = {"fast": 2, "slow": 3}


def test_a_strict_cross_above_enters_and_a_strict_cross_below_exits() -> None:
    events = assert_parity(SmaCross, SMALL, candles(CLOSES))
    assert [i for i, e in enumerate(events) if e] == [6, 7]
    assert comparable(events[6]) == [("enter", "long", "market", None, None)]
    assert comparable(events[7]) == [("exit", "long", "market", None, None)]


def test_averages_that_only_touch_never_cross() -> None:
    assert not any(assert_parity(SmaCross, SMALL, candles([10, 10, 10, 12, 8, 8])))
    assert not any(assert_parity(SmaCross, SMALL, candles([10.0] * 10)))


def test_nothing_before_the_slow_average_has_two_values() -> None:
    strategy = SmaCross({"fast": 2, "slow": 5})
    assert strategy.warmup_bars() == 5
    events = assert_parity(SmaCross, {"fast": 2, "slow": 5}, candles([1, 9, 1, 9, 1, 9, 1, 9]))
    assert not any(events[:5])


class TestContract(StrategyContract, strategy=SmaCross, registered_as="sma_cross", seed=5):
    params = [{}, {"fast": 5, "slow": 20}, {"fast": 20, "slow": 200}, {"fast": 49, "slow": 50}]
    refused = [{"fast": 30, "slow": 30}, {"fast": 40, "slow": 20}, {"fast": 1}, {"slow": 2000}, {"fast": 2.5},
               {"fast": "x"}, {"width": 3}]
