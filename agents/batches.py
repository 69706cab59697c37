"""Batches of messages, in offset order without holes, acknowledged only once the agent has handled them.

Two guarantees Faust's own batching (`take_events`) does not give, and every agent relies on:

- **Acknowledged after handling.** `take_events` acknowledges its buffered events in a `finally`, so a batch
  interrupted by a stop (the agent's task cancelled mid-batch on SIGTERM) is acknowledged, and committed on
  shutdown, although its results were never published or written. Here a batch is acknowledged only when the loop
  body asks for the next one; an interrupted batch is not committed and is redelivered. The batches come from a
  `noack()` clone of the stream, because `noack_take` restores the stream's own acknowledgement setting when it
  ends, and a self-acknowledging stream would, between the agent's cancellation and the consumer's final commit,
  acknowledge the messages still queued for it without anyone having handled them.
- **No holes.** Around a restart or rebalance Faust can drop fetched messages from its stream buffers (it clears
  them when it pauses the flow) and go on delivering later offsets of the same partition; Kafka would then never
  redeliver the dropped ones once later offsets are committed. `PartitionSequence` notices a message whose offset
  is past the next one expected, holds it back unacknowledged and seeks the partition back to the first missing
  offset, so the missing messages are fetched again and everything is handled in order. If they have not arrived
  after `HOLE_WAIT_S` (the broker was away, say) it seeks again, unless retention has deleted them meanwhile: a
  hole below the partition's earliest offset is accepted and logged as an error. (The agents read no compacted
  or transactional topic, whose offsets have holes by design.) A hole at the end of what was fetched shows no
  later offset: a watchdog notices a partition the consumer has read past the next expected offset while nothing
  arrives and the agent is idle, and seeks it back the same way (`STALL_S`).

A body can make its batch's acknowledgement wait for futures as well (`MessageBatch.acknowledge_after`): the
records that save its states, still on their way to the broker while the agent goes on with the next batch. A
batch whose futures fail stays unacknowledged, to be redelivered.

Messages at or below an offset already handled in this process are redeliveries: they are acknowledged and not
yielded. The agents' own state (offsets, bars or event ids) would recognise them too; this only saves the work.

Batches form as messages arrive (`ArrivalBuffer`), not on Faust's `noack_take` clock: that one starts its wait each
time the agent asks for a batch, so every batch waited the whole of it, even one whose messages had arrived while
the agent was busy with the previous batch. Here a batch waits at most `within_s` after its first message arrived
(trade_paper's wait is 0: a message is handed over as soon as the agent is free), and messages that queued while
the agent worked go to it at once, together: under load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import faust
from faust.types import TP, EventT
from faust.types.tuples import Message

logger = logging.getLogger(__name__)

HOLE_WAIT_S = 10.0
"""How long a partition waits for missing offsets before it accepts that the broker does not have them."""
STALL_S = 5.0
"""How long an idle agent waits for a partition the consumer has read past its next expected offset."""


T = TypeVar("T")


class ArrivalBuffer(Generic[T]):
    """Items in arrival order, handed out in batches of up to `size`: a batch is due once it is full or `within_s`
    after its first item arrived, and stays due until it is taken. No I/O; the clock can be passed in."""

    def __init__(self, size: int, within_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1:
            raise ValueError("a batch holds at least one item")
        self._size = size
        self._within_s = within_s
        self._clock = clock
        self._items: list[T] = []
        self._first_arrival = 0.0
        self.arrived = asyncio.Event()
        """Set while the buffer holds anything."""
        self.full = asyncio.Event()
        """Set while the buffer holds `size` items; `add` then waits until they are taken."""
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._items)

    async def add(self, item: T) -> None:
        """Buffer `item`; returns once there is room for the next one (the buffer is not full)."""
        self._items.append(item)
        if len(self._items) == 1:
            self._first_arrival = self._clock()
            self.arrived.set()
        if len(self._items) >= self._size:
            self.full.set()
            self._room.clear()
            await self._room.wait()

    def due_in(self) -> float | None:
        """Seconds until the batch is due (0 or less: it is), None while the buffer is empty."""
        if not self._items:
            return None
        if len(self._items) >= self._size:
            return 0.0
        return self._within_s - (self._clock() - self._first_arrival)

    def take(self) -> list[T]:
        """Everything buffered, oldest first; the buffer is empty and has room again."""
        items, self._items = self._items, []
        self.arrived.clear()
        self.full.clear()
        self._room.set()
        return items


@dataclass
class _Cursor:
    generation: int
    next_offset: int | None
    seek_started: float | None = None


class PartitionSequence:
    """Decides, message by message, whether a partition's messages arrive in order (no I/O; the caller passes the time).

    `committed` gives a partition's committed offset (where consumption resumes after an assignment), the first
    expected offset; a new consumer generation (a rebalance) starts every partition afresh from it.
    """

    ACCEPT = "accept"
    REDELIVERED = "redelivered"
    HOLD = "hold"
    SEEK = "seek"
    STILL_MISSING = "still_missing"

    def __init__(self, committed: Callable[[TP], int | None], hole_wait_s: float = HOLE_WAIT_S) -> None:
        self._committed = committed
        self._hole_wait_s = hole_wait_s
        self._cursors: dict[TP, _Cursor] = {}

    def expected(self, tp: TP) -> int | None:
        cursor = self._cursors.get(tp)
        return cursor.next_offset if cursor is not None else None

    def expected_offsets(self, generation: int) -> dict[TP, int]:
        """The next expected offset of every partition seen in consumer generation `generation`."""
        return {tp: cursor.next_offset for tp, cursor in self._cursors.items()
                if cursor.generation == generation and cursor.next_offset is not None}

    def classify(self, tp: TP, offset: int, generation: int, now: float) -> str:
        """ACCEPT (handle it), REDELIVERED (ack and skip), SEEK (hole found: seek back, hold it), HOLD (hold it,
        the seek is under way) or STILL_MISSING (hold it: the seek has waited `hole_wait_s`; seek again or accept).
        """
        cursor = self._cursors.get(tp)
        if cursor is None or cursor.generation != generation:
            cursor = self._cursors[tp] = _Cursor(generation, self._committed(tp))
        if cursor.next_offset is None or offset == cursor.next_offset:
            return self._accept(cursor, offset)
        if offset < cursor.next_offset:
            return self.REDELIVERED
        if cursor.seek_started is None:
            cursor.seek_started = now
            return self.SEEK
        if now - cursor.seek_started >= self._hole_wait_s:
            cursor.seek_started = now
            return self.STILL_MISSING
        return self.HOLD

    def seek_failed(self, tp: TP) -> None:
        """The seek back did not happen: the next message past the hole asks for it again."""
        self._cursors[tp].seek_started = None

    def accept_hole(self, tp: TP, offset: int) -> None:
        """The missing offsets no longer exist (retention): go on from `offset`, which is handled now."""
        self._accept(self._cursors[tp], offset)

    def _accept(self, cursor: _Cursor, offset: int) -> str:
        cursor.next_offset = offset + 1
        cursor.seek_started = None
        return self.ACCEPT


class MessageBatch(list[Message]):
    """A batch's messages, in order; acknowledged once the body has returned and every future passed to
    `acknowledge_after` has resolved."""

    def __init__(self, messages: Iterable[Message]) -> None:
        super().__init__(messages)
        self.confirmations: list[asyncio.Future[Any]] = []

    def acknowledge_after(self, futures: Iterable[asyncio.Future[Any]]) -> None:
        self.confirmations += futures


@dataclass
class _Activity:
    in_body: bool = False
    last_arrival: dict[TP, float] = field(default_factory=dict)


async def message_batches(stream: faust.StreamT[bytes], size: int, within_s: float) -> AsyncIterator[MessageBatch]:
    """Up to `size` messages at a time, in order, as they arrive (a partial batch waits at most `within_s` after its
    first message); acknowledged after their batch's body and its confirmations."""
    manual = stream.noack()
    app = stream.app
    sequence = PartitionSequence(lambda tp: app.consumer._committed_offset.get(tp))
    arrivals: ArrivalBuffer[EventT] = ArrivalBuffer(size, within_s)
    activity = _Activity()
    watchdog = asyncio.ensure_future(_reseek_stalled_partitions(manual, sequence, activity, arrivals))
    acknowledging: set[asyncio.Future[None]] = set()
    try:
        async for events in _batches(manual, arrivals):
            accepted = []
            now = time.monotonic()
            for event in events:
                message = event.message
                activity.last_arrival[message.tp] = now
                verdict = sequence.classify(message.tp, message.offset, app.consumer_generation_id, now)
                if verdict == PartitionSequence.ACCEPT:
                    accepted.append(event)
                elif verdict == PartitionSequence.REDELIVERED:
                    await manual.ack(event)
                elif verdict == PartitionSequence.STILL_MISSING and await _deleted_by_retention(app, message):
                    sequence.accept_hole(message.tp, message.offset)
                    accepted.append(event)
                elif verdict in (PartitionSequence.SEEK, PartitionSequence.STILL_MISSING):
                    missing = sequence.expected(message.tp)
                    assert missing is not None
                    logger.warning("%s[%d]: offset %d arrived before %d..%d; seeking back to fetch them again",
                                   message.topic, message.partition, message.offset, missing, message.offset - 1)
                    if not await _seek(app, message.tp, missing):
                        sequence.seek_failed(message.tp)
            if not accepted:
                continue
            batch = MessageBatch(event.message for event in accepted)
            activity.in_body = True
            yield batch
            activity.in_body = False
            if batch.confirmations:
                acknowledgement = asyncio.ensure_future(_acknowledge_when_confirmed(manual, accepted, batch))
                acknowledging.add(acknowledgement)
                acknowledgement.add_done_callback(acknowledging.discard)
            else:
                for event in accepted:
                    await manual.ack(event)
    finally:
        watchdog.cancel()
        for acknowledgement in acknowledging:  # unacknowledged, so redelivered: the states recognise them
            acknowledgement.cancel()


