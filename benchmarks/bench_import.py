"""Import rate of the 1h BTC file: parsing, publishing to the candle topic, upserting into market_data, and the
whole `data import` write path (compare with the store, publish, upsert) cold and on a re-import.

Runs against the stack the settings point at (TRADEPULSE_* environment; by default the dev stack on
127.0.0.1:9092 and :5432) inside its own namespace: topics under a fresh prefix and candles under a fresh exchange
name, both removed afterwards.

    python benchmarks/bench_import.py [--file PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg

from streams.admin import delete_topics, ensure_topics
from tradepulse.marketdata.importer import parse_file
from tradepulse.marketdata.writer import CandleWriter
from tradepulse.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = next(
    p for p in (ROOT.parent / "shared" / "data" / "bitfinex_btcusd_1h.csv", ROOT / "data" / "demo" /
                "bitfinex_btcusd_1h.csv") if p.exists()
)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


async def timed_async(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


def report(label: str, rows: int, seconds: list[float]) -> None:
    best, median = min(seconds), statistics.median(seconds)
    print(f"{label:<34} {rows / median:>10,.0f} rows/s   (median {median * 1000:8.1f} ms, best {best * 1000:8.1f} ms,"
          f" {len(seconds)} runs)")


def bench_exchanges(repeat: int) -> list[str]:
    """Exchange names the benchmark's candles are stored under, two per run, deleted at the end."""
    return [f"bench-{kind}-{run}" for run in range(repeat) for kind in ("split", "full")]


async def bench_writes(settings: Settings, path: Path, repeat: int) -> None:
    rows = 0
    topic, table, cold, warm = [], [], [], []
    async with CandleWriter(settings) as writer:
        for run in range(repeat):
            # a fresh exchange name per run: every candle is new to the table
            plain, full = bench_exchanges(repeat)[2 * run : 2 * run + 2]
            candles = parse_file(path, exchange=plain).candles
            rows = len(candles)
            topic.append(await timed_async(lambda candles=candles: writer.publish(candles)))
            table.append(await timed_async(lambda candles=candles: writer.store(candles)))
            fresh = parse_file(path, exchange=full).candles
            cold.append(await timed_async(lambda fresh=fresh: writer.write(fresh)))
            warm.append(await timed_async(lambda fresh=fresh: writer.write(fresh)))
    report("topic (publish, acks=all)", rows, topic)
    report("table (upsert_candles)", rows, table)
    report("import write path, new rows", rows, cold)
    report("import write path, re-import", rows, warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    base = Settings()
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"topic_prefix": namespace})})
    print(f"file {args.file.name}; Kafka {settings.kafka.bootstrap_servers} (topics {namespace}*); "
          f"PostgreSQL {settings.database.url.rsplit('@', 1)[-1]}")

    parse_times = [timed(lambda: parse_file(args.file)) for _ in range(args.repeat)]
    report("parse (pure, no I/O)", parse_file(args.file).report.imported, parse_times)

    ensure_topics(settings)
    try:
        asyncio.run(bench_writes(settings, args.file, args.repeat))
    finally:
        delete_topics(settings, namespace)
        with psycopg.connect(settings.database.url) as conn:
            conn.execute("DELETE FROM market_data WHERE exchange = ANY(%s)", (bench_exchanges(args.repeat),))


if __name__ == "__main__":
    main()
