"""Ticks on the log become closed candles, on every timeframe topic and in market_data, equal to pandas."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psycopg

from agents.heartbeat import upsert_heartbeat
from agents.stats import WorkerStats
from tests.pipeline_helpers import (
    WorkerProcess,
    assert_same_candles,
    count_rows,
    expected_candles,
    heartbeat_stats,
    messages_seen,
    produce_ticks,
    stored_candles,
    topic_candles,
    wait_until,
)
from tradepulse.marketdata.synth import generate_ticks
from tradepulse.settings import Settings

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
# 21:00 UTC: five hours cross midnight, so 4h and 1d buckets close too.
START_MS = 1_700_000_000_000 // 86_400_000 * 86_400_000 + 21 * 3_600_000


def sink_rows_seen(settings: Settings) -> int:
    """market_data rows the newest worker reported written in its last heartbeat."""
    stats = heartbeat_stats(settings)
    return int(stats[-1].get("sink_rows", {}).get("market_data", 0)) if stats else 0


def test_ticks_become_candles_equal_to_a_pandas_resample(settings: Settings, tmp_path: Path) -> None:
    batches = list(generate_ticks(SYMBOLS, START_MS, 300, seed=11, ticks_per_minute=30.0, batch_ms=15_000))
    expected = expected_candles(batches, settings.worker.late_tick_grace_ms)
    assert set(expected.index.get_level_values("timeframe")) == {"1m", "5m", "15m", "1h", "4h", "1d"}
    half = len(batches) // 2

    produce_ticks(settings, batches[:half])
    with WorkerProcess(settings, tmp_path) as worker:
        produce_ticks(settings, batches[half:])  # the second half arrives while the worker runs
        wait_until(lambda: count_rows(settings, "market_data") >= len(expected), 180, "every candle stored", worker)
        wait_until(lambda: messages_seen(settings) == len(batches) and sink_rows_seen(settings) >= len(expected),
                   30, "a heartbeat after the last tick and the last stored candle", worker)
        assert worker.stop() == 0, worker.log_tail()

    assert_same_candles(stored_candles(settings), expected)
    assert_same_candles(topic_candles(settings), expected)
    (stats,) = heartbeat_stats(settings)
    assert stats["running"] is False, "a clean stop records the final counters"
    assert stats["ticks"] == sum(len(b.times) for b in batches)
    assert stats["candles"] == expected.groupby(level="timeframe").size().to_dict()
    assert stats["sink_rows"]["market_data"] >= len(expected)
    assert stats["dead_letters"] == {}


def test_a_beat_landing_after_the_final_heartbeat_leaves_the_worker_stopped(settings: Settings) -> None:
    """A timer's beat may still be on a pool thread when the worker stops and commit after the final heartbeat."""
    run = WorkerStats.for_this_process("beats")
    in_flight = dataclasses.replace(run, messages=5)
    final = dataclasses.replace(run, messages=7, running=False)
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        upsert_heartbeat(conn, final)
        upsert_heartbeat(conn, in_flight)
        assert heartbeat_stats(settings) == [final.snapshot()]

        next_run = dataclasses.replace(in_flight, started_at=in_flight.started_at.replace(year=2100))
        upsert_heartbeat(conn, next_run)
        assert heartbeat_stats(settings) == [next_run.snapshot()], "a new run under a reused worker id still beats"
