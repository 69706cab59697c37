"""Ticks/s through one worker (ticks → 1m candles and rollups → market_data) beside raw aiokafka rates.

Runs against the configured stack (`tradepulse stack up`, or TRADEPULSE_* variables), in a namespace of its own
that it removes afterwards:

    python -m benchmarks.bench_pipeline [--ticks 1000000] [--symbols 10]

1. publishes N synthetic ticks as TickBatch messages of up to 100 ticks with a plain aiokafka producer (the raw
   produce rate), 2. reads them back with a plain aiokafka consumer (the raw consume rate), 3. starts
   `tradepulse worker` and times it until market_data holds every candle the ticks close.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents.candles import CandleBuilder
from streams.admin import delete_topics, ensure_topics
from streams.codecs import encode
from streams.records import TickBatch, instrument_key
from streams.topics import TICKS, topic_name
from tests.pipeline_helpers import WorkerProcess
from tradepulse.marketdata.synth import generate_ticks
from tradepulse.settings import Settings

START_MS = 1_700_000_000_000 // 86_400_000 * 86_400_000
TICKS_PER_MINUTE = 4_800.0
BATCH_MS = 5_000


@dataclass(frozen=True)
class Rate:
    seconds: float
    messages: int
    ticks: int

    def __str__(self) -> str:
        return (f"{self.ticks / self.seconds:>12,.0f} ticks/s  {self.messages / self.seconds:>10,.0f} msgs/s"
                f"  ({self.ticks:,} ticks in {self.seconds:.2f} s)")


def make_batches(symbols: int, ticks: int, exchange: str) -> list[TickBatch]:
    names = [f"S{i:02d}/USDT" for i in range(symbols)]
    minutes = int(ticks / symbols / TICKS_PER_MINUTE * 4) + 2
    batches: list[TickBatch] = []
    total = 0
    for batch in generate_ticks(names, START_MS, minutes, seed=1, ticks_per_minute=TICKS_PER_MINUTE,
                                exchange=exchange, batch_ms=BATCH_MS, max_batch=100):
        if total >= ticks:
            break
        batches.append(batch)
        total += len(batch.times)
    return batches


def expected_candle_count(batches: list[TickBatch], grace_ms: int) -> int:
    builders: dict[str, CandleBuilder] = {}
    count = 0
    for batch in batches:
        builder = builders.setdefault(batch.symbol, CandleBuilder(batch.exchange, batch.symbol, grace_ms))
        count += len(builder.apply(batch.times, batch.prices, batch.amounts).candles)
    return count


async def raw_produce(settings: Settings, payloads: list[tuple[bytes, bytes]], ticks: int) -> Rate:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5,
                                max_batch_size=1 << 20)
    await producer.start()
    try:
        started = time.perf_counter()
        topic = topic_name(settings.kafka.topic_prefix, TICKS)
        futures = [await producer.send(topic, value, key=key) for key, value in payloads]
        await asyncio.gather(*futures)
        return Rate(time.perf_counter() - started, len(payloads), ticks)
    finally:
        await producer.stop()


async def raw_consume(settings: Settings, messages: int, ticks: int) -> Rate:
    consumer = AIOKafkaConsumer(topic_name(settings.kafka.topic_prefix, TICKS),
                                bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        started = time.perf_counter()
        seen = 0
        while seen < messages:
            for records in (await consumer.getmany(timeout_ms=1_000, max_records=10_000)).values():
                seen += len(records)
        return Rate(time.perf_counter() - started, messages, ticks)
    finally:
        await consumer.stop()


def stored(settings: Settings, exchange: str) -> int:
    with psycopg.connect(settings.database.url) as conn:
        row = conn.execute("SELECT count(*) FROM market_data WHERE exchange = %s", (exchange,)).fetchone()
    return int(row[0]) if row else 0


def worker_ready_at(log: Path) -> float | None:
    """When Faust logged "Worker ready" (the group is joined and tables are recovered), as a wall-clock time."""
    match = re.search(r"^(\S+ \S+),(\d+) .*Worker ready", log.read_text(errors="replace"), re.M)
    if match is None:
        return None
    return time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000


def time_worker(worker: WorkerProcess, done: Callable[[], bool], poll_s: float = 0.1) -> tuple[float, float]:
    """Wait until `done()`; returns (seconds from "Worker ready" to done, seconds of start-up and group join)."""
    started = time.time()
    while not done():
        if not worker.alive():
            raise SystemExit(f"the worker exited:\n{worker.log_tail()}")
        time.sleep(poll_s)
    finished = time.time()
    ready = worker_ready_at(worker.log_path) or started
    return finished - ready, ready - started


def report_rates(label: str, produced: Rate, consumed: Rate, pipeline: Rate, start_up_s: float) -> None:
    print(f"raw aiokafka produce : {produced}")
    print(f"raw aiokafka consume : {consumed}")
    print(f"{label:<21}: {pipeline}  (+{start_up_s:.1f} s start-up and group join)")
    print(f"pipeline / raw consume = {consumed.seconds / pipeline.seconds:.3f}, "
          f"pipeline / raw produce = {produced.seconds / pipeline.seconds:.3f}; "
          f"goal >= 20,000 ticks/s: {'met' if pipeline.ticks / pipeline.seconds >= 20_000 else 'NOT met'}")


def run(ticks: int, symbols: int) -> None:
    run_id = uuid.uuid4().hex[:8]
    base = Settings()
    settings = base.model_copy(update={
        "kafka": base.kafka.model_copy(update={"topic_prefix": f"bench{run_id}."}),
        "worker": base.worker.model_copy(update={"app_id": f"bench{run_id}.worker", "web_port": 0}),
    })
    exchange = f"bench-{run_id}"
    batches = make_batches(symbols, ticks, exchange)
    total_ticks = sum(len(b.times) for b in batches)
    payloads = [(instrument_key(b.exchange, b.symbol).encode(), encode(b)) for b in batches]
    expected = expected_candle_count(batches, settings.worker.late_tick_grace_ms)
    print(f"{total_ticks:,} ticks of {symbols} symbols in {len(batches):,} messages "
          f"(~{total_ticks / len(batches):.0f} ticks each) → {expected:,} closed candles")
    ensure_topics(settings)
    try:
        produced = asyncio.run(raw_produce(settings, payloads, total_ticks))
        consumed = asyncio.run(raw_consume(settings, len(payloads), total_ticks))
        with TemporaryDirectory() as logs, WorkerProcess(settings, Path(logs)) as worker:
            seconds, start_up = time_worker(worker, lambda: stored(settings, exchange) >= expected)
            worker.stop()
        report_rates("worker pipeline", produced, consumed, Rate(seconds, len(payloads), total_ticks), start_up)
    finally:
        remove_namespace(settings, exchange)


def remove_namespace(settings: Settings, exchange: str) -> None:
    """Delete what a benchmark run left: its candles, its worker's heartbeats and its topics."""
    with psycopg.connect(settings.database.url) as conn:
        conn.execute("DELETE FROM market_data WHERE exchange = %s", (exchange,))
        conn.execute("DELETE FROM worker_heartbeats WHERE worker_id LIKE %s", (f"{settings.worker.app_id}@%",))
    delete_topics(settings, settings.kafka.topic_prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=10)
    args = parser.parse_args()
    run(args.ticks, args.symbols)


if __name__ == "__main__":
    main()
