"""Paper trading through one worker: ticks → candles → signals → orders → fills → portfolio with 50 active
configurations on 10 symbols, beside the raw aiokafka rates, and the tick-to-fill latency at a steady feed.

Runs against the configured stack (`tradepulse stack up`, or TRADEPULSE_* variables), in a namespace of its own
(topics under a fresh prefix, instruments under a fresh exchange, configurations and an account under fresh ids)
that it removes afterwards:

    python -m benchmarks.bench_paper [--ticks 1000000] [--symbols 10] [--configs 50] [--rate 10000]
                                     [--follow-minutes 40] [--roles split|one]

With `--roles split` (the default, as `tradepulse run` and the compose file deploy it) a `trading` worker runs the
stages and a `sinks` worker the store's writers; with `--roles one`, one worker runs both.

1. Throughput: publishes the ticks at once, then times the trading worker from "Worker ready" until every
   configuration's portfolio snapshot of every closed 1m bar, and the account's of every bar time, are stored
   (each bar passes every stage and the sinks).
2. Latency: feeds `--follow-minutes` more minutes of ticks (as dense as the first phase's, so a bar closes every
   few seconds) at `--rate` ticks/s and measures, for each fill, the time from the moment the feed sent the tick
   message that closed the bar it was filled on (its candle is what the fill stage worked) to the moment a
   consumer of exec.fills received the fill, and each hop on the way (between the records' timestamps, the last
   one from the fill's to its receipt), and by the instrument's place in the bar close (the instruments' closing
   messages are sent one after another); the same for every configuration's signal on every closed bar, which
   rests on many more bar closes than the fills do; beside one raw aiokafka hop (send to receipt, acks=all)
   measured in the same run, the floor under each pass through the broker. The path passes through it once:
   `trade_paper` builds the candle from the tick message and publishes it and the fill in the same batch, the
   fill before the strategies of the batch decide (it fills an order placed at the previous close), their
   signals and orders after.

A default run's latency phase has about 40 bar closes. Its fills are not independent samples: the fills of one
bar close share its queue (the instruments close one after another), so its p99 is close to its worst bar close,
and it moves by tens of milliseconds between identical runs. `--samples FILE` keeps a run's latencies, and
`python -m benchmarks.pool_latency FILE...` reports several runs pooled: compare variants on pooled runs. The file
also keeps each bar close's wall-clock window, for `python -m benchmarks.close_cpu` to sum a scheduler trace over.

The latencies are absolute and the hosts differ: before it measures, the bench times `bench_bar_step`'s step (a
symbol's five configurations on one bar, on one core) and prints it beside them as the machine's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from psycopg.types.json import Jsonb

from agents.candles import CandleBuilder
from benchmarks.bench_bar_step import STRATEGIES, machine_reference_ms
from benchmarks.bench_pipeline import (
    TICKS_PER_MINUTE,
    Rate,
    make_batches,
    raw_consume,
    raw_produce,
    remove_namespace,
    report_rates,
    time_worker,
)
from streams.admin import ensure_topics
from streams.app import freeze_survivors
from streams.codecs import decode, encode
from streams.records import Candle, Fill, Signal, TickBatch, instrument_key
from streams.topics import FILLS, SIGNALS, TICKS, candle_topic, topic_name
from tests.pipeline_helpers import trading_workers
from tradepulse import control
from tradepulse.marketdata.synth import generate_ticks
from tradepulse.settings import Settings

MINUTE_MS = 60_000


def configuration_plan(symbols: list[str], count: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(symbol, strategy, params) of each configuration: round-robin over the symbols, and each symbol's
    configurations run different strategies, as a deployment's would (the same strategy five times on a symbol
    would trade five times at once, and its fills would count one bar close five times)."""
    return [(symbols[k % len(symbols)], *STRATEGIES[k // len(symbols) % len(STRATEGIES)]) for k in range(count)]


def create_configurations(settings: Settings, run_id: str, exchange: str, symbols: list[str], count: int) -> list[str]:
    ids = []
    with psycopg.connect(settings.database.url) as conn:
        account = control.create_account(conn, f"bench-{run_id}", 1_000_000.0 * count)
        for k, (symbol, strategy, params) in enumerate(configuration_plan(symbols, count)):
            config_id = f"bench-{run_id}-{k:02d}"
            conn.execute(
                "INSERT INTO trained_configurations (id, strategy, params, exchange, symbols, timeframe, account_id, "
                "allocation, stage) VALUES (%s, %s, %s, %s, %s, '1m', %s, 10000, 'DISCOVERY')",
                (config_id, strategy, Jsonb(params), exchange, [symbol], account.account_id),
            )
            ids.append(config_id)
        conn.commit()
        publish = control.kafka_publisher(settings)
        for config_id in ids:
            control.activate(conn, config_id, publish)
    return ids


def closed_minutes(batches: list[TickBatch], grace_ms: int) -> dict[str, int]:
    builders: dict[str, CandleBuilder] = {}
    counts: dict[str, int] = defaultdict(int)
    for batch in batches:
        builder = builders.setdefault(batch.symbol, CandleBuilder(batch.exchange, batch.symbol, grace_ms))
        counts[batch.symbol] += sum(1 for c in builder.apply(batch.times, batch.prices, batch.amounts).candles
                                    if c.timeframe == "1m")
    return counts


def snapshots(settings: Settings, run_id: str) -> tuple[int, int]:
    """The stored snapshots of the run's configurations, and of its account (one per bar time)."""
    with psycopg.connect(settings.database.url) as conn:
        row = conn.execute("SELECT count(*) FILTER (WHERE configuration_id LIKE %s), "
                           "count(*) FILTER (WHERE configuration_id IS NULL) FROM portfolio_history "
                           "WHERE account_id = %s", (f"bench-{run_id}-%", f"paper-bench-{run_id}")).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def stored_all(settings: Settings, run_id: str, config_snapshots: int, account_snapshots: int) -> bool:
    """Whether the first phase is through: every configuration-bar and every account bar time is in the store."""
    stored_configs, stored_account = snapshots(settings, run_id)
    return stored_configs >= config_snapshots and stored_account >= account_snapshots


async def paced_feed(settings: Settings, batches: list[TickBatch], rate: float) -> None:
    """Publish `batches` at `rate` ticks/s, encoded beforehand: the feed shares the machine's cores with the worker
    it measures, so it does as little as it can while it runs."""
    payloads = [(instrument_key(b.exchange, b.symbol).encode(), encode(b), len(b.times)) for b in batches]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=0)
    await producer.start()
    try:
        topic = topic_name(settings.kafka.topic_prefix, TICKS)
        started, sent = time.perf_counter(), 0
        for key, value, ticks in payloads:
            await producer.send(topic, value, key=key)
            sent += ticks
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


Receipts = dict[tuple[str, int, int], float]
"""(topic, partition, offset) -> wall-clock milliseconds at which a consumer of the bench received the record."""


async def watch(settings: Settings, topics: tuple[str, ...], ready: asyncio.Event, done: asyncio.Event,
                receipts: Receipts) -> None:
    """Note when each new record of `topics` reaches a downstream consumer, until `done` and nothing more comes.

    That moment, not the record's own timestamp, ends each latency measured: the producer stamps a record when the
    worker sends it, before the broker has it, so a worker that stamped fills while the broker lagged behind would
    look faster than any consumer of exec.fills saw it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic_name(settings.kafka.topic_prefix, topic), partition)
                      for topic in topics for partition in range(settings.kafka.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        ready.set()
        while True:
            fetched = await consumer.getmany(timeout_ms=100)
            now = time.time() * 1000
            for records in fetched.values():
                receipts.update({(r.topic, r.partition, r.offset): now for r in records})
            if done.is_set() and not fetched:
                return
    finally:
        await consumer.stop()


async def watched_feed(settings: Settings, batches: list[TickBatch], rate: float) -> Receipts:
    """`paced_feed` while `watch` notes when fills and signals reach a consumer; waits 5 s for the last ones."""
    ready, done, receipts = asyncio.Event(), asyncio.Event(), {}
    watcher = asyncio.ensure_future(watch(settings, (FILLS, SIGNALS), ready, done, receipts))
    readiness = asyncio.ensure_future(ready.wait())
    await asyncio.wait([watcher, readiness], return_when=asyncio.FIRST_COMPLETED)
    if watcher.done():
        readiness.cancel()
        await watcher  # it failed before it was ready: raise why
    await paced_feed(settings, batches, rate)
    await asyncio.sleep(5)
    done.set()
    await watcher
    return receipts


async def read_back(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every message of a topic."""
    consumer = AIOKafkaConsumer(topic_name(settings.kafka.topic_prefix, topic),
                                bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=1_500, max_records=10_000)
            if not fetched:
                return out
            for records in fetched.values():
                out += records
    finally:
        await consumer.stop()


async def raw_hop_latency(settings: Settings, messages: int = 1_000, rate: float = 200.0) -> list[float]:
    """Send-to-receipt milliseconds of small messages paced at `rate` on a topic of their own: one raw aiokafka hop
    (acks=all, the floor under each hop of the pipeline)."""
    topic = f"{settings.kafka.topic_prefix}bench.hop"
    servers = settings.kafka.bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    sent_at: dict[int, float] = {}
    received_at: dict[int, float] = {}

    async def send() -> None:
        started = time.perf_counter()
        for index in range(messages):
            sent_at[index] = time.perf_counter()
            await producer.send(topic, str(index).encode())
            ahead = (index + 1) / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def receive() -> None:
        deadline = time.monotonic() + messages / rate + 30
        while len(received_at) < messages and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    received_at[int(record.value or b"0")] = now

    try:
        await asyncio.gather(send(), receive())
    finally:
        await consumer.stop()
        await producer.stop()
    return [(received_at[index] - sent_at[index]) * 1000 for index in received_at]


HOPS = ("ticks→candle", "candle→fill", "fill→consumer")
BROKER_PASSES = 1


CloseWindows = dict[int, tuple[float, float]]
"""Bar open time -> (wall-clock ms at which the feed sent the first message that closed it, at which the bench
received the last signal or fill of it): while each bar close was being worked, for `benchmarks.close_cpu`."""


def latencies(settings: Settings, since_ms: int,
              receipts: Receipts) -> tuple[list[tuple[float, ...]], list[float], CloseWindows]:
    """For bars that opened at or after `since_ms` (event time), from the moment the feed sent the tick message
    that closed the bar (its timestamp) to the moment the bench's consumer received the result (`receipts`): per
    fill, its tick-to-fill milliseconds, then the milliseconds of each hop (`HOPS`: between the records' timestamps,
    the last one from the fill's timestamp to its receipt), then the bar's open time (the bar close it came from),
    then its instrument's place in the bar close (0 when its closing message was the first sent); and per signal
    (every configuration's decision on every closed bar, with or without intents), its tick-to-signal milliseconds.
    Fills come only where a strategy trades, a few per bar close at most; signals come from every configuration at
    every bar, so their tail rests on many more closes. Also each bar close's window (`CloseWindows`)."""
    grace = settings.worker.late_tick_grace_ms
    closers: dict[str, list[tuple[int, int]]] = defaultdict(list)  # instrument -> (newest tick time, sent at)
    for record in asyncio.run(read_back(settings, TICKS)):
        batch = decode(TickBatch, record.value)
        closers[(record.key or b"").decode()].append((max(batch.times), record.timestamp))

    @functools.cache  # asked once per signal and fill, and for every instrument of a fill's bar close
    def closed_by(instrument: str, bar_ts: int) -> int | None:
        """When the tick message that closed the instrument's bar at `bar_ts` (the first later tick) was sent."""
        due = bar_ts + MINUTE_MS + grace
        return next((sent for newest, sent in closers[instrument] if newest >= due), None)

    def place_in_close(sent: int, bar_ts: int) -> int:
        """The instrument's place (0 first) among the instruments whose messages closed the bar at `bar_ts`."""
        return sum(1 for other in closers if (other_sent := closed_by(other, bar_ts)) is not None and other_sent < sent)

    def received(record: ConsumerRecord[bytes, bytes]) -> float | None:
        return receipts.get((record.topic, record.partition, record.offset))

    candles = {((r.key or b"").decode(), decode(Candle, r.value).ts): r.timestamp
               for r in asyncio.run(read_back(settings, candle_topic("1m")))}
    decisions: list[float] = []
    windows: CloseWindows = {}

    def widen(bar_ts: int, trigger: int, seen: float) -> None:
        start, end = windows.get(bar_ts, (trigger, seen))
        windows[bar_ts] = (min(start, trigger), max(end, seen))

    for record in asyncio.run(read_back(settings, SIGNALS)):
        signal = decode(Signal, record.value)
        if signal.bar_ts >= since_ms:
            trigger, seen = closed_by((record.key or b"").decode(), signal.bar_ts), received(record)
            if trigger is not None and seen is not None:
                decisions.append(seen - trigger)
                widen(signal.bar_ts, trigger, seen)
    fills = []
    for record in asyncio.run(read_back(settings, FILLS)):
        fill = decode(Fill, record.value)
        if fill.ts < since_ms:
            continue
        instrument = (record.key or b"").decode()
        trigger = closed_by(instrument, fill.ts)  # the fill worked this bar
        candle = candles.get((instrument, fill.ts))
        seen = received(record)
        if trigger is None or candle is None or seen is None:
            continue
        fills.append((seen - trigger, float(candle - trigger), float(record.timestamp - candle),
                      seen - record.timestamp, float(fill.ts), float(place_in_close(trigger, fill.ts))))
        widen(fill.ts, trigger, seen)
    return fills, decisions, windows


def bar_closes(waits: Sequence[Sequence[float]]) -> int:
    """How many bar closes the fills of one run (`latencies`) came from."""
    return len({wait[-2] for wait in waits})


def report_latencies(waits: Sequence[Sequence[float]], decisions: Sequence[float], hop_reference: Sequence[float],
                     rate: float, closes: int) -> None:
    """Print the latency phase's figures (`latencies` gives `waits` and `decisions`); `closes` is how many bar
    closes the fills came from, the number of independent samples behind the tail."""
    if len(waits) < 2:
        print("tick-to-fill: no fills in the paced phase (raise --rate or the trading activity)")
        return
    tick_to_fill = [wait[0] for wait in waits]
    fill_p99 = statistics.quantiles(tick_to_fill, n=100)[98]
    print(f"tick-to-fill at {rate:,.0f} ticks/s: p50 {statistics.median(tick_to_fill):.1f} ms, p99 {fill_p99:.1f} ms "
          f"over {len(tick_to_fill)} fills from {closes} bar closes; "
          f"goal p99 < 50 ms: {'met' if fill_p99 < 50 else 'NOT met'}")
    for index, hop in enumerate(HOPS, start=1):
        times = [wait[index] for wait in waits]
        print(f"  {hop:<14}: p50 {statistics.median(times):6.1f} ms, "
              f"p99 {statistics.quantiles(times, n=100)[98]:6.1f} ms")
    by_place: dict[int, list[float]] = defaultdict(list)
    for wait in waits:
        by_place[int(wait[-1])].append(wait[0])
    print("  by the instrument's place in the bar close (p50/max ms): " + ", ".join(
        f"{place + 1}. {statistics.median(times):.0f}/{max(times):.0f}" for place, times in sorted(by_place.items())))
    if len(decisions) >= 2:
        print(f"tick-to-signal (every configuration, every closed bar): p50 {statistics.median(decisions):.1f} ms, "
              f"p99 {statistics.quantiles(decisions, n=100)[98]:.1f} ms over {len(decisions)} signals")
    raw = statistics.quantiles(hop_reference, n=100)
    print(f"raw aiokafka hop (reference, {len(hop_reference)} messages): p50 "
          f"{statistics.median(hop_reference):.1f} ms, p99 {raw[98]:.1f} ms; "
          f"tick-to-fill p99 / ({BROKER_PASSES} * raw hop p99) = {fill_p99 / (BROKER_PASSES * raw[98]):.1f}")


def report_machine(bar_steps_ms: Sequence[float]) -> None:
    """Print the machine's speed measured beside the runs (`machine_reference_ms`), if they kept it: the latencies
    are absolute, and a host twice as slow gives twice the queue at a bar close."""
    if bar_steps_ms:
        span = f"{min(bar_steps_ms):.3f}" + (f" to {max(bar_steps_ms):.3f}" if len(bar_steps_ms) > 1 else "")
        print(f"machine reference (bench_bar_step's step of a symbol's five configurations): {span} ms a bar")


def run(ticks: int, symbols: int, configs: int, rate: float, follow_minutes: int, split: bool,
        samples: Path | None = None) -> None:
    run_id = uuid.uuid4().hex[:8]
    base = Settings()
    settings = base.model_copy(update={
        "kafka": base.kafka.model_copy(update={"topic_prefix": f"bench{run_id}."}),
        "worker": base.worker.model_copy(update={"app_id": f"bench{run_id}.worker", "web_port": 0}),
        "paper": base.paper.model_copy(update={"max_open_positions": 1000, "max_positions_per_symbol": 1000,
                                               "max_exposure": 1000.0, "daily_loss_limit": 1.0}),
    })
    exchange = f"bench-{run_id}"
    batches = make_batches(symbols, ticks, exchange)
    names = sorted({b.symbol for b in batches})
    total = sum(len(b.times) for b in batches)
    payloads = [(instrument_key(b.exchange, b.symbol).encode(), encode(b)) for b in batches]
    minutes = closed_minutes(batches, settings.worker.late_tick_grace_ms)
    ensure_topics(settings)
    ids = create_configurations(settings, run_id, exchange, names, configs)
    expected = sum(minutes[names[k % len(names)]] for k in range(configs))
    bar_times = max(minutes.values())
    print(f"{total:,} ticks of {len(names)} symbols in {len(batches):,} messages; {configs} configurations on 1m "
          f"bars → {expected:,} configuration-bars through signals, orders, fills and snapshots")
    last = max(max(b.times) for b in batches)
    follow_start = last - last % MINUTE_MS + 2 * MINUTE_MS
    more = list(generate_ticks(names, follow_start, follow_minutes, seed=2, ticks_per_minute=TICKS_PER_MINUTE,
                               exchange=exchange, batch_ms=1_000, max_batch=100))
    # The ticks of both phases are a few hundred thousand objects: a full collection over them took 100-180 ms,
    # and one that fell into the latency phase stalled the feed and the consumer that time the worker.
    freeze_survivors()
    try:
        bar_step_ms = machine_reference_ms()
        hop_reference = asyncio.run(raw_hop_latency(settings))
        produced = asyncio.run(raw_produce(settings, payloads, total))
        consumed = asyncio.run(raw_consume(settings, len(payloads), total))
        with TemporaryDirectory() as logs, trading_workers(settings, Path(logs), split) as worker:
            seconds, start_up = time_worker(worker, lambda: stored_all(settings, run_id, expected, bar_times),
                                            poll_s=0.2)
            receipts = asyncio.run(watched_feed(settings, more, rate))
            waits, decisions, windows = latencies(settings, follow_start, receipts)
            trading_pid = worker.process.pid if worker.process is not None else None
            worker.stop()
        report_rates("paper pipeline", produced, consumed, Rate(seconds, len(payloads), total), start_up)
        report_latencies(waits, decisions, hop_reference, rate, bar_closes(waits))
        report_machine([bar_step_ms])
        if samples is not None:
            samples.parent.mkdir(parents=True, exist_ok=True)
            samples.write_text(json.dumps({"rate": rate, "fills": waits, "signals": decisions,
                                           "hop_reference": hop_reference, "bar_step_ms": bar_step_ms,
                                           "close_windows": sorted(windows.values()),
                                           "monotonic_offset_ms": (time.time() - time.monotonic()) * 1000,
                                           "processes": {"bench": os.getpid(), "trading worker": trading_pid}}))
    finally:
        with psycopg.connect(settings.database.url) as conn:
            for table in ("signals", "orders", "fills", "trades", "positions", "portfolio_history", "trade_logs"):
                conn.execute(f"DELETE FROM {table} WHERE configuration_id = ANY(%s)", (ids,))
            conn.execute("DELETE FROM portfolio_history WHERE account_id = %s", (f"paper-bench-{run_id}",))
            conn.execute("DELETE FROM trained_configurations WHERE id = ANY(%s)", (ids,))
            conn.execute("DELETE FROM accounts WHERE id = %s", (f"paper-bench-{run_id}",))
        remove_namespace(settings, exchange)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--configs", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10_000.0, help="ticks/s of the latency phase")
    parser.add_argument("--follow-minutes", type=int, default=40, help="event-time minutes of the latency phase")
    parser.add_argument("--roles", choices=("split", "one"), default="split",
                        help="a trading and a sinks worker, or one worker running both")
    parser.add_argument("--samples", type=Path, help="write the latency phase's samples to this JSON file, to pool "
                                                     "runs with `python -m benchmarks.pool_latency`")
    args = parser.parse_args()
    run(args.ticks, args.symbols, args.configs, args.rate, args.follow_minutes, args.roles == "split", args.samples)


if __name__ == "__main__":
    main()
