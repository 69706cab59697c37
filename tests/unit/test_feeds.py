"""Feeds' pure parts: candles → ticks that rebuild them, batching, pacing, trade de-duplication."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from agents.candles import CandleBuilder
from streams.codecs import decode, encode
from streams.records import Candle, TickBatch, make_candle, stable_id
from tradepulse.marketdata.backfill import closed_candles
from tradepulse.marketdata.exchanges import Backoff, rebase_urls
from tradepulse.marketdata.feeds import (
    FeedStats,
    Pacer,
    TradeDeduper,
    candle_batches,
    candle_ticks,
    play,
    stored_candles,
    stored_range,
    trade_batches,
    trade_problem,
)
from tradepulse.marketdata.importer import parse_file
from tradepulse.marketdata.ticks import batch_bounds

ROOT = Path(__file__).resolve().parents[2]
DATA = next(p for p in (ROOT.parent / "shared" / "data", ROOT / "data" / "demo") if p.is_dir())
HOUR = 3_600_000


def candle(ts: int, o: float, h: float, lo: float, c: float, v: float, symbol: str = "BTC/USD",
           timeframe: str = "1h") -> Candle:
    return make_candle("bitfinex", symbol, timeframe, ts, (o, h, lo, c, v), source="import")


def rebuild(batches: list[TickBatch], timeframe: str) -> dict[tuple[str, int], Candle]:
    """Run batches through the real event-time candle builder; closed candles of `timeframe` by (symbol, ts)."""
    builders: dict[str, CandleBuilder] = {}
    out = {}
    for batch in batches:
        builder = builders.setdefault(batch.symbol, CandleBuilder(batch.exchange, batch.symbol, grace_ms=0))
        result = builder.apply(batch.times, batch.prices, batch.amounts)
        assert result.late is None
        out.update({(c.symbol, c.ts): c for c in result.candles if c.timeframe == timeframe})
    return out


def test_candle_ticks_follow_the_candle_direction() -> None:
    rising = candle(0, 10.0, 12.0, 9.0, 11.0, 3.0)
    assert candle_ticks(rising) == ([0, 900_000, 1_800_000, 2_700_000], [10.0, 9.0, 12.0, 11.0], [1.5, 0, 1.5, 0])
    falling = candle(HOUR, 11.0, 12.0, 9.0, 10.0, 0.1)
    assert candle_ticks(falling)[1] == [11.0, 12.0, 9.0, 10.0]


@pytest.mark.parametrize(("name", "timeframe", "count"), [("bitfinex_btcusd_1h.csv", "1h", 3_000),
                                                          ("bitfinex_btcusd_1d.csv", "1d", 1_665)])
def test_replayed_real_candles_rebuild_exactly(name: str, timeframe: str, count: int) -> None:
    original = parse_file(DATA / name).candles[:count]
    rebuilt = rebuild(list(candle_batches(original, batch_ms=60_000)), timeframe)
    # every candle but the last closes (the last bucket's end is never reached by a tick)
    assert len(rebuilt) == count - 1
    for c in original[:-1]:
        got = rebuilt[(c.symbol, c.ts)]
        assert (got.open, got.high, got.low, got.close, got.volume) == (c.open, c.high, c.low, c.close, c.volume)


def test_candle_batches_interleave_instruments_by_window() -> None:
    t0 = 400_000 * HOUR
    candles = [candle(t0 + i * HOUR, 10, 11, 9, 10.5, 1.0, symbol) for i in range(3)
               for symbol in ("BTC/USD", "ETH/USD")]
    batches = list(candle_batches(candles, batch_ms=1_000))
    assert [(b.symbol, len(b.times), b.times[0]) for b in batches] == [
        (s, 4, t0 + i * HOUR) for i in range(3) for s in ("BTC/USD", "ETH/USD")
    ]
    assert {b.source for b in batches} == {"replay"}
    assert len({b.event_id for b in batches}) == len(batches)
    assert all(decode(TickBatch, encode(b)) == b for b in batches)
    wide = list(candle_batches(candles, batch_ms=2 * HOUR, max_batch=6))
    assert [(b.symbol, len(b.times)) for b in wide] == [
        ("BTC/USD", 6), ("BTC/USD", 2), ("ETH/USD", 6), ("ETH/USD", 2), ("BTC/USD", 4), ("ETH/USD", 4)
    ]


def test_batch_bounds_cut_at_windows_and_size() -> None:
    times = np.array([0, 10, 999, 1_000, 1_001, 1_002, 5_000], dtype=np.int64)
    assert batch_bounds(times, 1_000, 2) == [(0, 2), (2, 3), (3, 5), (5, 6), (6, 7)]
    assert batch_bounds(np.array([], dtype=np.int64), 1_000, 2) == []
    with pytest.raises(ValueError):
        batch_bounds(times, 0, 2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacer_plays_event_time_at_the_chosen_speed() -> None:
    clock = FakeClock()
    pacer = Pacer(60, clock=clock, sleep=clock.sleep)

    async def run() -> None:
        for minute in range(4):
            await pacer.wait_for(minute * 60_000)
        clock.now += 5  # publishing fell behind: no sleep until event time catches up
        await pacer.wait_for(5 * 60_000)
        await pacer.wait_for(10 * 60_000)

    asyncio.run(run())
    assert clock.sleeps == pytest.approx([1.0, 1.0, 1.0, 2.0])

    unpaced = FakeClock()
    asyncio.run(Pacer(0, clock=unpaced, sleep=unpaced.sleep).wait_for(10**12))
    assert unpaced.sleeps == []
    with pytest.raises(ValueError):
        Pacer(-1)


def test_play_publishes_everything_and_counts() -> None:
    candles = [candle(i * HOUR, 10, 11, 9, 10.5, 1.0) for i in range(5)]
    sent: list[TickBatch] = []

    async def publish(batch: TickBatch) -> None:
        sent.append(batch)

    stats = asyncio.run(play(candle_batches(candles, batch_ms=HOUR), publish, speed=0))
    assert stats == FeedStats(batches=5, ticks=20, first_ts=0, last_ts=4 * HOUR + 2_700_000)
    assert [b.times[0] for b in sent] == [i * HOUR for i in range(5)]


def test_stored_candles_reads_windows_in_time_order() -> None:
    store = {s: [candle(i * HOUR, 10, 11, 9, 10.5, 1.0, s) for i in range(0, 50, 1 if s == "BTC/USD" else 2)]
             for s in ("BTC/USD", "ETH/USD")}
    calls: list[tuple[str, int, int]] = []

    def load(symbol: str, start: int, end: int, limit: int) -> list[Candle]:
        calls.append((symbol, start, end))
        return [c for c in store[symbol] if start <= c.ts < end][-limit:]

    async def collect() -> list[Candle]:
        return [c async for c in stored_candles(load, ["BTC/USD", "ETH/USD"], "1h", since=HOUR + 5,
                                                until=40 * HOUR, window_buckets=10)]

    got = asyncio.run(collect())
    assert [(c.ts // HOUR, c.symbol) for c in got] == [
        (h, s) for h in range(1, 40) for s in ("BTC/USD", "ETH/USD") if s == "BTC/USD" or h % 2 == 0
    ]
    assert calls[0] == ("BTC/USD", HOUR, 11 * HOUR) and len(calls) == 8

    store["ETH/USD"] = [c for c in store["ETH/USD"] if c.ts >= 7 * HOUR]
    store["BTC/USD"] = [c for c in store["BTC/USD"] if c.ts >= 9 * HOUR]
    calls.clear()
    assert stored_range(load, ["BTC/USD", "ETH/USD"], "1h") == (8 * HOUR, 50 * HOUR)
    assert len(calls) < 2 * 50  # bisection, not a scan
    store["SOL/USD"] = []
    assert stored_range(load, ["SOL/USD"], "1h") is None


def test_trade_deduper_drops_overlap_and_sorts() -> None:
    deduper = TradeDeduper(capacity=3)
    first = deduper.fresh([{"id": "2", "timestamp": 20}, {"id": "1", "timestamp": 10}])
    assert [t["id"] for t in first] == ["1", "2"]
    assert [t["id"] for t in deduper.fresh([{"id": "2", "timestamp": 20}, {"id": "3", "timestamp": 30}])] == ["3"]
    no_ids = [{"timestamp": 40, "price": 1.0, "amount": 2.0}]
    assert deduper.fresh(no_ids) == no_ids and deduper.fresh(no_ids) == []


def test_trade_batches_hang_their_ids_on_the_first_trade() -> None:
    trades = [{"id": str(100 + i), "timestamp": 1_000 + 300 * i, "price": 50.0 + i, "amount": 0.5} for i in range(7)]
    batches = trade_batches("binance", "BTC/USDT", trades, batch_ms=1_000, max_batch=2)
    assert [b.times for b in batches] == [[1_000, 1_300], [1_600, 1_900], [2_200, 2_500], [2_800]]
    assert batches[1].event_id == stable_id("ticks", "binance", "BTC/USDT", "102", 2)
    assert batches[1].ts == 1_900 and batches[1].source == "ccxt"
    assert trade_batches("binance", "BTC/USDT", []) == []


@pytest.mark.parametrize(
    ("trade", "problem"),
    [
        ({"timestamp": None, "price": 1.0, "amount": 1.0}, "timestamp"),
        ({"timestamp": 5, "price": 0.0, "amount": 1.0}, "price"),
        ({"timestamp": 5, "price": float("nan"), "amount": 1.0}, "price"),
        ({"timestamp": 5, "price": 1.0, "amount": -1.0}, "amount"),
        ({"timestamp": 5, "price": 1.0, "amount": None}, "amount"),
    ],
)
def test_trade_problems(trade: dict, problem: str) -> None:
    assert problem in (trade_problem(trade) or "")


def test_valid_trade_has_no_problem() -> None:
    assert trade_problem({"timestamp": 5, "price": 1.0, "amount": 0.0}) is None


def test_closed_candles_drop_the_open_one_and_bad_rows() -> None:
    rejected: list[str] = []
    rows = [
        [0, 10, 11, 9, 10, 1],
        [60_000, 10, 9, 9, 10, 1],  # high below open
        [120_000, 10, 11, 9, 10, None],
        [150_000, 10, 11, 9, 10, 1],  # misaligned
        [180_000, 10, 11, 9, 10, 1],
        [240_000, 10, 11, 9, 10, 1],  # still open at `end`
    ]
    got = closed_candles(rows, exchange="binance", symbol="BTC/USDT", timeframe="1m", start=0, end=299_999,
                         rejected=rejected)
    assert [c.ts for c in got] == [0, 180_000]
    assert len(rejected) == 3 and "high 9.0 is below" in rejected[0] and "not aligned" in rejected[2]
    assert got[0].event_id == stable_id("candle", "binance", "BTC/USDT", "1m", 0) and got[0].source == "backfill"


def test_rebase_urls_keeps_paths_and_maps_websockets() -> None:
    urls = {"public": "https://api.binance.com/api/v3", "ws": {"spot": "wss://stream.binance.com:9443/ws"}}
    assert rebase_urls(urls, "http://127.0.0.1:26001") == {
        "public": "http://127.0.0.1:26001/api/v3", "ws": {"spot": "ws://127.0.0.1:26001/ws"}
    }


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    backoff = Backoff(base_s=1.0, factor=2.0, cap_s=10.0, jitter=0.5)
    delays = [backoff.delay(n) for n in range(6)]
    for n, delay in enumerate(delays):
        ceiling = min(10.0, 2.0**n)
        assert ceiling / 2 <= delay <= ceiling
