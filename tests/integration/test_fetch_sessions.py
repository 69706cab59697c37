"""A consumer fetching in sessions (KIP-227) on the real broker reads exactly what it would read without them:
every record once, across quiet and busy partitions, after a seek back, and through a session the broker ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.fetch_sessions import FetchSession, SessionClient, fetch_in_sessions
from streams.keys import TIMEFRAMES
from streams.topics import TICKS, candle_topic, topic_name
from tradepulse.settings import Settings

Record = tuple[str, int, int, bytes]


async def produce(producer: AIOKafkaProducer, topic: str, partitions: Iterable[int], label: str) -> set[Record]:
    """One record into each of `partitions` of `topic`; the (topic, partition, offset, value) of each."""
    sent = set()
    for partition in partitions:
        value = f"{label}-{partition}".encode()
        metadata = await producer.send_and_wait(topic, value, partition=partition)
        sent.add((topic, metadata.partition, metadata.offset, value))
    return sent


async def take(consumer: AIOKafkaConsumer, count: int) -> list[Record]:
    """Exactly the next `count` records, then a moment more to show nothing else comes."""
    taken: list[Record] = []
    async with asyncio.timeout(30):
        while len(taken) < count:
            batch = await consumer.getmany(timeout_ms=200)
            taken += [(r.topic, r.partition, r.offset, r.value) for records in batch.values() for r in records]
    extra = await consumer.getmany(timeout_ms=500)
    taken += [(r.topic, r.partition, r.offset, r.value) for records in extra.values() for r in records]
    return taken


def the_session(consumer: AIOKafkaConsumer) -> FetchSession:
    client = consumer._fetcher._client
    assert isinstance(client, SessionClient)
    (session,) = client._sessions.values()
    return session


async def read_in_sessions(settings: Settings) -> None:
    prefix, partitions = settings.kafka.topic_prefix, settings.kafka.partitions
    ticks = topic_name(prefix, TICKS)
    topics = [ticks, *(topic_name(prefix, candle_topic(timeframe)) for timeframe in TIMEFRAMES)]
    assigned = [TopicPartition(topic, partition) for topic in topics for partition in range(partitions)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=200)
    await producer.start()
    await consumer.start()
    try:
        fetch_in_sessions(consumer)
        consumer.assign(assigned)

        first = await produce(producer, ticks, range(partitions), "first")
        first |= await produce(producer, topics[-1], [0], "first")
        got = await take(consumer, len(first))
        assert sorted(got) == sorted(first), "every record once"
        session = the_session(consumer)
        assert session.session_id != 0, "the broker opened a session"
        assert set(session.held) == {(tp.topic, tp.partition) for tp in assigned}

        everything = set(first)
        for round_number in range(5):  # incremental fetches: a few partitions move, the rest stay quiet
            sent = await produce(producer, ticks, [round_number % partitions], f"round{round_number}")
            assert sorted(await take(consumer, len(sent))) == sorted(sent)
            everything |= sent
        assert session.epoch > 5, "the rounds went in incremental requests the broker accepted"

        consumer.seek(TopicPartition(ticks, 0), 0)
        in_partition = sorted(record for record in everything if record[:2] == (ticks, 0))
        assert sorted(await take(consumer, len(in_partition))) == in_partition, "the seek back reads it again"

        opened = session.session_id
        session.epoch += 1_000  # the broker ends the session at the next request (INVALID_FETCH_SESSION_EPOCH)
        after = await produce(producer, topics[1], range(partitions), "after")
        assert sorted(await take(consumer, len(after))) == sorted(after)
        assert session.session_id not in (0, opened), "a new session replaced the ended one"
    finally:
        await consumer.stop()
        await producer.stop()


def test_a_consumer_in_sessions_reads_every_record_once(settings: Settings) -> None:
    asyncio.run(read_in_sessions(settings))
