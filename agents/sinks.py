"""Sinks: candles from every market.candles.* topic into market_data, ops.dlq into dead_letters.

Both write in batches (`agents.batches.message_batches`) and upsert on the rows' natural or event ids, so a
redelivered batch rewrites the same rows. A batch is acknowledged only after the agent body returns, and Faust
commits only acknowledged offsets, so a batch is never committed before its rows are in the database: while
PostgreSQL is away the body keeps retrying and the consumer simply stops advancing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import faust
import psycopg
from faust.types.tuples import Message
from psycopg_pool import ConnectionPool

from agents.batches import message_batches
from agents.deadletter import (
    REJECTED_BY_DATABASE,
    decode_error_code,
    letter_for_message,
    send_dead_letters,
    upsert_dead_letters,
)
from agents.stats import WorkerStats
from streams.codecs import InvalidEvent, decode
from streams.records import TIMEFRAMES, Candle, DeadLetter
from streams.topics import DLQ, candle_topic, topic_name
from tradepulse.db import create_pool, is_transient
from tradepulse.settings import Settings
from tradepulse.store import upsert_candles

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_RETRY_DELAY_S = 5.0


class DatabaseWriter:
    """Blocking psycopg work run in threads off the event loop, on a pool opened on first use.

    `run` retries transient failures (server down, restarting, connection lost) until they pass: a sink must not
    drop data and must not acknowledge it either, so waiting is the only correct thing to do.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

    def _call(self, operation: Callable[[psycopg.Connection], T]) -> T:
        with self._lock:
            if self._pool is None:
                self._pool = create_pool(self._settings)
        with self._pool.connection() as conn:
            return operation(conn)

    async def run_once(self, operation: Callable[[psycopg.Connection], T]) -> T:
        """One attempt, in a transaction committed when `operation` returns."""
        return await asyncio.to_thread(self._call, operation)

    async def run(self, operation: Callable[[psycopg.Connection], T], what: str) -> T:
        """`run_once`, retried with capped exponential backoff for as long as the failure is transient."""
        delay = 0.2
        while True:
            try:
                return await self.run_once(operation)
            except psycopg.OperationalError as exc:
                if not is_transient(exc):
                    raise
                logger.warning("writing %s failed (database unavailable), retrying in %.1fs: %s", what, delay, exc)
                await asyncio.sleep(delay)
                delay = min(MAX_RETRY_DELAY_S, delay * 2)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def _writer(write: Callable[[psycopg.Connection, Sequence[R]], int], rows: Sequence[R]) -> Callable[
    [psycopg.Connection], int
]:
    return lambda conn: write(conn, rows)


async def write_isolating_failures(
    db: DatabaseWriter,
    write: Callable[[psycopg.Connection, Sequence[R]], int],
    rows: Sequence[R],
    what: str,
) -> tuple[int, list[tuple[R, psycopg.Error]]]:
    """Write `rows` in one transaction; if the database rejects the batch, write them one by one.

    Returns the number written and the rows the database refused with its error, so one bad row costs a dead
    letter instead of blocking its partition forever.
    """
    if not rows:
        return 0, []
    try:
        return await db.run(_writer(write, rows), what), []
    except psycopg.Error as exc:
        logger.error("the database rejected a batch of %d %s, writing them one by one: %s", len(rows), what, exc)
    written = 0
    refused: list[tuple[R, psycopg.Error]] = []
    for row in rows:
        try:
            written += await db.run(_writer(write, [row]), what)
        except psycopg.Error as exc:
            refused.append((row, exc))
    return written, refused


def register_sinks(app: faust.App, settings: Settings, stats: WorkerStats, db: DatabaseWriter) -> None:
    """Declare the market_data and dead_letters sink agents on `app`."""
    prefix = settings.kafka.topic_prefix
    worker = settings.worker
    candle_topics = app.topic(*(topic_name(prefix, candle_topic(tf)) for tf in TIMEFRAMES))
    dlq = app.topic(topic_name(prefix, DLQ))

    @app.agent(candle_topics, name=f"{worker.app_id}.sink_candles")
    async def sink_candles(stream: faust.StreamT[bytes]) -> None:
        async for messages in message_batches(stream, worker.sink_batch_size, worker.sink_flush_s):
            latest: dict[str, tuple[Candle, Message]] = {}
            letters: list[DeadLetter] = []
            for message in messages:
                try:
                    candle = decode(Candle, message.value)
                except InvalidEvent as exc:
                    letters.append(letter_for_message(message, decode_error_code(str(exc)), str(exc)))
                else:
                    latest[candle.event_id] = (candle, message)
            candles = [candle for candle, _ in latest.values()]
            written, refused = await write_isolating_failures(db, upsert_candles, candles, "candles")
            stats.sink_rows["market_data"] += written
            letters += [
                letter_for_message(latest[candle.event_id][1], REJECTED_BY_DATABASE, str(exc))
                for candle, exc in refused
            ]
            if letters:
                await send_dead_letters(dlq, letters, stats)

    @app.agent(dlq, name=f"{worker.app_id}.sink_dead_letters")
    async def sink_dead_letters(stream: faust.StreamT[bytes]) -> None:
        async for messages in message_batches(stream, worker.sink_batch_size, worker.sink_flush_s):
            letters: list[DeadLetter] = []
            for message in messages:
                try:
                    letters.append(decode(DeadLetter, message.value))
                except InvalidEvent as exc:
                    logger.error("unreadable record on %s at offset %d skipped: %s",
                                 message.topic, message.offset, exc)
            written, refused = await write_isolating_failures(db, upsert_dead_letters, letters, "dead letters")
            stats.sink_rows["dead_letters"] += written
            for letter, exc in refused:
                logger.error("dead letter %s refused by the database and skipped: %s", letter.event_id, exc)
