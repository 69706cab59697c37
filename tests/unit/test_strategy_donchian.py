"""donchian_breakout: a close beyond the channel of the PREVIOUS bars enters, a close beyond the exit channel exits;
closes on a channel edge do nothing; the fast path equals the event path."""

from __future__ import annotations

from agents.strategies.donchian import DonchianBreakout
from tests.strategy_helpers import StrategyContract, assert_parity, bars_of, comparable

# ------------------------------------------------------------------------------------------------------- rules

RUN = [  # open, high, low, close; every true range is exactly 2, so ATR(2) = 2.0
    (10.0, 11.0, 9.0, 10.0),
    (10.0, 11.0, 9.0, 10.0),
    (10.0, 11.0, 9.0, 10.0),
    (10.0, 12.0, 10.0, 11.0),  # high above the channel (11), close on it: no breakout
    (11.0, 12.5, 10.5, 12.0),  # close on the channel high (12)
    (12.0, 13.0, 11.0, 12.5),  # close on the channel high (12.5)
    (12.5, 14.0, 12.0, 13.5),  # close above the channel high (13): breakout, stop 13.5 - 2 * 2
    (13.5, 14.0, 12.0, 13.0),
    (13.0, 13.0, 11.0, 11.0),  # close below the exit channel low (lowest of the previous 2 lows: 12)
]
SMALL = {"entry_period": 3, "exit_period": 2, "atr_period": 2}


def mirrored(rows: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    return [(30.0 - o, 30.0 - low, 30.0 - h, 30.0 - c) for o, h, low, c in rows]


def test_a_close_above_the_previous_high_enters_and_a_close_below_the_exit_channel_exits() -> None:
    events = assert_parity(DonchianBreakout, SMALL, bars_of(RUN))
    assert [i for i, e in enumerate(events) if e] == [6, 8]
    assert comparable(events[6]) == [("enter", "long", "market", 13.5 - 2.0 * 2.0, None)]
    assert comparable(events[8]) == [("exit", "long", "market", None, None)]
    wide = assert_parity(DonchianBreakout, {**SMALL, "atr_stop": 1.5}, bars_of(RUN))
    assert comparable(wide[6]) == [("enter", "long", "market", 10.5, None)]


def test_closes_on_the_channel_and_the_bars_own_high_are_no_breakout() -> None:
    # bars 3-5 trade above the previous high but close on it; with the current bar in the channel a close
    # could never break out, since close <= high
    events = assert_parity(DonchianBreakout, SMALL, bars_of(RUN[:6]))
    assert not any(events)
    # a close on the exit channel low (12) is no exit
    on_exit = assert_parity(DonchianBreakout, SMALL, bars_of([*RUN[:8], (13.0, 13.0, 11.0, 12.0)]))
    assert on_exit[8] == []


def test_short_is_the_mirror_and_both_reverses() -> None:
    short = assert_parity(DonchianBreakout, {**SMALL, "direction": "short"}, bars_of(mirrored(RUN)))
    assert [i for i, e in enumerate(short) if e] == [6, 8]
    assert comparable(short[6]) == [("enter", "short", "market", 16.5 + 4.0, None)]
    assert comparable(short[8]) == [("exit", "short", "market", None, None)]
    both = assert_parity(DonchianBreakout, {**SMALL, "direction": "both"}, bars_of(RUN))
    assert comparable(both[6]) == [("exit", "short", "market", None, None), ("enter", "long", "market", 9.5, None)]
    assert comparable(both[8]) == [("exit", "long", "market", None, None)]


def test_no_intent_before_the_channels_and_the_atr_have_values() -> None:
    assert DonchianBreakout(SMALL).warmup_bars() == 3
    params = {**SMALL, "atr_period": 8}
    assert DonchianBreakout(params).warmup_bars() == 7
    events = assert_parity(DonchianBreakout, params, bars_of(RUN))
    assert [i for i, e in enumerate(events) if e] == [8]  # the breakout on bar 6 came before the ATR
    early = assert_parity(DonchianBreakout, {**SMALL, "entry_period": 7}, bars_of(RUN))
    assert [i for i, e in enumerate(early) if e] == [8]  # bar 6 has no 7 previous bars


# ----------------------------------------------------------- contract: registry, parameters, randomized parity


class TestContract(StrategyContract, strategy=DonchianBreakout, registered_as="donchian_breakout", seed=31):
    params = [
        {},
        {"entry_period": 55, "exit_period": 20, "atr_period": 20, "atr_stop": 3.0, "direction": "both"},
        {"entry_period": 10, "exit_period": 10, "atr_period": 7, "atr_stop": 1.0, "direction": "short"},
        {"entry_period": 5, "exit_period": 2, "atr_period": 30, "direction": "both"},
    ]
    refused = [
        {"entry_period": 10, "exit_period": 11},
        {"entry_period": 1},
        {"exit_period": 0},
        {"atr_stop": 0.0},
        {"atr_stop": "wide"},
        {"atr_period": True},
        {"direction": "flat"},
        {"period": 20},
    ]
