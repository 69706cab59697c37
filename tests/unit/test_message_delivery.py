"""The consumer's delivery race (`streams.app.first_without_tasks`): a delivery that does not wait wins without a
task; one that waits goes on from where it stopped, and a suspension of the flow still cuts it short."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from mode import Service

from streams.app import create_app, first_without_tasks
from tradepulse.settings import Settings


class Consumer(Service):
    """Stands for Faust's consumer: the race needs only a service's events, so it is never started."""


def run_counting_tasks(scenario: Coroutine[Any, Any, Any]) -> tuple[Any, int]:
    """Run `scenario` on a fresh loop; return its result and how many tasks were created besides its own."""
    created = []

    def count(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any) -> asyncio.Task[Any]:
        created.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop = asyncio.new_event_loop()
    loop.set_task_factory(count)
    try:
        return loop.run_until_complete(scenario), len(created) - 1
    finally:
        loop.close()


def test_a_delivery_that_does_not_wait_wins_without_a_task_and_the_suspension_is_never_started() -> None:
    delivered: list[str] = []

    async def deliver() -> str:
        delivered.append("message")
        return "delivered"

    async def scenario() -> tuple[Any, str]:
        suspension = asyncio.Event().wait()
        results = await first_without_tasks(Consumer())(deliver(), suspension)
        return results, inspect.getcoroutinestate(suspension)

    (results, suspension_state), tasks = run_counting_tasks(scenario())
    assert results.results == ["delivered"] and not results.stopped
    assert delivered == ["message"]
    assert tasks == 0
    assert suspension_state == inspect.CORO_CLOSED


def test_a_delivery_that_waits_goes_on_from_where_it_stopped() -> None:
    steps: list[str] = []

    async def scenario() -> Any:
        room = asyncio.get_running_loop().create_future()

        async def deliver() -> str:
            steps.append("started")
            value = await room
            steps.append(f"resumed with {value}")
            return "delivered"

        asyncio.get_running_loop().call_later(0.01, room.set_result, "room")
        return await first_without_tasks(Consumer())(deliver(), asyncio.Event().wait())

    results, tasks = run_counting_tasks(scenario())
    assert results.results == ["delivered"] and not results.stopped
    assert steps == ["started", "resumed with room"], "each part of the delivery ran once"
    assert tasks > 0, "a delivery that waits goes through Faust's race"


def test_a_suspension_cuts_short_a_delivery_that_waits() -> None:
    steps: list[str] = []

    async def scenario() -> Any:
        suspended = asyncio.Event()
        never = asyncio.get_running_loop().create_future()

        async def deliver() -> None:
            steps.append("started")
            try:
                await never
            except asyncio.CancelledError:
                steps.append("cancelled")
                raise

        asyncio.get_running_loop().call_later(0.01, suspended.set)
        results = await first_without_tasks(Consumer())(deliver(), suspended.wait())
        await asyncio.sleep(0)  # the losing delivery's cancellation runs
        return results

    results, _ = run_counting_tasks(scenario())
    assert results.results == [True], "the suspension won"
    assert steps == ["started", "cancelled"]


def test_a_delivery_that_fails_at_once_raises_and_the_suspension_is_closed() -> None:
    async def deliver() -> None:
        raise ValueError("undecodable")

    async def scenario() -> str:
        suspension = asyncio.Event().wait()
        with pytest.raises(ValueError, match="undecodable"):
            await first_without_tasks(Consumer())(deliver(), suspension)
        return inspect.getcoroutinestate(suspension)

    state, _ = run_counting_tasks(scenario())
    assert state == inspect.CORO_CLOSED


def test_a_stopping_consumer_goes_through_the_race_as_before() -> None:
    delivered: list[str] = []

    async def deliver() -> None:
        delivered.append("message")

    async def scenario() -> Any:
        consumer = Consumer()
        await consumer.stop()
        return await first_without_tasks(consumer)(deliver(), asyncio.Event().wait())

    results, tasks = run_counting_tasks(scenario())
    assert results.stopped, "Faust's race reports the stop"
    assert tasks > 0


def test_the_apps_consumer_delivers_without_tasks(tmp_path: Path) -> None:
    consumer = create_app(Settings(data_dir=tmp_path)).consumer
    assert consumer.wait_first.__qualname__ == first_without_tasks(consumer).__qualname__
