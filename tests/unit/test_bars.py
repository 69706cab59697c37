"""BarSeries (its checks, slices and content hash) and the roll-up of base bars into closed higher-timeframe bars:
when each higher bar closes, which are dropped, their values, their state, and `higher_bars` for the fast paths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import orjson
import pandas as pd
import pytest

from agents.bars import Bar, BarSeries, HigherTimeframes, higher_bars
from agents.strategies.base import Intent, Strategy
from streams.keys import TIMEFRAMES
from tests.strategy_helpers import HOUR, T0, event_intents, random_series, series_of

COLUMNS = ("ts", "open", "high", "low", "close", "volume")


def hourly(hours: Sequence[int], close: float = 100.0) -> list[Bar]:
    """1h bars at these hours after T0 (a UTC midnight), each with its own values so roll-ups are checkable."""
    return [Bar(T0 + h * HOUR, close + h, close + h + 2.0, close + h - 3.0, close + h + 1.0, 10.0 + h) for h in hours]


def roll_up(base_timeframe: str, timeframes: Sequence[str], bars: Sequence[Bar]) -> list[list[tuple[str, Bar]]]:
    """What `update` returns for each base bar in turn."""
    higher = HigherTimeframes(base_timeframe, timeframes)
    return [higher.update(bar) for bar in bars]


def columns(series: BarSeries) -> dict[str, np.ndarray]:
    return {name: getattr(series, name) for name in COLUMNS}


# ----------------------------------------------------------------------------------------------------- BarSeries


def test_a_series_holds_its_bars_in_order() -> None:
    bars = hourly([0, 1, 3])
    series = series_of(bars)
    assert len(series) == 3
    assert series.span_ms == HOUR
    assert list(series.bars()) == bars
    assert [series.bar(i) for i in range(len(series))] == bars
    assert series.bar(-1) == bars[-1]
    for bar in series.bars():
        assert type(bar.ts) is int and type(bar.close) is float
    assert type(series.bar(0).ts) is int and type(series.bar(0).volume) is float


@pytest.mark.parametrize("short", COLUMNS)
def test_columns_of_unequal_length_are_refused(short: str) -> None:
    values = columns(series_of(hourly(range(4))))
    values[short] = values[short][:-1]
    with pytest.raises(ValueError, match="same length"):
        BarSeries("test", "BTC-USD", "1h", **values)


@pytest.mark.parametrize("times", [[0, HOUR, HOUR], [0, 2 * HOUR, HOUR], [HOUR, 0]])
def test_times_that_do_not_strictly_increase_are_refused(times: list[int]) -> None:
    n = len(times)
    ones = np.ones(n)
    with pytest.raises(ValueError, match="strictly increasing"):
        BarSeries("test", "BTC-USD", "1h", np.array(times, dtype=np.int64), ones, ones, ones, ones, ones)


@pytest.mark.parametrize("timeframe", ["2h", "1H", "60m", ""])
def test_an_unknown_timeframe_is_refused(timeframe: str) -> None:
    with pytest.raises(ValueError, match="unknown timeframe"):
        series_of(hourly([0, 1]), timeframe)


def test_empty_and_single_bar_series_are_valid() -> None:
    assert len(series_of([])) == 0
    assert list(series_of([]).bars()) == []
    assert len(series_of(hourly([5]))) == 1


def test_slice_takes_bars_start_to_stop_as_views() -> None:
    bars = hourly(range(10))
    series = series_of(bars)
    part = series.slice(2, 5)
    assert list(part.bars()) == bars[2:5]
    assert (part.exchange, part.symbol, part.timeframe) == (series.exchange, series.symbol, series.timeframe)
    for name in COLUMNS:
        assert np.shares_memory(getattr(part, name), getattr(series, name)), name
    assert len(series.slice(4, 4)) == 0
    assert list(series.slice(8, 100).bars()) == bars[8:]


def test_between_keeps_start_inclusive_and_end_exclusive() -> None:
    bars = hourly([0, 1, 2, 5, 6, 9])
    series = series_of(bars)
    assert list(series.between(T0 + HOUR, T0 + 6 * HOUR).bars()) == bars[1:4]
    # bounds between bars
    assert list(series.between(T0 + HOUR // 2, T0 + 7 * HOUR + 1).bars()) == bars[1:5]
    assert list(series.between(None, T0 + 2 * HOUR).bars()) == bars[:2]
    assert list(series.between(T0 + 6 * HOUR, None).bars()) == bars[4:]
    assert list(series.between(None, None).bars()) == bars
    assert len(series.between(T0 + 3 * HOUR, T0 + 5 * HOUR)) == 0
    assert len(series.between(T0 + 10 * HOUR, None)) == 0


def test_from_bars_inverts_bars() -> None:
    series = random_series(300, 1)
    again = BarSeries.from_bars(series.exchange, series.symbol, series.timeframe, series.bars())
    for name in COLUMNS:
        assert np.array_equal(getattr(again, name), getattr(series, name)), name
        assert getattr(again, name).dtype == getattr(series, name).dtype, name


def test_the_content_hash_is_that_of_the_values() -> None:
    series = random_series(200, 2)
    copy = BarSeries(series.exchange, series.symbol, series.timeframe,
                     *(getattr(series, name).copy() for name in COLUMNS))
    assert copy.content_hash() == series.content_hash()
    assert series.content_hash() == series.content_hash()
    # a view of part of the series hashes as a series built from the same bars
    part = series.slice(50, 120)
    rebuilt = BarSeries.from_bars(series.exchange, series.symbol, series.timeframe, part.bars())
    assert part.content_hash() == rebuilt.content_hash()
    assert part.content_hash() != series.content_hash()
    # a strided (non-contiguous) view hashes as the same values laid out contiguously
    strided = BarSeries(series.exchange, series.symbol, series.timeframe,
                        *(getattr(series, name)[::2] for name in COLUMNS))
    assert strided.content_hash() == BarSeries.from_bars(
        series.exchange, series.symbol, series.timeframe, strided.bars()).content_hash()


@pytest.mark.parametrize("name", COLUMNS)
@pytest.mark.parametrize("index", [0, 77, 199])
def test_the_content_hash_changes_with_any_value(name: str, index: int) -> None:
    series = random_series(200, 3)
    values = {column: getattr(series, column).copy() for column in COLUMNS}
    if name == "ts":  # one millisecond later keeps the times increasing
        values["ts"][index] += 1
    else:
        values[name][index] = np.nextafter(values[name][index], np.inf)
    changed = BarSeries(series.exchange, series.symbol, series.timeframe, **values)
    assert changed.content_hash() != series.content_hash()


def test_the_content_hash_changes_with_the_instrument_and_the_timeframe() -> None:
    series = random_series(100, 4, "1h")
    values = columns(series)
    others = [
        BarSeries("other", series.symbol, series.timeframe, **values),
        BarSeries(series.exchange, "ETH/USDT", series.timeframe, **values),
        BarSeries(series.exchange, series.symbol, "4h", **values),
    ]
    hashes = {series.content_hash(), *(other.content_hash() for other in others)}
    assert len(hashes) == 4


# ---------------------------------------------------------------------------------------------- HigherTimeframes


def test_a_4h_bar_closes_with_its_last_1h_bar() -> None:
    bars = hourly(range(8))
    out = roll_up("1h", ["4h"], bars)
    assert [len(closed) for closed in out] == [0, 0, 0, 1, 0, 0, 0, 1]
    assert out[3] == [("4h", Bar(T0, 100.0, 105.0, 97.0, 104.0, 10.0 + 11.0 + 12.0 + 13.0))]
    assert out[7] == [("4h", Bar(T0 + 4 * HOUR, 104.0, 109.0, 101.0, 108.0, 14.0 + 15.0 + 16.0 + 17.0))]


class DeliveryLog(Strategy):
    """Test-only: records what it is handed, in order."""

    name = "delivery_log"
    parameters = {}

    def setup(self) -> None:
        self.log: list[tuple[str, int]] = []

    def higher_timeframes(self) -> tuple[str, ...]:
        return ("4h",)

    def on_higher_bar(self, timeframe: str, bar: Bar) -> None:
        self.log.append((timeframe, bar.ts))

    def on_bar(self, bar: Bar) -> list[Intent]:
        self.log.append(("1h", bar.ts))
        return []


def test_the_4h_bar_is_delivered_before_the_1h_bar_that_closes_it() -> None:
    log = DeliveryLog()
    event_intents(log, series_of(hourly(range(5))))
    hours = [("1h", T0 + h * HOUR) for h in range(5)]
    assert log.log == [*hours[:3], ("4h", T0), *hours[3:]]


def test_a_bucket_without_its_last_bar_closes_when_a_later_bucket_begins() -> None:
    # hour 3 is missing: the first 4h bucket closes on hour 4, before the bar of hour 4 is added to the next one
    out = roll_up("1h", ["4h"], hourly([0, 1, 2, 4, 5, 6, 7]))
    assert [len(closed) for closed in out] == [0, 0, 0, 1, 0, 0, 1]
    assert out[3] == [("4h", Bar(T0, 100.0, 104.0, 97.0, 103.0, 10.0 + 11.0 + 12.0))]
    assert out[6][0][1].ts == T0 + 4 * HOUR and out[6][0][1].open == 104.0


def test_a_gap_over_several_buckets_closes_only_the_open_one() -> None:
    out = roll_up("1h", ["4h"], hourly([0, 1, 13, 14, 15]))
    assert [[hb.ts for _, hb in closed] for closed in out] == [[], [], [T0], [], [T0 + 12 * HOUR]]
    assert out[4][0][1] == Bar(T0 + 12 * HOUR, 113.0, 117.0, 110.0, 116.0, 23.0 + 24.0 + 25.0)


def test_a_late_close_and_a_completed_bucket_come_oldest_first() -> None:
    # hour 7 closes the first bucket (late) and, as the last hour of its own bucket, that bucket too
    out = roll_up("1h", ["4h"], hourly([0, 1, 7]))
    assert out[2] == [("4h", Bar(T0, 100.0, 103.0, 97.0, 102.0, 21.0)),
                      ("4h", Bar(T0 + 4 * HOUR, 107.0, 109.0, 104.0, 108.0, 17.0))]


def test_several_timeframes_close_shortest_first() -> None:
    out = roll_up("1h", ["1d", "4h"], hourly(range(24)))
    assert [tf for tf, _ in out[23]] == ["4h", "1d"]
    assert out[23][1][1] == Bar(T0, 100.0, 125.0, 97.0, 124.0, sum(10.0 + h for h in range(24)))
    assert sum(len(closed) for closed in out) == 7


def test_the_bucket_of_the_first_bar_is_dropped_unless_that_bar_opens_it() -> None:
    # from 01:00: the first 4h bucket began unseen, so it is dropped; the next ones are whole
    late = roll_up("1h", ["4h"], hourly(range(1, 12)))
    assert [hb.ts for closed in late for _, hb in closed] == [T0 + 4 * HOUR, T0 + 8 * HOUR]
    # from 00:00 the first bar opens the bucket: kept
    whole = roll_up("1h", ["4h"], hourly(range(12)))
    assert [hb.ts for closed in whole for _, hb in closed] == [T0, T0 + 4 * HOUR, T0 + 8 * HOUR]


def test_a_partial_first_bucket_is_dropped_when_it_closes_late_too() -> None:
    # starts at 01:00 and misses 03:00: the first bucket is dropped; the next one, though its 04:00 bar is
    # missing, is not the first bar's and is kept with what it saw
    out = roll_up("1h", ["4h"], hourly([1, 2, 5, 6, 7]))
    assert [[hb for _, hb in closed] for closed in out] == [
        [], [], [], [], [Bar(T0 + 4 * HOUR, 105.0, 109.0, 102.0, 108.0, 15.0 + 16.0 + 17.0)]]


def test_the_first_bar_drops_only_the_buckets_it_does_not_open() -> None:
    # 04:00 opens a 4h bucket but not a day
    out = roll_up("1h", ["4h", "1d"], hourly(range(4, 48)))
    emitted = [(tf, hb.ts) for closed in out for tf, hb in closed]
    assert ("4h", T0 + 4 * HOUR) in emitted
    assert [ts for tf, ts in emitted if tf == "1d"] == [T0 + 24 * HOUR]


def resampled(series: BarSeries, timeframe: str) -> pd.DataFrame:
    """The base bars resampled by pandas into `timeframe` buckets aligned to the epoch; empty buckets left out."""
    frame = pd.DataFrame({name: getattr(series, name) for name in COLUMNS[1:]},
                         index=pd.to_datetime(series.ts, unit="ms", utc=True))
    out = frame.resample(pd.Timedelta(milliseconds=TIMEFRAMES[timeframe]), origin="epoch", label="left",
                         closed="left").agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                             "volume": "sum"})
    return out.dropna(subset=["open"])


@pytest.mark.parametrize(("base", "timeframe", "start"), [
    ("1h", "4h", T0), ("1h", "4h", T0 + 2 * HOUR), ("1h", "1d", T0), ("1h", "1d", T0 + 5 * HOUR),
    ("15m", "1h", T0), ("5m", "4h", T0 + 25 * 60_000), ("1m", "15m", T0 + 60_000),
])
def test_higher_bars_are_the_pandas_resample_of_their_base_bars(base: str, timeframe: str, start: int) -> None:
    series = random_series(6000, 7, base, start_ms=start - TIMEFRAMES[base])  # begins at `start` unless a gap
    span, step = TIMEFRAMES[timeframe], TIMEFRAMES[base]
    expected = resampled(series, timeframe)
    buckets = expected.index.as_unit("ms").asi8
    keep = np.ones(len(expected), dtype=bool)
    keep[0] = int(series.ts[0]) == buckets[0]  # the first bucket only if the first bar opens it
    keep[-1] = int(series.ts[-1]) + step == buckets[-1] + span  # the last one only if it closed
    expected = expected[keep]
    got, _ = higher_bars(series, timeframe)
    assert len(got) > 20
    assert got.ts.tolist() == expected.index.as_unit("ms").asi8.tolist()
    for name in ("open", "high", "low", "close"):
        assert np.array_equal(getattr(got, name), expected[name].to_numpy()), name
    assert np.allclose(got.volume, expected["volume"].to_numpy(), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize(("base", "timeframe"), [("1h", "1h"), ("4h", "1h"), ("1h", "15m"), ("1d", "4h")])
def test_a_timeframe_not_a_multiple_of_the_base_is_refused(base: str, timeframe: str) -> None:
    with pytest.raises(ValueError, match=f"{timeframe} is not a multiple"):
        HigherTimeframes(base, [timeframe])
    with pytest.raises(ValueError, match=f"{timeframe} is not a multiple"):
        higher_bars(series_of([], base), timeframe)


def test_one_bad_timeframe_among_good_ones_is_refused() -> None:
    with pytest.raises(ValueError, match="15m is not a multiple of the base timeframe 1h"):
        HigherTimeframes("1h", ["4h", "15m", "1d"])


def test_no_timeframes_roll_up_nothing() -> None:
    assert all(closed == [] for closed in roll_up("1h", [], hourly(range(30))))


@pytest.mark.parametrize("start_hour", [0, 1, 3])
def test_a_restored_roll_up_continues_identically(start_hour: int) -> None:
    # every cut: inside the dropped first bucket, at bucket ends, inside gaps, with open 4h and 1d buckets
    bars = [bar for bar in random_series(150, 11, "1h", start_ms=T0 + (start_hour - 1) * HOUR).bars()]
    whole = roll_up("1h", ["4h", "1d"], bars)
    assert sum(len(closed) for closed in whole) > 30
    for cut in range(len(bars) + 1):
        first = HigherTimeframes("1h", ["4h", "1d"])
        head = [first.update(bar) for bar in bars[:cut]]
        restored = HigherTimeframes.from_state(orjson.loads(orjson.dumps(first.to_state())))
        assert isinstance(restored, HigherTimeframes)
        tail = [restored.update(bar) for bar in bars[cut:]]
        assert head + tail == whole, f"cut at {cut}"


# -------------------------------------------------------------------------------------------------- higher_bars


@pytest.mark.parametrize(("base", "timeframe"), [("1h", "4h"), ("1h", "1d"), ("15m", "4h")])
def test_higher_bars_are_what_the_roll_up_delivers_and_where(base: str, timeframe: str) -> None:
    series = random_series(3000, 5, base, symbol="ETH/USDT")
    got, delivered = higher_bars(series, timeframe)
    builder = HigherTimeframes(base, [timeframe])
    expected = [(i, hb) for i, bar in enumerate(series.bars()) for _, hb in builder.update(bar)]
    assert len(expected) > 20
    assert list(got.bars()) == [hb for _, hb in expected]
    assert delivered.tolist() == [i for i, _ in expected]
    assert delivered.dtype == np.int64
    assert (got.exchange, got.symbol, got.timeframe) == (series.exchange, "ETH/USDT", timeframe)
    # each is delivered with the first base bar that ends at or after the end of its bucket: not before, not later
    span, step = TIMEFRAMES[timeframe], TIMEFRAMES[base]
    ends = got.ts + span
    assert bool((series.ts[delivered] + step >= ends).all())
    earlier = delivered - 1
    assert bool((series.ts[earlier[earlier >= 0]] + step < ends[earlier >= 0]).all())


def test_higher_bars_of_a_series_too_short_to_close_one_are_empty() -> None:
    got, delivered = higher_bars(series_of(hourly([0, 1, 2])), "4h")
    assert len(got) == 0 and got.timeframe == "4h"
    assert delivered.tolist() == [] and delivered.dtype == np.int64
    got, delivered = higher_bars(series_of(hourly([1, 2, 3, 4])), "4h")  # the only closed bucket was partial
    assert len(got) == 0


def test_a_changed_base_bar_changes_only_its_own_higher_bar() -> None:
    bars = hourly(range(8))
    bars[5] = replace(bars[5], high=500.0)
    got, _ = higher_bars(series_of(bars), "4h")
    assert got.high.tolist() == [105.0, 500.0]
