"""Read a candle topic (or a time range of it) back as records: the input of backtests and of pipeline checks."""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.codecs import InvalidEvent, decode
from streams.records import Candle
from streams.topics import candle_topic, topic_name
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)


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

    Reads each partition from its beginning up to the end offset it had when the call started, without a
    consumer group (nothing is committed). Filters by instrument and by `start_ms <= ts < end_ms` when given.
    A candle published twice (a redelivery) appears once; if the two differ, the later one wins. Records that
    do not decode are skipped with a warning (the worker dead-letters them).
    """
    name = topic_name(settings.kafka.topic_prefix, candle_topic(timeframe))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            raise ValueError(f"topic {name!r} does not exist")
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        latest: dict[str, Candle] = {}
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {name} took longer than {timeout_s}s")
            fetched = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in fetched.items():
                for message in messages:
                    if message.offset >= ends[tp]:
                        continue
                    try:
                        candle = decode(Candle, message.value)
                    except InvalidEvent as exc:
                        logger.warning("skipping %s[%d]@%d: %s", name, tp.partition, message.offset, exc)
                        continue
                    if _wanted(candle, exchange, symbol, start_ms, end_ms):
                        latest[candle.event_id] = candle
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return sorted(latest.values(), key=lambda c: (c.ts, c.exchange, c.symbol))


def _wanted(candle: Candle, exchange: str | None, symbol: str | None, start_ms: int | None, end_ms: int | None) -> bool:
    return (
        (exchange is None or candle.exchange == exchange)
        and (symbol is None or candle.symbol == symbol)
        and (start_ms is None or candle.ts >= start_ms)
        and (end_ms is None or candle.ts < end_ms)
    )
