"""Tick feeds onto market.ticks: a replay feed (stored candles or synthetic ticks) and a live ccxt feed.

Every feed publishes `TickBatch`es (one instrument, a short interval, many ticks) keyed by instrument, and every
tick's time comes from the data, never from the wall clock. The wall clock only paces a replay (`speed` 60 plays
an hour of event time in a minute; 0 plays as fast as the broker takes it).

Candles replay as four deterministic ticks each (open; low then high for a rising candle, high then low for a
falling one; close) a quarter of the candle apart, carrying half the volume on the open and on the high/low tick
that comes second, so an event-time candle builder rebuilds the candle's open, high, low, close and volume exactly
(halves of a float add back to it exactly).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.producer import LogProducer
from streams.records import SCHEMA_VERSION, TIMEFRAMES, Candle, DeadLetter, TickBatch, instrument_key, stable_id
from streams.topics import DLQ, TICKS
from tradepulse.marketdata.exchanges import Backoff, ExchangeRequestError, with_backoff
from tradepulse.marketdata.ticks import DEFAULT_BATCH_MS, DEFAULT_MAX_BATCH, batches

logger = logging.getLogger(__name__)

REPLAY_SOURCE = "replay"
LIVE_SOURCE = "ccxt"
DEDUP_CAPACITY = 20_000
"""Trade ids remembered per symbol to drop the overlap between consecutive polls or a reconnect's replay."""

Publish = Callable[[TickBatch], Awaitable[None]]


@dataclass
class FeedStats:
    """What a feed has published so far."""

    batches: int = 0
    ticks: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    rejected: int = 0
    reconnects: int = 0

    def count(self, batch: TickBatch) -> None:
        self.batches += 1
        self.ticks += len(batch.times)
        self.first_ts = batch.times[0] if self.first_ts is None else min(self.first_ts, batch.times[0])
        self.last_ts = batch.ts if self.last_ts is None else max(self.last_ts, batch.ts)


class TickPublisher:
    """Publishes batches on market.ticks and rejected exchange data on ops.dlq."""

    def __init__(self, producer: LogProducer) -> None:
        self._producer = producer

    async def __call__(self, batch: TickBatch) -> None:
        await self._producer.send(TICKS, instrument_key(batch.exchange, batch.symbol), batch)

    async def reject(self, letter: DeadLetter) -> None:
        await self._producer.send(DLQ, letter.source_topic, letter)


# ------------------------------------------------------------------------------------------------------ replay


def candle_ticks(candle: Candle) -> tuple[list[int], list[float], list[float]]:
    """Four ticks `(times, prices, amounts)` inside the candle's bucket that rebuild exactly this candle."""
    quarter = TIMEFRAMES[candle.timeframe] // 4
    times = [candle.ts, candle.ts + quarter, candle.ts + 2 * quarter, candle.ts + 3 * quarter]
    extremes = [candle.low, candle.high] if candle.close >= candle.open else [candle.high, candle.low]
    half = candle.volume / 2
    return times, [candle.open, *extremes, candle.close], [half, 0.0, half, 0.0]


