"""What the partitions a consumer is assigned cost it while few of them carry messages: the CPU of an aiokafka
consumer per fetched message, messages paced into one topic, for the partitions of that topic alone (the
reference), of ticks and one candle topic, and of every topic trade_paper reads (ticks and the six candle topics),
the last both as aiokafka fetches and in fetch sessions, as the workers fetch (`streams.fetch_sessions`).

Without fetch sessions (KIP-227, which aiokafka does not implement) every fetch request lists every assigned
partition and every response answers for each, so a consumer pays for its quiet partitions at every message.

    python -m benchmarks.bench_fetch_cost [--rate 250] [--seconds 15] [--repeat 2]

The defaults pace 3 KB messages at 250/s, the tick messages of bench_paper's latency phase (10,000 ticks/s).
Needs the stack's broker (`tradepulse stack up`); the consumer's loop is the one the worker would run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.admin import wait_for_leaders
from streams.app import use_event_loop
from streams.fetch_sessions import fetch_in_sessions
from streams.keys import TIMEFRAMES
from tradepulse.settings import Settings, get_settings

PAYLOAD = b"x" * 3_000
SETS = {
    "one topic (reference)": (1, False),
    "ticks and 1m candles": (2, False),
    "trade_paper's topics": (1 + len(TIMEFRAMES), False),
    "the same, in sessions": (1 + len(TIMEFRAMES), True),
}
"""name → (topics assigned, fetch in sessions)"""


def pace(settings: Settings, topic: str, partitions: int, rate: float, seconds: float) -> None:
    """Send `rate` messages a second for `seconds`, round the partitions of `topic`, from a loop of its own."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=0)
        await producer.start()
        try:
            started = time.perf_counter()
            for sent in range(int(rate * seconds)):
                await producer.send(topic, PAYLOAD, partition=sent % partitions)
                await asyncio.sleep(max(0.0, started + (sent + 1) / rate - time.perf_counter()))
        finally:
            await producer.stop()

    asyncio.run(send())


async def consumer_cpu(settings: Settings, topic_count: int, sessions: bool, rate: float,
                       seconds: float) -> tuple[int, float, int]:
    """(partitions assigned, CPU seconds of the consuming thread, messages fetched) while messages are paced into
    the first of `topic_count` fresh topics."""
    servers, partitions = settings.kafka.bootstrap_servers, settings.kafka.partitions
    topics = [f"{settings.kafka.topic_prefix}bench.fetch.{uuid.uuid4().hex[:8]}.{i}" for i in range(topic_count)]
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics])
        await wait_for_leaders(admin, topics)
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
                                    fetch_max_wait_ms=1500)
        await consumer.start()
        try:
            if sessions:
                fetch_in_sessions(consumer)
            consumer.assign([TopicPartition(t, p) for t in topics for p in range(partitions)])
            await consumer.seek_to_end()
            feed = threading.Thread(target=pace, args=(settings, topics[0], partitions, rate, seconds))
            fetched = 0
            cpu_before = time.thread_time()
            feed.start()
            while feed.is_alive():
                batch = await consumer.getmany(timeout_ms=100)
                fetched += sum(len(records) for records in batch.values())
            cpu = time.thread_time() - cpu_before
        finally:
            await consumer.stop()
        await admin.delete_topics(topics)
    finally:
        await admin.close()
    return len(topics) * partitions, cpu, fetched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=250.0, help="messages a second")
    parser.add_argument("--seconds", type=float, default=15.0, help="of pacing for each set of topics")
    parser.add_argument("--repeat", type=int, default=2, help="rounds over the sets, interleaved")
    args = parser.parse_args()
    settings = get_settings()
    use_event_loop(settings)
    per_message: dict[str, list[float]] = {name: [] for name in SETS}
    share: dict[str, list[float]] = {name: [] for name in SETS}
    assigned: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, (topic_count, sessions) in SETS.items():
            partitions, cpu, fetched = asyncio.run(
                consumer_cpu(settings, topic_count, sessions, args.rate, args.seconds))
            assigned[name] = partitions
            per_message[name].append(cpu / max(fetched, 1) * 1e6)
            share[name].append(cpu / args.seconds * 100)
    reference = statistics.median(per_message[next(iter(SETS))])
    print(f"an aiokafka consumer ({settings.worker.event_loop} loop), {args.rate:,.0f} messages/s of "
          f"{len(PAYLOAD):,} bytes into one topic, {args.repeat} rounds (medians):")
    for name in SETS:
        cost = statistics.median(per_message[name])
        print(f"  {name:<22} {assigned[name]:3d} partitions: {cost:6.0f} µs CPU per message, "
              f"{statistics.median(share[name]):5.1f}% of a core, {cost / reference:4.2f}x the reference")


if __name__ == "__main__":
    main()
