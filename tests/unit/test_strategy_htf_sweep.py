"""HTF_SWEEP: a run through the last closed higher bar's low (high) that closes back inside within the window enters
with the swept extreme as the stop; ties, late reclaims, spent levels and contradictions do not; the fast path
(with `higher_bars`) equals the event path (with `HigherTimeframes`)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.bars import Bar
from agents.strategies import create_strategy
from agents.strategies.base import Intent
from agents.strategies.htf_sweep import HtfSweep
from streams.keys import TIMEFRAMES
from tests.strategy_helpers import (
    T0,
    StrategyContract,
    assert_parity,
    bars_of,
    comparable,
    event_intents,
    random_bars,
    series_of,
)

# ------------------------------------------------------------------------------------------------------- rules

# bars 0-3 make the first 4h bar (T0 is a UTC midnight): high 110, low 90, delivered before bar 3's on_bar
FIRST = [(100.0, 105.0, 95.0, 100.0), (100.0, 110.0, 98.0, 102.0), (102.0, 104.0, 90.0, 96.0),
         (96.0, 101.0, 94.0, 100.0)]
BUFFER = 1.0 - 0.1 / 100.0  # the default buffer_pct of 0.1, below a low


def entries(events: list[list[Intent]]) -> list[int]:
    return [i for i, e in enumerate(events) if e]


def test_created_from_the_registry_with_its_parameters() -> None:
    strategy = create_strategy("HTF_SWEEP", {"htf": "1d"})
    assert isinstance(strategy, HtfSweep)
    assert strategy.higher_timeframes() == ("1d",)
    assert strategy.warmup_bars() == 1


def test_a_wick_through_the_low_that_closes_back_above_enters_long() -> None:
    events = assert_parity(HtfSweep, {}, bars_of([*FIRST, (100.0, 101.0, 89.0, 92.0)]))
    stop = 89.0 * BUFFER
    assert entries(events) == [4]
    assert comparable(events[4]) == [("enter", "long", "market", stop, 92.0 + 2.0 * (92.0 - stop))]
    assert events[4][0].stop_loss == pytest.approx(88.911)


def test_a_reclaim_on_the_last_bar_of_the_window_uses_the_lowest_low_since_the_sweep() -> None:
    rows = [*FIRST, (100.0, 101.0, 89.0, 89.5), (89.5, 90.0, 88.0, 89.0), (89.0, 91.0, 88.5, 90.5)]
    events = assert_parity(HtfSweep, {"rr": 1.5, "buffer_pct": 0.0}, bars_of(rows))
    assert entries(events) == [6]
    assert comparable(events[6]) == [("enter", "long", "market", 88.0, 90.5 + 1.5 * (90.5 - 88.0))]
    # the same reclaim is one bar too late with a window of 2, and the level is spent after it expires
    late = assert_parity(HtfSweep, {"reclaim_bars": 2}, bars_of([*rows, (90.5, 92.0, 89.5, 91.0)]))
    assert not any(late)


def test_ties_are_neither_sweeps_nor_reclaims() -> None:
    touch = bars_of([*FIRST, (100.0, 101.0, 90.0, 95.0)])  # low on the level: no sweep
    assert not any(assert_parity(HtfSweep, {}, touch))
    on_level = [*FIRST, (100.0, 101.0, 89.0, 90.0), (90.0, 90.5, 89.5, 90.0)]  # closes on the level
    assert not any(assert_parity(HtfSweep, {}, bars_of(on_level)))
    events = assert_parity(HtfSweep, {}, bars_of([*on_level, (90.0, 91.0, 89.8, 90.01)]))
    assert entries(events) == [6]  # bar 3 of the window closes above
    assert comparable(events[6])[0][3] == 89.0 * BUFFER


def test_a_sweep_without_reclaim_spends_the_level() -> None:
    below = [*FIRST, (100.0, 101.0, 89.0, 89.5), (89.5, 89.9, 88.0, 88.5), (88.5, 89.5, 87.0, 89.0)]
    assert not any(assert_parity(HtfSweep, {}, bars_of(below)))
    # a second sweep and reclaim of the same (expired) level, still inside the same 4h bar, does nothing
    again = [*FIRST, (100.0, 101.0, 89.0, 89.5), (89.5, 89.9, 88.0, 88.5), (88.5, 95.0, 88.2, 94.0)]
    assert not any(assert_parity(HtfSweep, {"reclaim_bars": 2}, bars_of(again)))
    assert entries(assert_parity(HtfSweep, {"reclaim_bars": 3}, bars_of(again))) == [6]  # still in the window


def test_each_level_is_traded_once_and_a_new_higher_bar_resets() -> None:
    rows = [
        *FIRST,
        (100.0, 101.0, 89.0, 92.0),  # 4: sweep + reclaim -> long
        (92.0, 93.0, 88.0, 91.0),  # 5: the same level again: spent
        (91.0, 96.0, 91.0, 95.0),  # 6
        (95.0, 97.0, 85.0, 95.0),  # 7: closes the 2nd 4h bar (low 85) before its on_bar: cannot sweep it
        (95.0, 96.0, 84.0, 86.0),  # 8: sweeps 85 and closes above -> long
    ]
    events = assert_parity(HtfSweep, {}, bars_of(rows))
    assert entries(events) == [4, 8]
    stop = 84.0 * BUFFER
    assert comparable(events[8]) == [("enter", "long", "market", stop, 86.0 + 2.0 * (86.0 - stop))]


def test_the_bar_that_closes_a_higher_bar_is_judged_against_its_levels() -> None:
    # bar 7 trades below the old low (90) and closes above it, but the 4h bar it closes (low 85) comes first
    rows = [*FIRST, (100.0, 101.0, 91.0, 95.0), (95.0, 96.0, 92.0, 93.0), (93.0, 97.0, 92.0, 95.0),
            (95.0, 97.0, 85.0, 95.0), (95.0, 96.0, 84.0, 86.0)]
    events = assert_parity(HtfSweep, {}, bars_of(rows))
    assert entries(events) == [8]


def test_a_new_higher_bar_drops_an_open_sweep() -> None:
    rows = [*FIRST, (100.0, 101.0, 91.0, 95.0), (95.0, 96.0, 92.0, 93.0), (93.0, 94.0, 89.0, 89.5),
            (89.5, 91.0, 89.2, 90.5)]  # 6 sweeps 90; 7 closes above 90 but also the 4h bar whose low is 89
    events = assert_parity(HtfSweep, {}, bars_of(rows))
    assert not any(events)


def test_a_higher_bar_closed_by_a_later_bucket_is_a_level_for_that_bar() -> None:
    # hour 3 is missing: the first 4h bar (bars 0-2, low 90) closes when hour 4 arrives, before its on_bar
    bars = [*bars_of(FIRST[:3]), *bars_of([(100.0, 101.0, 89.0, 92.0)], start=4)]
    events = assert_parity(HtfSweep, {}, bars)
    assert entries(events) == [3]


def test_short_is_the_mirror() -> None:
    bars = bars_of([*FIRST, (100.0, 111.0, 99.0, 108.0)])
    assert not any(assert_parity(HtfSweep, {}, bars))
    stop = 111.0 * (1.0 + 0.1 / 100.0)
    for direction in ("short", "both"):
        events = assert_parity(HtfSweep, {"direction": direction}, bars)
        assert comparable(events[4]) == [("enter", "short", "market", stop, 108.0 - 2.0 * (stop - 108.0))]


def test_both_levels_swept() -> None:
    params = {"direction": "both"}
    # an outside bar through both levels closing between them: contradictory, and both levels are spent
    outside = [*FIRST, (100.0, 111.0, 89.0, 100.0), (100.0, 101.0, 88.0, 95.0), (95.0, 112.0, 94.0, 105.0)]
    assert not any(assert_parity(HtfSweep, params, bars_of(outside)))
    # closing above the high reclaims only the low; the high's sweep stays open and is reclaimed next bar
    rows = [*FIRST, (100.0, 111.0, 89.0, 111.0), (111.0, 112.0, 105.0, 106.0)]
    events = assert_parity(HtfSweep, params, bars_of(rows))
    assert entries(events) == [4, 5]
    long_stop, short_stop = 89.0 * BUFFER, 112.0 * (1.0 + 0.1 / 100.0)
    assert comparable(events[4]) == [("enter", "long", "market", long_stop, 111.0 + 2.0 * (111.0 - long_stop))]
    assert comparable(events[5]) == [("enter", "short", "market", short_stop, 106.0 - 2.0 * (short_stop - 106.0))]
    assert [i for i, e in enumerate(assert_parity(HtfSweep, {}, bars_of(rows))) if e] == [4]


def test_a_window_of_one_bar_needs_the_sweep_bar_to_reclaim() -> None:
    rows = [*FIRST, (100.0, 101.0, 89.0, 89.5), (89.5, 91.0, 89.0, 90.5)]
    assert entries(assert_parity(HtfSweep, {"reclaim_bars": 2}, bars_of(rows))) == [5]
    assert not any(assert_parity(HtfSweep, {"reclaim_bars": 1}, bars_of(rows)))


def test_nothing_before_the_first_higher_bar() -> None:
    # a 1d level never closes in these hours
    assert not any(assert_parity(HtfSweep, {"htf": "1d"}, bars_of([*FIRST, (100.0, 101.0, 89.0, 92.0)])))


def test_a_higher_timeframe_that_is_not_a_multiple_of_the_base_is_refused_by_the_session() -> None:
    # check_params cannot know the base timeframe; the session's roll-up (and the fast path's) refuses it
    strategy = HtfSweep({"htf": "4h"})
    bars = [Bar(T0 + i * 14_400_000, 100.0, 101.0, 99.0, 100.0, 1.0) for i in range(3)]
    with pytest.raises(ValueError, match="not a multiple"):
        event_intents(strategy, series_of(bars, "4h"))
    with pytest.raises(ValueError, match="not a multiple"):
        strategy.signals(series_of(bars, "4h"))


# ----------------------------------------------------------- contract: registry, parameters, randomized parity


class TestContract(StrategyContract, strategy=HtfSweep, registered_as="HTF_SWEEP", seed=51):
    cases = [  # base timeframe, params
        ("1h", {}),
        ("1h", {"htf": "1d", "reclaim_bars": 6, "buffer_pct": 0.0, "rr": 1.0, "direction": "both"}),
        ("15m", {"htf": "4h", "reclaim_bars": 1, "buffer_pct": 0.5, "direction": "short"}),
        ("1h", {"reclaim_bars": 2, "buffer_pct": 0.2, "rr": 3.0, "direction": "both"}),
    ]
    brackets_only = True
    refused = [
        {"htf": "2h"},
        {"htf": "1h"},
        {"htf": "15m"},
        {"reclaim_bars": 0},
        {"reclaim_bars": 1.5},
        {"buffer_pct": -0.1},
        {"rr": 0.0},
        {"direction": None},
        {"timeframe": "4h"},
    ]

    def walk(self, seed: int, timeframe: str, tick: float | None) -> list[Bar]:
        """A random walk with about 2% of the bars missing, so some higher bars close late."""
        bars = random_bars(seed, n=3100, tick=tick, span=TIMEFRAMES[timeframe])
        keep = np.random.default_rng(seed + 1).random(len(bars)) > 0.02
        return [bar for bar, kept in zip(bars, keep.tolist(), strict=True) if kept]
