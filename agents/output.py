"""The agents' outputs go to the broker through a plain aiokafka producer, not Faust's `topic.send`.

Faust wraps every record it sends in a future message with callbacks and sensor hooks: about 200 µs of the event
loop per record here, against about 15 µs for aiokafka's own `send`. When a bar closes, every configuration on
the instrument emits its signal, its orders and its fills at once, so that per-record cost, paid four times
along the chain, was most of the tick-to-fill latency. Records keep their keys and the same default partitioner,
so they land on the same partitions as before; each batch's outputs are confirmed by the broker before the
agent writes its state and acknowledges its input (`confirm_batch`). The states' changelog records take a second
producer of the agent, serialised by the table's changelog topic exactly as Faust's `send_changelog` would (the
in-memory store keeps no persisted offsets, so Faust's callback on a sent changelog record has nothing to do): the
input waits for them, the agent's next batch does not, and its first outputs do not queue behind them. Dead
letters stay on Faust's producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust

from streams.producer import LogProducer
from streams.records import Event
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

SENDER_TURNS = 3
"""Turns of the event loop aiokafka's sender takes to put queued records on the wire: it wakes up, drains them into
a produce task, and that task writes the request."""
OUTPUTS_LANE = "outputs"
CHANGELOGS_LANE = "changelogs"
Output = tuple[str, str, Event]
"""`(documented topic, key, record)`."""


class OutputProducer:
    """A worker's producer for agent outputs, started on first use inside the worker's event loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producers: dict[str, LogProducer] = {}
        self._starting = asyncio.Lock()
        self._closed = False
        self._changelogs: list[asyncio.Future[Any]] = []

    async def publish(self, outputs: Sequence[Output]) -> list[asyncio.Future[Any]]:
        """Queue `outputs` for the broker; each future resolves once the broker has its record."""
        if not outputs:
            return []
        producer = await self._started(OUTPUTS_LANE)
        return await producer.queue(outputs)

    async def publish_now(self, outputs: Sequence[Output]) -> list[asyncio.Future[Any]]:
        """`publish`, then give the producer the event loop until its request is on the wire: the caller has more
        work before its next await, and the records should not wait for it."""
        published = await self.publish(outputs)
        if published:
            for _ in range(SENDER_TURNS):
                await asyncio.sleep(0)
        return published

    async def write_changelog(self, table: faust.Table, partition: int, key: str, state: Any) -> asyncio.Future[Any]:
        """Queue `table`'s changelog record of `key` for `partition`; the future resolves once the broker has it."""
        topic = table.changelog_topic
        key_bytes, _ = topic.prepare_key(key, table.key_serializer)
        value_bytes, _ = topic.prepare_value(state, table.value_serializer)
        producer = await self._started(CHANGELOGS_LANE)
        written = await producer.queue_raw(topic.get_topic_name(), key_bytes, value_bytes, partition)
        self._changelogs.append(written)
        return written

    async def changelogs_confirmed(self) -> None:
        """Wait until the broker has every changelog record written so far; raises if one failed."""
        written, self._changelogs = self._changelogs, []
        for future in written:
            await future

    async def _started(self, lane: str) -> LogProducer:
        producer = self._producers.get(lane)
        return producer if producer is not None else await self._start(lane)

    async def _start(self, lane: str) -> LogProducer:
        """`lane`'s producer; once the worker is stopping, a future that never resolves.

        A batch that reaches the producer after it closed waits there until Faust stops its agent, so the batch
        ends cancelled: unacknowledged and redelivered after the restart. Raising instead would crash the agent,
        and its supervisor would restart it in the middle of the shutdown, which can then hang."""
        async with self._starting:
            if not self._closed:
                if lane not in self._producers:
                    self._producers[lane] = await LogProducer(self._settings, linger_ms=0).__aenter__()
                return self._producers[lane]
        logger.info("the worker is stopping: a batch is left unacknowledged, to be redelivered")
        never: asyncio.Future[LogProducer] = asyncio.get_running_loop().create_future()
        return await never

    async def close(self) -> None:
        async with self._starting:
            self._closed = True
            producers, self._producers = self._producers, {}
        for producer in producers.values():
            await producer.__aexit__(None, None, None)


States = dict[str, tuple[int, Any]]
"""Key -> (the partition of the message it came from, its new state)."""


async def confirm_batch(outputs_to: OutputProducer, published: list[asyncio.Future[Any]],
                        changes: Sequence[tuple[faust.Table, States]]) -> list[asyncio.Future[Any]]:
    """Wait until the broker has a batch's outputs, then make the new states the tables' and write them to the
    changelogs (each key once, to the changelog partition of its message, as `table[key] = state` would inside a
    one-message stream), all tables at once. Returns the changelog records' futures: the batch's input is
    acknowledged once all of them resolve (`MessageBatch.acknowledge_after`), so the caller's crash recovery does
    not depend on which of them reached the broker first. The previous batch's records are confirmed before
    these are written: one batch's records in flight at a time, and a failed one raises here."""
    for future in published:
        await future
    await outputs_to.changelogs_confirmed()
    written = []
    for table, states in changes:
        for key, (partition, state) in states.items():
            written.append(await outputs_to.write_changelog(table, partition, key, state))
            table.data[key] = state
    return written


def output_producer(app: faust.App, settings: Settings) -> OutputProducer:
    """A producer for one of `app`'s agents, closed when the worker shuts down (after its consumer has stopped).

    One per agent: aiokafka keeps one produce request in flight per broker and producer, so agents sharing a
    producer would wait for each other's confirmations."""
    producer = OutputProducer(settings)

    @app.on_before_shutdown.connect
    async def close_outputs(sender: faust.App, **kwargs: object) -> None:
        await producer.close()

    return producer
