"""The candle builder against an independent pandas resample, and its late-tick, state and redelivery rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.candles import BatchResult, CandleBuilder
from streams.records import Candle, stable_id
from tests.pipeline_helpers import Ticks, assert_same_candles, candles_frame, reference_candles, ticks_by_instrument
from tradepulse.marketdata.synth import generate_ticks

GRACE_MS = 5_000
DAY_MS = 86_400_000
# 22:00 UTC, so a few hours of ticks cross midnight and close 1d and 4h buckets too.
START_MS = 1_700_000_000_000 // DAY_MS * DAY_MS + 22 * 3_600_000
M = 60_000


def run(builder: CandleBuilder, ticks: Ticks, batch_size: int) -> list[Candle]:
    candles: list[Candle] = []
    for offset, (t, p, a) in enumerate(ticks.batches(batch_size)):
        result = builder.apply(t, p, a, offset=offset)
        assert result.late is None
        candles.extend(result.candles)
    return candles


@pytest.fixture(scope="module")
def ticks() -> Ticks:
    """5.5 hours of synthetic trades with two silent stretches (minutes without any candle)."""
    (ticks,) = ticks_by_instrument(generate_ticks(["BTC/USDT"], START_MS, 330, seed=7, ticks_per_minute=40.0))
    return ticks.without(START_MS + 61 * M + 5_000, START_MS + 64 * M).without(START_MS + 200 * M, START_MS + 212 * M)


@pytest.mark.parametrize("batch_size", [1, 37, 100, 5_000])
def test_every_timeframe_equals_a_pandas_resample(ticks: Ticks, batch_size: int) -> None:
    candles = run(CandleBuilder(ticks.exchange, ticks.symbol, GRACE_MS), ticks, batch_size)

    expected = reference_candles(ticks, grace_ms=GRACE_MS)
    assert set(expected.index.get_level_values("timeframe")) == {"1m", "5m", "15m", "1h", "4h", "1d"}
    minutes = expected.xs("1m", level="timeframe").index.get_level_values("ts")
    assert (minutes[1:] - minutes[:-1]).max() > M, "the ticks should leave some minutes empty"
    assert len({c.event_id for c in candles}) == len(candles), "a bucket was emitted twice"
    assert_same_candles(candles_frame(candles), expected)


def test_candle_identity_and_provenance(ticks: Ticks) -> None:
    candle = run(CandleBuilder(ticks.exchange, ticks.symbol, GRACE_MS), ticks, 100)[0]
    assert candle.timeframe == "1m" and candle.ts % M == 0
    assert candle.event_id == stable_id("candle", ticks.exchange, ticks.symbol, "1m", candle.ts)
    assert candle.source == "ticks" and candle.trades > 0


def test_a_late_tick_within_grace_is_folded_in() -> None:
    builder = CandleBuilder("kraken", "ETH/USDT", GRACE_MS)
    assert builder.apply([1_000, 59_000, 63_000], [10.0, 11.0, 20.0], [1.0, 1.0, 1.0]).candles == []
    # 30 s behind the watermark, but minute 0 stays open until 60 s + grace.
    assert builder.apply([30_000], [15.0], [2.0]).late is None
    closed = builder.apply([65_000], [21.0], [1.0]).candles

    assert [(c.timeframe, c.ts) for c in closed] == [("1m", 0)]
    (minute,) = closed
    assert (minute.open, minute.high, minute.low, minute.close) == (10.0, 15.0, 10.0, 11.0)
    assert minute.volume == 4.0 and minute.trades == 3


def test_a_tick_beyond_grace_is_rejected_and_changes_nothing() -> None:
    builder = CandleBuilder("kraken", "ETH/USDT", GRACE_MS)
    (minute,) = builder.apply([1_000, 65_000], [10.0, 12.0], [1.0, 1.0]).candles
    assert minute.ts == 0

    result = builder.apply([59_999, 66_000], [99.0, 12.5], [3.0, 1.0])

    assert result.late is not None
    assert result.late.times.tolist() == [59_999] and result.late.prices.tolist() == [99.0]
    assert result.late.reason.startswith("late tick: 1 tick(s)")
    assert "5001 ms behind the watermark 65000" in result.late.reason
    assert result.candles == []
    # Only the on-time tick reached the open minute.
    assert builder.to_state()["open"]["1m"] == [[60_000, 12.0, 12.5, 12.0, 12.5, 2.0, 2, 65_000, 66_000]]


def test_order_inside_a_batch_does_not_matter(ticks: Ticks) -> None:
    rng = np.random.default_rng(3)
    builder = CandleBuilder(ticks.exchange, ticks.symbol, GRACE_MS)
    candles: list[Candle] = []
    for t, p, a in ticks.batches(250):
        order = rng.permutation(len(t))
        result = builder.apply(t[order], p[order], a[order])
        assert result.late is None
        candles.extend(result.candles)
    assert_same_candles(candles_frame(candles), reference_candles(ticks, grace_ms=GRACE_MS))


def test_equal_times_count_in_arrival_order() -> None:
    builder = CandleBuilder("kraken", "ETH/USDT", 0)
    builder.apply([5_000, 5_000], [1.0, 2.0], [1.0, 1.0])
    builder.apply([5_000], [3.0], [1.0])
    (minute,) = builder.apply([60_000], [4.0], [1.0]).candles
    assert (minute.open, minute.close) == (1.0, 3.0)


def test_empty_minutes_make_no_candle_and_rollups_skip_them() -> None:
    builder = CandleBuilder("kraken", "ETH/USDT", 0)
    closed = builder.apply([10_000, 20_000], [5.0, 6.0], [1.0, 1.0]).candles
    closed += builder.apply([4 * M + 1_000], [7.0], [1.0]).candles
    closed += builder.apply([7 * M], [8.0], [1.0]).candles

    assert [(c.timeframe, c.ts) for c in closed] == [("1m", 0), ("1m", 4 * M), ("5m", 0)]
    five = closed[-1]
    assert (five.open, five.high, five.low, five.close, five.volume, five.trades) == (5.0, 7.0, 5.0, 7.0, 3.0, 3)


def test_state_round_trip_mid_stream_gives_identical_output(ticks: Ticks) -> None:
    batches = list(ticks.batches(100))
    uninterrupted = CandleBuilder(ticks.exchange, ticks.symbol, GRACE_MS)
    reference = run(uninterrupted, ticks, 100)

    resumed: list[Candle] = []
    builder = CandleBuilder(ticks.exchange, ticks.symbol, GRACE_MS)
    for offset, (t, p, a) in enumerate(batches):
        if offset % 40 == 17:
            builder = CandleBuilder.from_state(json.loads(json.dumps(builder.to_state())))
        resumed.extend(builder.apply(t, p, a, offset=offset).candles)

    assert resumed == reference
    assert builder.to_state() == uninterrupted.to_state()


def test_a_redelivered_batch_is_skipped_not_double_counted(ticks: Ticks) -> None:
    batches = list(ticks.batches(100))
    reference = run(CandleBuilder(ticks.exchange, ticks.symbol, GRACE_MS), ticks, 100)

    builder = CandleBuilder(ticks.exchange, ticks.symbol, GRACE_MS)
    candles: list[Candle] = []
    for offset, (t, p, a) in enumerate(batches[:120]):
        candles.extend(builder.apply(t, p, a, offset=offset).candles)
    # A crash after the state of offset 119 reached the changelog but before offset 110 was committed:
    # Kafka redelivers from 110 on to a builder restored from that state.
    restored = CandleBuilder.from_state(builder.to_state())
    for offset, (t, p, a) in enumerate(batches[110:], start=110):
        result = restored.apply(t, p, a, offset=offset)
        assert result.skipped == (offset < 120)
        if result.skipped:
            assert result == BatchResult(skipped=True)
        candles.extend(result.candles)

    assert candles == reference


def test_state_is_plain_json() -> None:
    builder = CandleBuilder("kraken", "ETH/USDT", GRACE_MS)
    builder.apply([1_000, 2_000], [1.0, 2.0], [0.5, 0.5], offset=41)
    state = json.loads(json.dumps(builder.to_state()))
    assert state["watermark"] == 2_000 and state["offset"] == 41
    assert CandleBuilder.from_state(state).to_state() == builder.to_state()