async def _acknowledge_when_confirmed(stream: faust.StreamT[bytes], events: list[EventT], batch: MessageBatch) -> None:
    """Acknowledge `events` once `batch`'s confirmations resolved; a failed one leaves them unacknowledged (the
    agent's producer raises it to the agent too)."""
    try:
        for future in batch.confirmations:
            await future
    except Exception as exc:
        first = batch[0]
        logger.warning("%s[%d]@%d: a batch of %d stays unacknowledged, to be redelivered: %r", first.topic,
                       first.partition, first.offset, len(batch), exc)
        return
    for event in events:
        await stream.ack(event)


async def _batches(stream: faust.StreamT[bytes], buffer: ArrivalBuffer[EventT]) -> AsyncIterator[list[EventT]]:
    """The stream's events, unacknowledged, in the batches `buffer` forms as they arrive."""

    async def collect(value: bytes) -> bytes:
        event = stream.current_event
        if event is None:
            raise RuntimeError("a stream value arrived without its event")
        await buffer.add(event)
        return value

    # As `noack_take` does: a processor fills the buffer while the stream is drained in the background.
    stream.add_processor(collect)
    stream._enable_passive(aiter(stream.channel))  # type: ignore[attr-defined]
    try:
        while not stream.should_stop:
            due_in = buffer.due_in()
            if due_in is None:
                await stream.wait(buffer.arrived)  # returns on a stop too
            elif due_in > 0:
                await stream.wait(buffer.full, timeout=due_in)
            else:
                yield buffer.take()
    finally:
        stream._processors.remove(collect)  # type: ignore[attr-defined]


