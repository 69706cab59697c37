"""`Confirmations` runs an agent's confirmation work in order in the background, bounded, and hands a failure
back to the agent."""

from __future__ import annotations

import asyncio

import pytest

from agents.batches import Confirmations


def test_work_runs_in_the_order_handed_over_while_the_agent_goes_on() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        confirmations = Confirmations(depth=4)
        done: list[str] = []
        agent: list[str] = []
        release = asyncio.Event()

        async def slow() -> None:
            await release.wait()
            done.append("first")

        async def quick(name: str) -> None:
            done.append(name)

        await confirmations.then(slow)
        agent.append("handed over the first batch")
        await confirmations.then(lambda: quick("second"))
        agent.append("handed over the second batch")
        await asyncio.sleep(0.01)
        assert done == []  # the second waits for the first, which waits for the broker
        release.set()
        await asyncio.sleep(0.01)
        confirmations.cancel()
        return done, agent

    done, agent = asyncio.run(scenario())
    assert done == ["first", "second"]
    assert agent == ["handed over the first batch", "handed over the second batch"]


def test_the_agent_waits_when_depth_pieces_are_unconfirmed() -> None:
    async def scenario() -> bool:
        confirmations = Confirmations(depth=1)
        release = asyncio.Event()

        async def blocked() -> None:
            await release.wait()

        await confirmations.then(blocked)  # taken by the background task
        await confirmations.then(blocked)  # waits in the queue: depth 1 is full now
        third = asyncio.ensure_future(confirmations.then(blocked))
        await asyncio.sleep(0.01)
        waited = not third.done()
        release.set()
        await asyncio.wait_for(third, 1.0)
        confirmations.cancel()
        return waited

    assert asyncio.run(scenario())


def test_a_failure_drops_the_rest_and_is_raised_by_the_next_hand_over() -> None:
    async def scenario() -> list[str]:
        confirmations = Confirmations()
        ran: list[str] = []

        async def failing() -> None:
            raise ConnectionError("broker away")

        async def acknowledge() -> None:
            ran.append("acknowledged")

        await confirmations.then(failing)
        await confirmations.then(acknowledge)
        await asyncio.sleep(0.01)
        with pytest.raises(ConnectionError, match="broker away"):
            await confirmations.then(acknowledge)
        confirmations.cancel()
        return ran

    assert asyncio.run(scenario()) == []  # the failed batch's acknowledgement was dropped: it is redelivered


def test_cancel_drops_what_is_not_confirmed() -> None:
    async def scenario() -> list[str]:
        confirmations = Confirmations()
        ran: list[str] = []

        async def never() -> None:
            await asyncio.Event().wait()

        async def acknowledge() -> None:
            ran.append("acknowledged")

        await confirmations.then(never)
        await confirmations.then(acknowledge)
        await asyncio.sleep(0.01)
        confirmations.cancel()
        await asyncio.sleep(0.01)
        return ran

    assert asyncio.run(scenario()) == []
