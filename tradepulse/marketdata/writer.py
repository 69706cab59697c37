"""Writing candles to the log and the store, idempotently: the one path shared by the importer and the backfill.

Each batch is compared with what market_data already holds; only new or changed candles are published to
`market.candles.<tf>` (keyed by instrument) and then upserted into market_data. The topic is written first, so a
row in the table means its candle is in the log: re-running an import or a backfill publishes nothing twice, and a
run interrupted between the two writes re-publishes at most that batch (same event ids, which consumers upsert on).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import psycopg

from streams.producer import LogProducer
from streams.records import TIMEFRAMES, Candle, instrument_key
from streams.topics import candle_topic
from tradepulse.db import connect, with_retry
from tradepulse.settings import Settings
from tradepulse.store import fetch_candles, latest_candle_ts, upsert_candles

logger = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_CHUNK = 5_000
"""Candles per round trip: bounds memory, transaction size and the work a crash can make us redo."""


@dataclass
class WriteStats:
    """What a write did: candles published and stored (new or changed) and candles already stored as they are."""

    written: int = 0
    unchanged: int = 0

    def __iadd__(self, other: WriteStats) -> WriteStats:
        self.written += other.written
        self.unchanged += other.unchanged
        return self


def _same(a: Candle, b: Candle) -> bool:
    return (a.open, a.high, a.low, a.close, a.volume, a.trades) == (b.open, b.high, b.low, b.close, b.volume, b.trades)


def changed_candles(candles: Sequence[Candle], stored: Sequence[Candle]) -> list[Candle]:
    """The candles of `candles` that `stored` lacks or holds with other values."""
    existing = {(c.exchange, c.symbol, c.timeframe, c.ts): c for c in stored}
    out = []
    for candle in candles:
        old = existing.get((candle.exchange, candle.symbol, candle.timeframe, candle.ts))
        if old is None or not _same(old, candle):
            out.append(candle)
    return out


class CandleWriter:
    """Publishes to the candle topics and upserts into market_data; use as an async context manager."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = LogProducer(settings)
        self._conn: psycopg.Connection | None = None

    async def __aenter__(self) -> CandleWriter:
        await self._producer.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._producer.__aexit__(exc_type, exc, tb)
        finally:
            if self._conn is not None:
                self._conn.close()

    def _in_transaction(self, operation: Callable[[psycopg.Connection], T]) -> T:
        """Run `operation` in one transaction, reconnecting and retrying while the database is away."""

        def attempt() -> T:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._settings)
            try:
                with self._conn.transaction():
                    return operation(self._conn)
            except psycopg.OperationalError:
                self._conn.close()
                raise

        return with_retry(attempt)

    async def _db(self, operation: Callable[[psycopg.Connection], T]) -> T:
        return await asyncio.to_thread(self._in_transaction, operation)

    async def latest(self, exchange: str, symbol: str, timeframe: str) -> int | None:
        """Open time of the newest stored candle of the instrument, or None."""
        return await self._db(lambda conn: latest_candle_ts(conn, exchange, symbol, timeframe))

    async def stored(self, candles: Sequence[Candle]) -> list[Candle]:
        """What market_data holds over the time range of each instrument present in `candles`."""
        ranges: dict[tuple[str, str, str], list[int]] = {}
        for c in candles:
            bounds = ranges.setdefault((c.exchange, c.symbol, c.timeframe), [c.ts, c.ts])
            bounds[0], bounds[1] = min(bounds[0], c.ts), max(bounds[1], c.ts)

        def load(conn: psycopg.Connection) -> list[Candle]:
            found: list[Candle] = []
            for (exchange, symbol, timeframe), (first, last) in ranges.items():
                buckets = (last - first) // TIMEFRAMES[timeframe] + 1
                found.extend(fetch_candles(conn, exchange, symbol, timeframe, first, last + 1, limit=buckets))
            return found

        return await self._db(load)

    async def publish(self, candles: Sequence[Candle]) -> int:
        """Send candles to their timeframe's topic, keyed by instrument; returns once the broker has them all."""
        by_timeframe: dict[str, list[Candle]] = defaultdict(list)
        for candle in candles:
            by_timeframe[candle.timeframe].append(candle)
        sent = 0
        for timeframe, group in by_timeframe.items():
            sent += await self._producer.send_many(
                candle_topic(timeframe), ((instrument_key(c.exchange, c.symbol), c) for c in group)
            )
        return sent

    async def store(self, candles: Sequence[Candle]) -> int:
        """Upsert candles into market_data."""
        return await self._db(lambda conn: upsert_candles(conn, candles))

    async def write(self, candles: Sequence[Candle]) -> WriteStats:
        """Publish then store the new or changed candles, chunk by chunk."""
        stats = WriteStats()
        for offset in range(0, len(candles), WRITE_CHUNK):
            chunk = candles[offset : offset + WRITE_CHUNK]
            fresh = changed_candles(chunk, await self.stored(chunk))
            if fresh:
                await self.publish(fresh)
                await self.store(fresh)
            stats += WriteStats(len(fresh), len(chunk) - len(fresh))
        logger.info("wrote %d candles (%d already stored unchanged)", stats.written, stats.unchanged)
        return stats