async def _reseek_stalled_partitions(stream: faust.StreamT[bytes], sequence: PartitionSequence,
                                     activity: _Activity, arrivals: ArrivalBuffer[EventT]) -> None:
    """Seek back a partition read past the next expected offset while nothing arrives (see module docstring)."""
    app = stream.app
    while True:
        await asyncio.sleep(STALL_S / 2)
        if (activity.in_body or arrivals or not stream.channel.queue.empty() or app.in_recovery
                or app.rebalancing):
            continue
        now = time.monotonic()
        for tp, expected in sequence.expected_offsets(app.consumer_generation_id).items():
            read = app.consumer._read_offset.get(tp)
            if read is None or read < expected or now - activity.last_arrival.get(tp, now) < STALL_S:
                continue
            logger.warning("%s[%d]: read up to %d but nothing after %d arrived; seeking back to fetch it again",
                           tp.topic, tp.partition, read, expected - 1)
            activity.last_arrival[tp] = now
            await _seek(app, tp, expected)


async def _seek(app: faust.App, tp: TP, offset: int) -> bool:
    """Seek `tp` back to `offset` on the consumer's own thread; False (logged) when the broker is unavailable."""
    try:
        await app.consumer.seek_wait({tp: offset})
    except Exception as exc:  # a broker away or a rebalance under way: the caller tries again later
        logger.warning("%s[%d]: seeking back to %d failed, will retry: %r", tp.topic, tp.partition, offset, exc)
        return False
    return True


async def _deleted_by_retention(app: faust.App, message: Message) -> bool:
    """Whether the offsets missing before `message` are below its partition's earliest offset (deleted)."""
    try:
        earliest = (await app.consumer.earliest_offsets(message.tp)).get(message.tp)
    except Exception as exc:  # unknown: seek again rather than accept a hole
        logger.warning("%s[%d]: earliest offset unavailable: %r", message.topic, message.partition, exc)
        return False
    if earliest is None or earliest < message.offset:
        return False
    logger.error("%s[%d]: offsets before %d were deleted by retention before they were handled; going on from %d",
                 message.topic, message.partition, earliest, message.offset)
    return True