class CandleTickBatcher:
    """Turns candles (ascending by time, any number of instruments) into replay tick batches per instrument per
    window; a window spans at least one candle, so slow timeframes do not become one message per tick."""

    def __init__(self, *, batch_ms: int = DEFAULT_BATCH_MS, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._batch_ms = batch_ms
        self._max_batch = max_batch
        self._pending: dict[tuple[str, str], tuple[list[int], list[float], list[float]]] = {}
        self._window: int | None = None
        self._window_ms = batch_ms

    def add(self, candle: Candle) -> list[TickBatch]:
        """Take one candle; returns the batches of the window it closed, if any."""
        window_ms = max(self._batch_ms, TIMEFRAMES[candle.timeframe])
        out = self.flush() if self._window is not None and candle.ts // window_ms != self._window else []
        self._window, self._window_ms = candle.ts // window_ms, window_ms
        times, prices, amounts = self._pending.setdefault((candle.exchange, candle.symbol), ([], [], []))
        t, p, a = candle_ticks(candle)
        times.extend(t)
        prices.extend(p)
        amounts.extend(a)
        return out

    def flush(self) -> list[TickBatch]:
        """The batches of the current window."""
        out = [
            batch
            for (exchange, symbol), (times, prices, amounts) in self._pending.items()
            for batch in batches(
                exchange, symbol, np.asarray(times, dtype=np.int64), np.asarray(prices), np.asarray(amounts),
                source=REPLAY_SOURCE, batch_ms=self._window_ms, max_batch=self._max_batch,
            )
        ]
        self._pending.clear()
        self._window = None
        return out


def candle_batches(
    candles: Iterable[Candle], *, batch_ms: int = DEFAULT_BATCH_MS, max_batch: int = DEFAULT_MAX_BATCH
) -> Iterator[TickBatch]:
    """Replay tick batches of candles (see `CandleTickBatcher`)."""
    batcher = CandleTickBatcher(batch_ms=batch_ms, max_batch=max_batch)
    for candle in candles:
        yield from batcher.add(candle)
    yield from batcher.flush()


async def candle_batches_async(
    candles: AsyncIterable[Candle], *, batch_ms: int = DEFAULT_BATCH_MS, max_batch: int = DEFAULT_MAX_BATCH
) -> AsyncIterator[TickBatch]:
    """`candle_batches` over an asynchronous stream, such as `stored_candles`."""
    batcher = CandleTickBatcher(batch_ms=batch_ms, max_batch=max_batch)
    async for candle in candles:
        for batch in batcher.add(candle):
            yield batch
    for batch in batcher.flush():
        yield batch


class Pacer:
    """Holds batches back so event time advances `speed` times faster than the wall clock (0: no pacing)."""

    def __init__(
        self,
        speed: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must not be negative")
        self._speed = speed
        self._clock = clock
        self._sleep = sleep
        self._origin: tuple[int, float] | None = None

    async def wait_for(self, event_ts: int) -> None:
        if self._speed == 0:
            return
        if self._origin is None:
            self._origin = (event_ts, self._clock())
            return
        first_ts, first_wall = self._origin
        delay = first_wall + (event_ts - first_ts) / 1000 / self._speed - self._clock()
        if delay > 0:
            await self._sleep(delay)


async def _as_async(source: Iterable[TickBatch] | AsyncIterable[TickBatch]) -> AsyncIterator[TickBatch]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item
            await asyncio.sleep(0)


async def play(
    source: Iterable[TickBatch] | AsyncIterable[TickBatch],
    publish: Publish,
    *,
    speed: float,
    stats: FeedStats | None = None,
) -> FeedStats:
    """Publish every batch of `source`, paced by event time."""
    stats = stats if stats is not None else FeedStats()
    pacer = Pacer(speed)
    async for batch in _as_async(source):
        await pacer.wait_for(batch.ts)
        await publish(batch)
        stats.count(batch)
    return stats


Loader = Callable[[str, int, int, int], Sequence[Candle]]
"""`load(symbol, start, end, limit)`: the newest `limit` stored candles of one symbol in `[start, end)`, oldest
first (blocking; run in a thread)."""

STORE_HORIZON_MS = 2**53


def stored_range(load: Loader, symbols: Sequence[str], timeframe: str) -> tuple[int, int] | None:
    """`(first open time, last close time)` over the symbols' stored candles, or None when there are none.

    The first candle is found by bisection with one-row queries, so a replay need not scan empty decades."""
    span = TIMEFRAMES[timeframe]
    firsts, ends = [], []
    for symbol in symbols:
        newest = load(symbol, 0, STORE_HORIZON_MS, 1)
        if not newest:
            continue
        lo, hi = 0, newest[-1].ts + span
        while hi - lo > span:
            mid = (lo + (hi - lo) // 2) // span * span
            if mid <= lo:
                mid = lo + span
            if load(symbol, lo, mid, 1):
                hi = mid
            else:
                lo = mid
        firsts.append(lo)
        ends.append(newest[-1].ts + span)
    return (min(firsts), max(ends)) if firsts else None


async def stored_candles(
    load: Loader,
    symbols: Sequence[str],
    timeframe: str,
    *,
    since: int,
    until: int,
    window_buckets: int = 10_000,
) -> AsyncIterator[Candle]:
    """Candles of several symbols from the store, ascending by time, read window by window so memory stays flat."""
    span = TIMEFRAMES[timeframe]
    order = {symbol: i for i, symbol in enumerate(symbols)}
    cursor = since - since % span
    while cursor < until:
        end = min(until, cursor + window_buckets * span)
        rows: list[Candle] = []
        for symbol in symbols:
            rows.extend(await asyncio.to_thread(load, symbol, cursor, end, window_buckets))
        rows.sort(key=lambda c: (c.ts, order[c.symbol]))
        for candle in rows:
            yield candle
        cursor = end


def resume_points(newest_ticks: dict[str, int], timeframe: str, starts: dict[str, int]) -> dict[str, int]:
    """Where each symbol's replay continues: the first candle after the newest tick already published, never
    before `starts`. A replay publishes each candle's four ticks in one batch (windows of at most one candle and
    `max_batch` of four or more, as by default), so the candle of the newest tick was published whole."""
    span = TIMEFRAMES[timeframe]
    return {
        symbol: max(start, newest_ticks[symbol] // span * span + span) if symbol in newest_ticks else start
        for symbol, start in starts.items()
    }


async def resumed(candles: AsyncIterator[Candle], starts: dict[str, int]) -> AsyncIterator[Candle]:
    """`candles` without those of a symbol before its start."""
    async for candle in candles:
        if candle.ts >= starts.get(candle.symbol, candle.ts):
            yield candle


# -------------------------------------------------------------------------------------------------------- live


class TradeDeduper:
    """Drops trades already seen (by id, else by time, price and amount) and orders the rest by time."""

    def __init__(self, capacity: int = DEDUP_CAPACITY) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def fresh(self, trades: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for trade in trades:
            key = str(trade.get("id") or (trade.get("timestamp"), trade.get("price"), trade.get("amount")))
            if key in self._seen:
                continue
            self._seen[key] = None
            out.append(trade)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        out.sort(key=lambda t: t.get("timestamp") or 0)
        return out


def trade_problem(trade: dict[str, Any]) -> str | None:
    """Why a ccxt trade cannot become a tick, or None."""
    ts, price, amount = trade.get("timestamp"), trade.get("price"), trade.get("amount")
    if not isinstance(ts, int) or ts <= 0:
        return f"no valid timestamp ({ts!r})"
    if not isinstance(price, int | float) or not np.isfinite(price) or price <= 0:
        return f"non-positive or missing price ({price!r})"
    if not isinstance(amount, int | float) or not np.isfinite(amount) or amount < 0:
        return f"negative or missing amount ({amount!r})"
    return None


def trade_batches(
    exchange: str,
    symbol: str,
    trades: Sequence[dict[str, Any]],
    *,
    batch_ms: int = DEFAULT_BATCH_MS,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> list[TickBatch]:
    """Valid ccxt trades (ascending by time) as batches whose ids hang on the first trade's id."""
    if not trades:
        return []
    return list(
        batches(
            exchange, symbol,
            np.asarray([t["timestamp"] for t in trades], dtype=np.int64),
            np.asarray([float(t["price"]) for t in trades]),
            np.asarray([float(t["amount"]) for t in trades]),
            source=LIVE_SOURCE, batch_ms=batch_ms, max_batch=max_batch,
            trade_ids=[str(t.get("id") or t["timestamp"]) for t in trades],
        )
    )


class LiveFeed:
    """Trades of several symbols from a ccxt exchange onto market.ticks until cancelled.

    Uses `watch_trades` (websocket, ccxt.pro) where the exchange has it and `fetch_trades` polling otherwise. A
    network failure (dropped connection, timeout, rate limit, 5xx) is followed by a reconnect after exponential
    backoff with jitter; the exchange refusing a symbol ends the feed with its message.
    """

    def __init__(
        self,
        client: Any,
        symbols: Sequence[str],
        publisher: TickPublisher,
        *,
        mode: str = "auto",
        poll_interval_s: float = 1.0,
        batch_ms: int = DEFAULT_BATCH_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
        backoff: Backoff | None = None,
        stats: FeedStats | None = None,
    ) -> None:
        if mode not in ("auto", "watch", "poll"):
            raise ValueError(f"mode must be auto, watch or poll, not {mode!r}")
        self._client = client
        self._symbols = list(symbols)
        self._publisher = publisher
        self._mode = mode
        self._poll_interval_s = poll_interval_s
        self._batch_ms = batch_ms
        self._max_batch = max_batch
        self._backoff = backoff or Backoff(base_s=1.0, cap_s=60.0)
        self.stats = stats if stats is not None else FeedStats()

    @property
    def watching(self) -> bool:
        """Whether trades come from the websocket (`watch_trades`) rather than polling."""
        return self._mode == "watch" or (self._mode == "auto" and bool(self._client.has.get("watchTrades")))

    async def run(self) -> None:
        client = self._client
        await with_backoff(client.load_markets, what=f"{client.id} load_markets", backoff=self._backoff)
        unknown = [s for s in self._symbols if s not in client.markets]
        if unknown:
            raise ExchangeRequestError(f"{client.id} does not list {', '.join(unknown)}")
        if not self.watching and not client.has.get("fetchTrades"):
            raise ExchangeRequestError(f"{client.id} offers neither watch_trades nor fetch_trades")
        logger.info(
            "live feed from %s (%s) for %s", client.id, "websocket" if self.watching else "polling",
            ", ".join(self._symbols),
        )
        await asyncio.gather(*(self._follow(symbol) for symbol in self._symbols))

    async def _follow(self, symbol: str) -> None:
        import ccxt

        deduper = TradeDeduper()
        failures = 0
        since: int | None = None
        while True:
            try:
                if self.watching:
                    trades = await self._client.watch_trades(symbol)
                else:
                    trades = await self._client.fetch_trades(symbol, since=since, limit=1000)
            except ccxt.NetworkError as exc:
                delay = self._backoff.delay(min(failures, 16))
                failures += 1
                self.stats.reconnects += 1
                logger.warning("%s %s: %s: %s; reconnecting in %.1fs", self._client.id, symbol,
                               type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            except ccxt.BaseError as exc:
                raise ExchangeRequestError(f"{self._client.id} refused trades of {symbol}: {exc}") from exc
            failures = 0
            logger.debug("%s %s: %d trades received", self._client.id, symbol, len(trades))
            fresh = await self._accept(symbol, deduper.fresh(trades))
            if not self.watching:
                # Continue from the newest trade; after an empty answer ask for the latest trades instead, since
                # some exchanges only search a bounded window after `since`.
                since = max((t["timestamp"] for t in fresh), default=since) if trades else None
                await asyncio.sleep(self._poll_interval_s)

    async def _accept(self, symbol: str, trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Publish the valid trades as batches and dead-letter the others; returns the valid ones."""
        valid = []
        for trade in trades:
            problem = trade_problem(trade)
            if problem is None:
                valid.append(trade)
            else:
                self.stats.rejected += 1
                await self._publisher.reject(self._letter(symbol, trade, problem))
        for batch in trade_batches(
            self._client.id, symbol, valid, batch_ms=self._batch_ms, max_batch=self._max_batch
        ):
            await self._publisher(batch)
            self.stats.count(batch)
        return valid

    def _letter(self, symbol: str, trade: dict[str, Any], problem: str) -> DeadLetter:
        """A dead letter keeping the exchange's raw trade; its time is the trade's own (0 when it has none)."""
        from agents.deadletter import INVALID_VALUE

        logger.warning("%s %s: rejected trade %s: %s", self._client.id, symbol, trade.get("id"), problem)
        ts = trade.get("timestamp")
        source, offset = f"{self._client.id}:trades", ts if isinstance(ts, int) else -1
        return DeadLetter(
            event_id=stable_id("dead-letter", source, 0, offset, INVALID_VALUE),
            ts=ts if isinstance(ts, int) and ts > 0 else 0,
            schema_version=SCHEMA_VERSION,
            source_topic=source,
            partition=0,
            offset=offset,
            key=instrument_key(self._client.id, symbol),
            reason=f"{INVALID_VALUE}: {problem}",
            payload=repr(trade.get("info", trade)),
        )
