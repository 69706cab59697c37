"""VOLUME_BREAKOUT: a close beyond the previous bars' range on volume above k x its previous average enters with a
stop inside the range and a target at rr x the risk; near misses do not; the fast path equals the event path."""

from __future__ import annotations

from agents.strategies.volume_breakout import VolumeBreakout
from tests.strategy_helpers import StrategyContract, assert_parity, bars_of, comparable

# ------------------------------------------------------------------------------------------------------- rules

QUIET = [(10.0, 11.0, 9.0, 10.0, 100.0)] * 3  # range 9..11, average volume exactly 100
SMALL = {"range_period": 3, "volume_period": 3, "volume_k": 1.5}


def test_a_close_above_the_range_on_high_volume_enters_long_with_the_bracket() -> None:
    bars = bars_of([*QUIET, (10.0, 12.0, 10.0, 11.5, 151.0)])
    events = assert_parity(VolumeBreakout, SMALL, bars)
    # stop halfway into the range: 11 - 0.5 * (11 - 9) = 10; target 11.5 + 2 * (11.5 - 10)
    assert events[:3] == [[], [], []]
    assert comparable(events[3]) == [("enter", "long", "market", 10.0, 14.5)]
    far = assert_parity(VolumeBreakout, {**SMALL, "stop_frac": 1.0, "rr": 1.0}, bars)
    assert comparable(far[3]) == [("enter", "long", "market", 9.0, 14.0)]  # the range low, 1 x the risk


def test_the_average_volume_excludes_the_breakout_bar() -> None:
    # with the bar itself the average would be 117, and 151 < 1.5 * 117
    bars = bars_of([*QUIET, (10.0, 12.0, 10.0, 11.5, 151.0)])
    assert comparable(assert_parity(VolumeBreakout, SMALL, bars)[3])[0][:2] == ("enter", "long")


def test_near_misses_do_not_enter() -> None:
    just_below = bars_of([*QUIET, (10.0, 12.0, 10.0, 11.5, 150.0)])  # exactly 1.5 x the average
    on_the_high = bars_of([*QUIET, (10.0, 12.0, 10.0, 11.0, 500.0)])  # close on the range high, wick above
    inside = bars_of([*QUIET, (10.0, 11.5, 8.5, 10.5, 500.0)])  # outside bar closing inside the range
    for bars in (just_below, on_the_high, inside):
        assert not any(assert_parity(VolumeBreakout, {**SMALL, "direction": "both"}, bars))


def test_short_is_the_mirror() -> None:
    bars = bars_of([*QUIET, (10.0, 10.0, 8.0, 8.5, 151.0)])
    assert not any(assert_parity(VolumeBreakout, SMALL, bars))
    for direction in ("short", "both"):
        events = assert_parity(VolumeBreakout, {**SMALL, "direction": direction}, bars)
        assert comparable(events[3]) == [("enter", "short", "market", 10.0, 8.5 - 2.0 * (10.0 - 8.5))]


def test_no_intent_before_the_range_and_the_average_have_values() -> None:
    assert VolumeBreakout(SMALL).warmup_bars() == 3
    params = {**SMALL, "volume_period": 5}
    assert VolumeBreakout(params).warmup_bars() == 5
    bars = bars_of([*QUIET, (10.0, 12.0, 10.0, 11.5, 1000.0), (11.5, 13.0, 11.0, 12.5, 500.0)])
    assert not any(assert_parity(VolumeBreakout, params, bars))
    # bar 4 breaks out too, but its 500 is below 1.5 x (100 + 100 + 1000) / 3 = 600
    assert [i for i, e in enumerate(assert_parity(VolumeBreakout, SMALL, bars)) if e] == [3]


# ----------------------------------------------------------- contract: registry, parameters, randomized parity


class TestContract(StrategyContract, strategy=VolumeBreakout, registered_as="VOLUME_BREAKOUT", seed=41):
    params = [
        {},
        {"range_period": 10, "volume_period": 30, "volume_k": 1.25, "stop_frac": 1.0, "rr": 1.5, "direction": "both"},
        {"range_period": 40, "volume_period": 10, "volume_k": 1.0, "stop_frac": 0.25, "rr": 3.0, "direction": "short"},
        {"range_period": 5, "volume_period": 1, "volume_k": 2.0, "stop_frac": 0.75, "direction": "both"},
    ]
    brackets_only = True
    refused = [
        {"range_period": 1},
        {"volume_period": 0},
        {"volume_k": 0.25},
        {"stop_frac": 0.0},
        {"stop_frac": 1.5},
        {"rr": 0.0},
        {"rr": float("inf")},
        {"direction": "long-short"},
        {"k": 2.0},
    ]
