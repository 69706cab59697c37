"""`agents.batches.ArrivalBuffer`: batches form as items arrive, wait at most their window, and never exceed size."""

from __future__ import annotations

import asyncio

import pytest

from agents.batches import ArrivalBuffer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_an_empty_buffer_has_nothing_due() -> None:
    buffer: ArrivalBuffer[str] = ArrivalBuffer(10, 0.0)
    assert buffer.due_in() is None
    assert not buffer.arrived.is_set()
    assert buffer.take() == []


def test_without_a_window_an_arrival_is_due_at_once() -> None:
    async def scenario() -> None:
        buffer: ArrivalBuffer[str] = ArrivalBuffer(10, 0.0, Clock())
        await buffer.add("a")
        assert buffer.arrived.is_set()
        assert buffer.due_in() == 0.0
        assert buffer.take() == ["a"]
        assert buffer.due_in() is None
        assert not buffer.arrived.is_set()

    asyncio.run(scenario())


def test_the_window_counts_from_the_first_arrival_not_from_the_request() -> None:
    async def scenario() -> None:
        clock = Clock()
        buffer: ArrivalBuffer[str] = ArrivalBuffer(10, 0.05, clock)
        await buffer.add("a")
        clock.now += 0.03
        await buffer.add("b")
        assert buffer.due_in() == pytest.approx(0.02)
        clock.now += 0.04  # the agent was busy past the window: the batch is due as soon as it asks
        assert buffer.due_in() == pytest.approx(-0.02)
        assert buffer.take() == ["a", "b"]
        clock.now += 1.0
        await buffer.add("c")  # a new batch: its own window, from its own first arrival
        assert buffer.due_in() == pytest.approx(0.05)

    asyncio.run(scenario())


def test_a_full_buffer_is_due_at_once_and_holds_the_next_arrival_back_until_taken() -> None:
    async def scenario() -> None:
        buffer: ArrivalBuffer[int] = ArrivalBuffer(3, 60.0, Clock())
        await buffer.add(1)
        await buffer.add(2)
        third = asyncio.ensure_future(buffer.add(3))
        await settle()
        assert not third.done()  # waits for room: a batch never exceeds its size
        assert buffer.full.is_set()
        assert buffer.due_in() == 0.0
        assert buffer.take() == [1, 2, 3]
        await asyncio.wait_for(third, timeout=1.0)
        assert not buffer.full.is_set()
        await buffer.add(4)
        assert buffer.take() == [4]

    asyncio.run(scenario())


def test_a_batch_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ArrivalBuffer(0, 0.0)
