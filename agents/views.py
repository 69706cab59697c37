"""Replicated views: every worker reads a small topic whole (no consumer group) and keeps its latest records.

Configurations, operator commands and portfolio snapshots must be known to every worker, whichever partitions it
owns. Each worker therefore reads those topics from the beginning into memory and follows them. The view is
rebuilt from the log on every start, so it is never stale state (unlike a module global an agent mutates).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.codecs import InvalidEvent, decode
from streams.records import Event
from streams.topics import TOPICS_BY_NAME, topic_name
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Event)
RETRY_S = 2.0


class TopicView(Generic[R]):
    """Calls `on_record` for every record of one topic, in log order per partition, from the beginning on.

    `catch_up` reads what the topic holds before the worker starts consuming, so agents decide with a complete view
    from their first message; `run` then follows new records from there (and, after a lost connection, from where
    it stopped). `on_invalid` gets the raw message and the reason for a record that does not decode, so the owner
    can dead-letter it; the view goes on.
    """

    def __init__(self, settings: Settings, topic: str, record_type: type[R], on_record: Callable[[R, Any], None],
                 on_invalid: Callable[[Any, str], None] | None = None) -> None:
        self.name = topic_name(settings.kafka.topic_prefix, topic)
        self._partitions = TOPICS_BY_NAME[topic].partition_count(settings.kafka.partitions)
        self._settings = settings
        self._record_type = record_type
        self._on_record = on_record
        self._on_invalid = on_invalid
        self._next: dict[int, int] = dict.fromkeys(range(self._partitions), 0)

    async def catch_up(self, timeout_s: float = 120.0) -> int:
        """Read the topic up to the end it has now; returns how many records were read."""
        consumer = self._consumer()
        await consumer.start()
        read = 0
        try:
            if self.name not in await consumer.topics():
                return 0
            tps = await self._assign(consumer)
            ends = await consumer.end_offsets(tps)
            deadline = asyncio.get_running_loop().time() + timeout_s
            while any(self._next[tp.partition] < ends[tp] for tp in tps):
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"reading {self.name} took longer than {timeout_s:.0f} s")
                read += await self._poll(consumer)
                for tp in tps:  # a compacted topic may hold no record at end - 1: trust the position there
                    if self._next[tp.partition] < ends[tp]:
                        self._next[tp.partition] = max(self._next[tp.partition], await consumer.position(tp))
        finally:
            await consumer.stop()
        logger.info(f"view of {self.name}: {read} records read")  # formatted: one line per view
        return read

    async def run(self) -> None:
        """Follow the topic until cancelled, reconnecting after broker errors."""
        while True:
            consumer = self._consumer()
            try:
                await consumer.start()
                while self.name not in await consumer.topics():  # the topic may be created after the worker starts
                    await asyncio.sleep(0.5)
                await self._assign(consumer)
                while True:
                    await self._poll(consumer)
            except asyncio.CancelledError:
                raise
            except (KafkaError, AssertionError, OSError) as exc:  # aiokafka asserts on a vanished assignment
                logger.warning("view of %s lost the broker (%r); reconnecting in %.0fs", self.name, exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
            finally:
                await consumer.stop()

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=self._settings.kafka.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        tps = [TopicPartition(self.name, p) for p in range(self._partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, self._next[tp.partition])
        return tps

    async def _poll(self, consumer: AIOKafkaConsumer) -> int:
        batches = await consumer.getmany(timeout_ms=200)
        count = 0
        for messages in batches.values():
            for message in messages:
                self._take(message)
                self._next[message.partition] = message.offset + 1
                count += 1
        return count

    def _take(self, message: Any) -> None:
        try:
            record = decode(self._record_type, message.value)
        except InvalidEvent as exc:
            logger.warning("%s[%d]@%d does not decode: %s", message.topic, message.partition, message.offset, exc)
            if self._on_invalid is not None:
                self._on_invalid(message, str(exc))
            return
        self._on_record(record, message)
