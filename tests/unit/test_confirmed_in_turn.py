"""Batches confirmed in the background, in order: states held until their batch's outputs and every earlier batch's
are confirmed, a bounded number left unconfirmed, a failure raised and never followed by a later batch's states.
Also the output producer's lanes: each topic's records on one lane, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from agents.output import EARLY_LANE, OUTPUTS_LANE, ConfirmedInTurn, Output, OutputProducer
from streams.records import SCHEMA_VERSION, LogEvent
from streams.topics import FILLS, LOGS, SIGNALS
from tradepulse.settings import Settings


class Table:
    """What ConfirmedInTurn and confirm_batch use of a Faust table."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)


class ChangelogRecorder(OutputProducer):
    """An output producer whose changelog records are recorded instead of sent (confirmed at once)."""

    def __init__(self) -> None:
        super().__init__(Settings())
        self.written: list[tuple[str, str, Any]] = []

    async def write_changelog(self, table: Any, partition: int, key: str, state: Any) -> asyncio.Future[Any]:
        self.written.append((table.name, key, state))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def pending() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


async def turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def test_a_batch_state_is_read_at_once_and_becomes_the_tables_once_its_outputs_are_confirmed() -> None:
    async def scenario() -> None:
        producer, table = ChangelogRecorder(), Table("builders")
        in_turn = ConfirmedInTurn(producer, limit=2)
        output = pending()
        acknowledged = await in_turn.confirm([output], [(table, {"BTC": (3, {"n": 1})})])
        await turns()
        assert in_turn.state(table, "BTC") == {"n": 1}
        assert table.data == {} and producer.written == []
        assert not acknowledged[0].done()
        output.set_result(None)
        await acknowledged[0]
        assert table.data == {"BTC": {"n": 1}}
        assert producer.written == [("builders", "BTC", {"n": 1})]
        assert in_turn.state(table, "BTC") == {"n": 1}

    asyncio.run(scenario())


def test_batches_are_confirmed_in_order_whatever_order_the_broker_answers_in() -> None:
    async def scenario() -> None:
        producer, table = ChangelogRecorder(), Table("trading")
        in_turn = ConfirmedInTurn(producer, limit=3)
        first, second = pending(), pending()
        first_ack = await in_turn.confirm([first], [(table, {"ETH": (0, {"bar": 1})})])
        second_ack = await in_turn.confirm([second], [(table, {"ETH": (0, {"bar": 2}), "SOL": (1, {"bar": 2})})])
        second.set_result(None)
        await turns()
        assert producer.written == [] and table.data == {}, "the second batch waits for the first"
        assert in_turn.state(table, "ETH") == {"bar": 2}
        first.set_result(None)
        await asyncio.gather(first_ack[0], second_ack[0])
        assert [(key, state["bar"]) for _, key, state in producer.written] == [("ETH", 1), ("ETH", 2), ("SOL", 2)]
        assert table.data == {"ETH": {"bar": 2}, "SOL": {"bar": 2}}

    asyncio.run(scenario())


def test_an_earlier_batch_confirmed_does_not_replace_a_later_batch_held_state() -> None:
    async def scenario() -> None:
        producer, table = ChangelogRecorder(), Table("trading")
        in_turn = ConfirmedInTurn(producer, limit=3)
        first, second = pending(), pending()
        first_ack = await in_turn.confirm([first], [(table, {"ETH": (0, {"bar": 1})})])
        await in_turn.confirm([second], [(table, {"ETH": (0, {"bar": 2})})])
        first.set_result(None)
        await first_ack[0]
        assert table.data == {"ETH": {"bar": 1}}
        assert in_turn.state(table, "ETH") == {"bar": 2}

    asyncio.run(scenario())


