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

    `on_invalid` gets the raw message and the reason for a record that does not decode, so the owner can
    dead-letter it; the view goes on. `ready` is set once the view has read what the topic held when it started.
    """

    def __init__(self, settings: Settings, topic: str, record_type: type[R], on_record: Callable[[R, Any], None],
                 on_invalid: Callable[[Any, str], None] | None = None) -> None:
        self.name = topic_name(settings.kafka.topic_prefix, topic)
        self._partitions = TOPICS_BY_NAME[topic].partition_count(settings.kafka.partitions)
        self._settings = settings
        self._record_type = record_type
        self._on_record = on_record
        self._on_invalid = on_invalid
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Follow the topic until cancelled, reconnecting after broker errors."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except (KafkaError, AssertionError, OSError) as exc:  # aiokafka asserts on a vanished assignment
                logger.warning("view of %s lost the broker (%r); reconnecting in %.0fs", self.name, exc, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self._settings.kafka.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            while self.name not in await consumer.topics():  # the topic may be created after this worker starts
                await asyncio.sleep(0.5)
            tps = [TopicPartition(self.name, p) for p in range(self._partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            behind = {tp for tp in tps if ends[tp] > 0}
            while True:
                if behind:
                    behind = {tp for tp in behind if not await self._caught_up(consumer, tp, ends[tp])}
                    if not behind:
                        logger.info(f"view of {self.name} ready ({sum(ends.values())} records)")  # one per view
                if not behind:
                    self.ready.set()
                batches = await consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    for message in messages:
                        self._take(message)
        finally:
            await consumer.stop()

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
        """Whether the next offset to read is at `end` (a compacted topic may hold no record at end - 1)."""
        try:
            return await asyncio.wait_for(consumer.position(tp), timeout=1.0) >= end
        except TimeoutError:
            return False

    def _take(self, message: Any) -> None:
        try:
            record = decode(self._record_type, message.value)
        except InvalidEvent as exc:
            logger.warning("%s[%d]@%d does not decode: %s", message.topic, message.partition, message.offset, exc)
            if self._on_invalid is not None:
                self._on_invalid(message, str(exc))
            return
        self._on_record(record, message)
