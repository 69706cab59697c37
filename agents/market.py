"""Tick messages into closed candles, bad input into dead letters: the market half of `trade_paper`.

`market_step` is a thin adapter around `agents.candles.CandleBuilder`: it decodes one `market.ticks` message and
applies it to the instrument's builder state, returning the candles that closed, the rejected input as dead
letters and the new state, which records the offset of the last batch applied. `trade_paper` (agents.trading)
publishes the candles to `market.candles.<tf>`, trades them in the same batch, and writes the builder's state to
its table once the outputs are confirmed, together with the trading states: a crash makes Kafka redeliver at most
messages the restored builder has already applied, which it recognises by offset and skips, or whose candles it
builds again (the same ids) for strategies that have already seen them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from faust.types.tuples import Message

from agents.candles import BatchResult, CandleBuilder
from agents.deadletter import (
    BAD_KEY,
    LATE_TICK,
    decode_error_code,
    letter_for_message,
)
from streams.codecs import InvalidEvent, decode, encode
from streams.records import SCHEMA_VERSION, Candle, DeadLetter, TickBatch, instrument_key, stable_id

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


def market_step(message: Message, state: dict[str, Any] | None, grace_ms: int) -> TickStep:
    """`process_tick_message`, with a bug in it costing one dead letter, not the stream."""
    try:
        return process_tick_message(message, state, grace_ms)
    except Exception as exc:
        logger.exception("processing %s[%d]@%d failed", message.topic, message.partition, message.offset)
        return TickStep(letters=[letter_for_message(message, PROCESSING_ERROR, repr(exc))])