@pytest.mark.parametrize("limit", [0, 1, 2])
def test_the_agent_waits_while_more_than_limit_batches_are_unconfirmed(limit: int) -> None:
    async def scenario() -> None:
        producer, table = ChangelogRecorder(), Table("builders")
        in_turn = ConfirmedInTurn(producer, limit=limit)
        outputs = [pending() for _ in range(limit + 1)]
        for index, output in enumerate(outputs[:-1]):
            await asyncio.wait_for(in_turn.confirm([output], [(table, {"BTC": (0, index)})]), 1)
        last = asyncio.ensure_future(in_turn.confirm([outputs[-1]], [(table, {"BTC": (0, limit)})]))
        await turns()
        assert not last.done(), f"{limit + 1} batches unconfirmed: the agent must wait"
        outputs[0].set_result(None)
        await asyncio.wait_for(last, 1)
        assert producer.written[0] == ("builders", "BTC", 0)

    asyncio.run(scenario())


def test_a_failed_batch_writes_no_state_of_its_own_or_of_later_batches_and_is_raised_to_the_agent() -> None:
    async def scenario() -> None:
        producer, table = ChangelogRecorder(), Table("trading")
        in_turn = ConfirmedInTurn(producer, limit=3)
        first, second = pending(), pending()
        first_ack = await in_turn.confirm([first], [(table, {"ETH": (0, {"bar": 1})})])
        second_ack = await in_turn.confirm([second], [(table, {"SOL": (1, {"bar": 1})})])
        second.set_result(None)
        first.set_exception(RuntimeError("broker refused the record"))
        for acknowledgement in (first_ack[0], second_ack[0]):
            with pytest.raises(RuntimeError, match="broker refused"):
                await acknowledgement
        assert producer.written == [] and table.data == {}
        with pytest.raises(RuntimeError, match="broker refused"):
            await in_turn.confirm([], [(table, {"ADA": (2, {"bar": 1})})])
        assert in_turn.state(table, "ADA") is None, "nothing of a batch after the failure is held"
        in_turn.cancel()

    asyncio.run(scenario())


def test_cancelled_confirmations_leave_the_tables_as_they_were() -> None:
    async def scenario() -> None:
        producer, table = ChangelogRecorder(), Table("trading")
        table.data["ETH"] = {"bar": 0}
        in_turn = ConfirmedInTurn(producer, limit=3)
        output = pending()
        acknowledged = await in_turn.confirm([output], [(table, {"ETH": (0, {"bar": 1})})])
        in_turn.cancel()
        output.set_result(None)
        with pytest.raises(asyncio.CancelledError):
            await acknowledged[0]
        assert in_turn.state(table, "ETH") == {"bar": 0}
        assert producer.written == [] and table.data == {"ETH": {"bar": 0}}

    asyncio.run(scenario())


class LaneRecorder:
    def __init__(self) -> None:
        self.queued: list[Output] = []

    async def queue(self, records: Sequence[Output]) -> list[asyncio.Future[Any]]:
        self.queued += records
        return [pending() for _ in records]


def test_each_topic_takes_its_lane_and_keeps_its_order() -> None:
    def event(event_id: str) -> LogEvent:
        return LogEvent(event_id=event_id, ts=1, schema_version=SCHEMA_VERSION, level="INFO", message="m",
                        logger="t")

    async def scenario() -> None:
        lanes: dict[str, LaneRecorder] = {}

        class Routed(OutputProducer):
            async def _started(self, lane: str) -> Any:
                return lanes.setdefault(lane, LaneRecorder())

        producer = Routed(Settings(), {FILLS: EARLY_LANE})
        outputs = [(SIGNALS, "k", event("s1")), (FILLS, "k", event("f1")), (LOGS, "k", event("l1")),
                   (FILLS, "k", event("f2"))]
        published = await producer.publish(outputs)
        assert len(published) == 4
        assert [record.event_id for _, _, record in lanes[EARLY_LANE].queued] == ["f1", "f2"]
        assert [record.event_id for _, _, record in lanes[OUTPUTS_LANE].queued] == ["s1", "l1"]

    asyncio.run(scenario())
