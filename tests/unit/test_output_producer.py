"""A worker's output producer once the worker is stopping: a late batch waits to be cancelled, it does not crash."""

from __future__ import annotations

import asyncio

import pytest

from agents.output import OutputProducer
from streams.records import SCHEMA_VERSION, LogEvent
from streams.topics import LOGS
from tradepulse.settings import Settings


def test_a_batch_that_reaches_a_closed_producer_waits_until_it_is_cancelled() -> None:
    event = LogEvent(event_id="e1", ts=1, schema_version=SCHEMA_VERSION, level="INFO", message="m", logger="t")

    async def late_batch() -> None:
        producer = OutputProducer(Settings())
        await producer.close()
        assert await producer.publish([]) == []  # nothing to publish needs no producer
        task = asyncio.ensure_future(producer.publish([(LOGS, "k", event)]))
        await asyncio.sleep(0.2)
        assert not task.done(), "a late batch must neither publish nor fail: its agent would be restarted"
        task.cancel()  # what stopping the agent does
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(late_batch())
