"""The market agents: tick batches in, closed candles out, bad input dead-lettered; plus their sinks.

`build_candles` is a thin adapter around `agents.candles.CandleBuilder`: it decodes one `market.ticks` message,
applies it to the instrument's builder restored from a Table, publishes what closed and stores the new state.
Per message, in this order:

1. closed candles go to `market.candles.<tf>` and rejected input to `ops.dlq`, and the agent waits for the broker
   to confirm them;
2. only then is the builder's state (which records the batch's offset) written to the table, so the changelog
   never claims a batch whose candles could still be lost;
3. Faust acknowledges the message when the next one is taken and commits acknowledged offsets after flushing the
   changelog, so a crash makes Kafka redeliver at most batches the restored state has already applied, which the
   builder recognises by offset and skips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types.tuples import Message

from agents.candles import BatchResult, CandleBuilder
from agents.deadletter import (
    BAD_KEY,
    LATE_TICK,
    decode_error_code,
    letter_for_message,
    send_dead_letters,
)
from agents.heartbeat import register_heartbeat
from agents.sinks import DatabaseWriter, register_sinks
from agents.stats import WorkerStats
from streams.codecs import InvalidEvent, decode, encode
from streams.records import SCHEMA_VERSION, TIMEFRAMES, Candle, DeadLetter, TickBatch, instrument_key, stable_id
from streams.topics import DLQ, TICKS, candle_topic, topic_name
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

PROCESSING_ERROR = "processing_error"


@dataclass
class TickStep:
    """What one `market.ticks` message leads to."""

    instrument: str | None = None
    state: dict[str, Any] | None = None
    candles: list[Candle] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    accepted_ticks: int = 0
    skipped: bool = False


def process_tick_message(message: Message, state: dict[str, Any] | None, grace_ms: int) -> TickStep:
    """Decode and apply one tick message to its instrument's builder state; never raises for bad input."""
    try:
        batch = decode(TickBatch, message.value)
    except InvalidEvent as exc:
        return TickStep(letters=[letter_for_message(message, decode_error_code(str(exc)), str(exc))])
    instrument = instrument_key(batch.exchange, batch.symbol)
    if message.key != instrument.encode():
        detail = f"message key {message.key!r} is not the instrument key {instrument!r} of its ticks"
        return TickStep(letters=[letter_for_message(message, BAD_KEY, detail)])
    if state is None:
        builder = CandleBuilder(batch.exchange, batch.symbol, grace_ms)
    else:
        builder = CandleBuilder.from_state(state)
        builder.grace_ms = grace_ms
    result = builder.apply(batch.times, batch.prices, batch.amounts, offset=message.offset)
    if result.skipped:
        return TickStep(instrument=instrument, skipped=True)
    step = TickStep(instrument=instrument, state=builder.to_state(), candles=result.candles,
                    accepted_ticks=len(batch.times))
    if result.late is not None:
        step.accepted_ticks -= len(result.late.times)
        step.letters.append(_late_letter(message, batch, result))
    return step


def _late_letter(message: Message, batch: TickBatch, result: BatchResult) -> DeadLetter:
    """A dead letter whose payload is a tick batch of only the rejected ticks, so it can be inspected or replayed."""
    assert result.late is not None
    late = TickBatch(
        event_id=stable_id("late-ticks", batch.event_id, message.topic, message.partition, message.offset),
        ts=int(result.late.times.max()),
        schema_version=SCHEMA_VERSION,
        exchange=batch.exchange,
        symbol=batch.symbol,
        times=result.late.times.tolist(),
        prices=result.late.prices.tolist(),
        amounts=result.late.amounts.tolist(),
        source=batch.source,
    )
    return letter_for_message(message, LATE_TICK, result.late.reason, payload=encode(late))


def register_market_agents(app: faust.App, settings: Settings, stats: WorkerStats, db: DatabaseWriter) -> None:
    """Declare build_candles, the candle and dead-letter sinks and the heartbeat on `app`."""
    prefix = settings.kafka.topic_prefix
    app_id = settings.worker.app_id
    grace_ms = settings.worker.late_tick_grace_ms
    ticks = app.topic(topic_name(prefix, TICKS))
    candle_topics = {tf: app.topic(topic_name(prefix, candle_topic(tf))) for tf in TIMEFRAMES}
    dlq = app.topic(topic_name(prefix, DLQ))
    # No key/value types: Faust then stores JSON and restores the plain dicts `CandleBuilder.from_state` takes.
    builders = app.Table(
        "candle-builders",
        partitions=settings.kafka.partitions,
        help="CandleBuilder state per instrument (see agents.candles).",
    )

    @app.agent(ticks, name=f"{app_id}.build_candles")
    async def build_candles(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            stats.messages += 1
            state = None
            key = message.key.decode(errors="replace") if message.key else None
            if key is not None:
                state = builders.get(key)
            try:
                step = process_tick_message(message, state, grace_ms)
            except Exception as exc:  # a bug must cost one dead letter, not the stream
                logger.exception("processing %s[%d]@%d failed", message.topic, message.partition, message.offset)
                step = TickStep(letters=[letter_for_message(message, PROCESSING_ERROR, repr(exc))])
            if step.skipped:
                stats.redelivered_batches += 1
                continue
            pending = []
            for candle in step.candles:
                pending.append(await candle_topics[candle.timeframe].send(key=message.key, value=encode(candle)))
                stats.candles[candle.timeframe] += 1
            if step.letters:
                await send_dead_letters(dlq, step.letters, stats)
            for future in pending:
                await future
            if step.state is not None and step.instrument is not None:
                builders[step.instrument] = step.state
            stats.ticks += step.accepted_ticks

    register_sinks(app, settings, stats, db)
    register_heartbeat(app, settings, stats, db)
