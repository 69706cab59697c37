"""A batch whose states are still on their way to the broker is acknowledged only once the broker has them."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types.tuples import Message

from agents.batches import MessageBatch, _acknowledge_when_confirmed


class RecordingStream:
    """What `_acknowledge_when_confirmed` needs of a stream: `ack`."""

    def __init__(self) -> None:
        self.acked: list[Any] = []

    async def ack(self, event: Any) -> bool:
        self.acked.append(event)
        return True


def message(offset: int) -> Message:
    return Message("market.ticks", 0, offset, 0.0, 0, None, b"k", b"v", None)


def test_events_are_acknowledged_once_every_confirmation_resolved() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        stream = RecordingStream()
        batch = MessageBatch([message(7), message(8)])
        first, second = loop.create_future(), loop.create_future()
        batch.acknowledge_after([first, second])
        acknowledging = asyncio.ensure_future(_acknowledge_when_confirmed(stream, ["e7", "e8"], batch))
        first.set_result(None)
        await asyncio.sleep(0.01)
        assert stream.acked == [], "one record is still unconfirmed"
        second.set_result(None)
        await acknowledging
        assert stream.acked == ["e7", "e8"]

    asyncio.run(scenario())


def test_a_failed_confirmation_leaves_the_batch_unacknowledged(caplog: Any) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        stream = RecordingStream()
        batch = MessageBatch([message(3)])
        failed = loop.create_future()
        failed.set_exception(ConnectionError("broker away"))
        batch.acknowledge_after([failed])
        await _acknowledge_when_confirmed(stream, ["e3"], batch)
        assert stream.acked == []

    asyncio.run(scenario())
    assert "market.ticks[0]@3: a batch of 1 stays unacknowledged" in caplog.text


def test_a_batch_is_a_list_of_its_messages_with_no_confirmations_to_wait_for() -> None:
    batch = MessageBatch([message(1), message(2)])
    assert [m.offset for m in batch] == [1, 2]
    assert batch.confirmations == []
