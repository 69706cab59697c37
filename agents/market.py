"""The market agent: tick batches in, closed candles out, bad input dead-lettered.

`build_candles` is a thin adapter around `agents.candles.CandleBuilder`: it decodes one `market.ticks` message,
applies it to the instrument's builder restored from a Table, publishes what closed and stores the new state.
It takes messages in batches (`agents.batches.message_batches`) so the per-batch work (broker round trips, table
writes) is paid once per batch, not per message. Per batch, in this order:

1. every message is applied to its instrument's builder; closed candles go to `market.candles.<tf>` and rejected
   input to `ops.dlq`, and the agent waits for the broker to confirm them;
2. only then is each touched instrument's new state (which records the offset of the last batch applied) written
   to the table, once, and the agent waits until the broker has confirmed those changelog records too;
3. the batch is acknowledged when the body returns (not if it is interrupted), and Faust commits only acknowledged
   offsets, so a committed offset always implies its state is in the changelog: a crash makes Kafka redeliver at
   most messages the restored state has already applied, which the builder recognises by offset and skips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types.tuples import Message

from agents.batches import message_batches
from agents.candles import BatchResult, CandleBuilder
from agents.deadletter import (
    BAD_KEY,
    LATE_TICK,
    decode_error_code,
    letter_for_message,
    send_dead_letters,
)
from agents.output import Output, OutputProducer, confirm_batch, output_producer
from agents.stats import WorkerStats
from streams.codecs import InvalidEvent, decode, encode
from streams.records import SCHEMA_VERSION, Candle, DeadLetter, TickBatch, instrument_key, stable_id
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


async def _apply_tick_batch(
    messages: list[Message],
    builders: faust.Table,
    outputs_to: OutputProducer,
    dlq: faust.TopicT,
    grace_ms: int,
    stats: WorkerStats,
) -> None:
    """Steps 1 and 2 of the module docstring for one batch of `market.ticks` messages."""
    states: dict[str, tuple[int, dict[str, Any]]] = {}
    outputs: list[Output] = []
    letters: list[DeadLetter] = []
    accepted = 0
    for message in messages:
        stats.messages += 1
        key = message.key.decode(errors="replace") if message.key else None
        state = None
        if key is not None:
            state = states[key][1] if key in states else builders.get(key)
        try:
            step = process_tick_message(message, state, grace_ms)
        except Exception as exc:  # a bug must cost one dead letter, not the stream
            logger.exception("processing %s[%d]@%d failed", message.topic, message.partition, message.offset)
            step = TickStep(letters=[letter_for_message(message, PROCESSING_ERROR, repr(exc))])
        if step.skipped:
            stats.redelivered_batches += 1
            continue
        for candle in step.candles:
            outputs.append((candle_topic(candle.timeframe), instrument_key(candle.exchange, candle.symbol), candle))
            stats.candles[candle.timeframe] += 1
        letters += step.letters
        if step.state is not None and step.instrument is not None:
            states[step.instrument] = (message.partition, step.state)
        accepted += step.accepted_ticks
    if letters:
        await send_dead_letters(dlq, letters, stats)
    published = await outputs_to.publish(outputs)
    await confirm_batch(outputs_to, published, [(builders, states)])
    stats.ticks += accepted


def register_market_agents(app: faust.App, settings: Settings, stats: WorkerStats) -> None:
    """Declare build_candles on `app`."""
    prefix = settings.kafka.topic_prefix
    app_id = settings.worker.app_id
    grace_ms = settings.worker.late_tick_grace_ms
    ticks = app.topic(topic_name(prefix, TICKS))
    outputs_to = output_producer(app, settings)
    dlq = app.topic(topic_name(prefix, DLQ))
    # No key/value types: Faust then stores JSON and restores the plain dicts `CandleBuilder.from_state` takes.
    builders = app.Table(
        "candle-builders",
        partitions=settings.kafka.partitions,
        help="CandleBuilder state per instrument (see agents.candles).",
    )

    @app.agent(ticks, name=f"{app_id}.build_candles")
    async def build_candles(stream: faust.StreamT[bytes]) -> None:
        batches = message_batches(stream, settings.worker.tick_batch_messages, settings.worker.batch_wait_s)
        async for messages in batches:
            await _apply_tick_batch(messages, builders, outputs_to, dlq, grace_ms, stats)
