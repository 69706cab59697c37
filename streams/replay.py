"""Read a topic back as records, and a candle topic (or a time range of it) as candles: the input of backtests;
and where a replay of ticks got to."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams.codecs import InvalidEvent, decode
from streams.keys import instrument_key
from streams.records import Candle, Event, TickBatch
from streams.topics import TICKS, candle_topic, topic_name
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Event)


async def read_records(
    settings: Settings, topic: str, record_type: type[R], *, timeout_s: float = 60.0
) -> list[tuple[int, int, R]]:
    """`(partition, offset, record)` for every record of a documented topic as of now, in log order per partition.

    Reads each partition from its beginning up to the end offset it had when the call started, without a
    consumer group (nothing is committed). Records that do not decode are skipped with a warning (the worker
    dead-letters them).
    """
    name = topic_name(settings.kafka.topic_prefix, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    deadline = time.monotonic() + timeout_s
    records: list[tuple[int, int, R]] = []
    await consumer.start()
    try:
        await _subscribe_existing(consumer, name, deadline)
        tps = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {name} took longer than {timeout_s}s")
            fetched = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in fetched.items():
                for message in messages:
                    if message.offset >= ends[tp]:
                        continue
                    try:
                        records.append((tp.partition, message.offset, decode(record_type, message.value)))
                    except InvalidEvent as exc:
                        logger.warning("skipping %s[%d]@%d: %s", name, tp.partition, message.offset, exc)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return records


async def _subscribe_existing(consumer: AIOKafkaConsumer, name: str, deadline: float) -> None:
    """Subscribe to `name` once the broker's metadata shows it exists.

    Subscribing to a missing topic would make the client wait out its whole metadata timeout (40 s) before
    failing; asking for the topic list first answers in one round trip.
    """
    if name not in await consumer.topics():
        raise ValueError(f"topic {name!r} does not exist")
    consumer.subscribe([name])
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no partitions of {name} were assigned in time")
        await asyncio.sleep(0.05)


async def read_candles(
    settings: Settings,
    timeframe: str,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    timeout_s: float = 60.0,
) -> list[Candle]:
    """Every candle of `timeframe` on the log as of now, oldest first, one per event id.

    Filters by instrument and by `start_ms <= ts < end_ms` when given. A candle published twice (a redelivery)
    appears once; if the two differ, the later one wins (one instrument stays on one partition, so "later" is
    well defined).
    """
    latest: dict[str, Candle] = {}
    for _, _, candle in await read_records(settings, candle_topic(timeframe), Candle, timeout_s=timeout_s):
        if _wanted(candle, exchange, symbol, start_ms, end_ms):
            latest[candle.event_id] = candle
    return sorted(latest.values(), key=lambda c: (c.ts, c.exchange, c.symbol))


def _wanted(candle: Candle, exchange: str | None, symbol: str | None, start_ms: int | None, end_ms: int | None) -> bool:
    return (
        (exchange is None or candle.exchange == exchange)
        and (symbol is None or candle.symbol == symbol)
        and (start_ms is None or candle.ts >= start_ms)
        and (end_ms is None or candle.ts < end_ms)
    )


async def newest_tick_times(
    settings: Settings, exchange: str, symbols: list[str], *, chunk: int = 2_000, timeout_s: float = 120.0
) -> dict[str, int]:
    """The newest tick time already on market.ticks for each of `symbols` (those never published are absent).

    Each partition is read backwards from its end, a growing chunk at a time, until every symbol is found or the
    partition's beginning is reached; messages are matched by key before anything is decoded. A replay that
    resumes after these times neither repeats a tick nor leaves one out.
    """
    name = topic_name(settings.kafka.topic_prefix, TICKS)
    keys = {instrument_key(exchange, symbol).encode(): symbol for symbol in symbols}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
    deadline = time.monotonic() + timeout_s
    newest: dict[str, int] = {}
    await consumer.start()
    try:
        if name not in await consumer.topics():
            return newest
        await _subscribe_existing(consumer, name, deadline)
        tps = sorted(consumer.assignment())
        begins, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        for tp in tps:
            high, size = ends[tp], chunk
            while high > begins[tp] and len(newest) < len(keys):
                low = max(begins[tp], high - size)
                for message in await _read_range(consumer, tp, low, high, deadline):
                    symbol = keys.get(message.key or b"")
                    if symbol is None:
                        continue
                    try:
                        batch = decode(TickBatch, message.value)
                    except InvalidEvent:
                        continue
                    if batch.times:
                        newest[symbol] = max(newest.get(symbol, batch.times[0]), max(batch.times))
                high, size = low, min(size * 2, 100_000)
    finally:
        await consumer.stop()
    return newest


async def _read_range(consumer: AIOKafkaConsumer, tp: TopicPartition, low: int, high: int,
                      deadline: float) -> list[ConsumerRecord[bytes, bytes]]:
    """The messages of `tp` with offsets in `[low, high)`."""
    consumer.seek(tp, low)
    out: list[ConsumerRecord[bytes, bytes]] = []
    while await consumer.position(tp) < high:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {tp.topic}[{tp.partition}] took too long")
        fetched = await consumer.getmany(tp, timeout_ms=500)
        out.extend(m for m in fetched.get(tp, []) if m.offset < high)
    return out
