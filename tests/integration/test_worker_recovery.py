"""A worker stopped mid-stream, killed (SIGKILL: no flush, no commit) or cleanly (SIGTERM: in-flight work is
finished or redelivered, never acknowledged unwritten), and restarted loses and duplicates nothing."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from streams.records import TIMEFRAMES, Candle
from streams.replay import read_records
from streams.topics import candle_topic
from tests.pipeline_helpers import (
    WorkerProcess,
    assert_same_candles,
    count_rows,
    expected_candles,
    heartbeat_stats,
    produce_ticks,
    stored_candles,
    topic_candles,
    wait_until,
)
from tradepulse.marketdata.synth import generate_ticks
from tradepulse.settings import Settings

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOT/USDT"]
START_MS = 1_700_000_000_000 // 86_400_000 * 86_400_000 + 20 * 3_600_000


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_stop_mid_stream_then_restart_gives_exactly_the_expected_candles(
    settings: Settings, tmp_path: Path, signal_name: str
) -> None:
    batches = list(generate_ticks(SYMBOLS, START_MS, 8 * 60, seed=3, ticks_per_minute=40.0, batch_ms=5_000))
    expected = expected_candles(batches, settings.worker.late_tick_grace_ms)
    produce_ticks(settings, batches)

    worker = WorkerProcess(settings, tmp_path)
    with worker:
        wait_until(lambda: count_rows(settings, "market_data") >= len(expected) // 3, 120, "a third stored", worker)
        if signal_name == "SIGKILL":
            worker.kill()
        else:
            assert worker.stop() == 0, worker.log_tail()
    stored_at_stop = count_rows(settings, "market_data")
    assert stored_at_stop < len(expected), "the worker finished before it could be stopped mid-stream"

    with worker:
        wait_until(lambda: count_rows(settings, "market_data") >= len(expected), 240, "every candle stored", worker)
        wait_until(lambda: len(heartbeat_stats(settings)) == 2 and heartbeat_stats(settings)[1]["messages"] > 0,
                   30, "a heartbeat of the restarted worker", worker)
        assert worker.stop() == 0, worker.log_tail()

    assert_same_candles(stored_candles(settings), expected)
    assert_same_candles(topic_candles(settings), expected)
    # A candle published again after the crash is the same candle, not a second version of it.
    for tf in TIMEFRAMES:
        versions: defaultdict[str, set[tuple[float, ...]]] = defaultdict(set)
        for _, _, c in asyncio.run(read_records(settings, candle_topic(tf), Candle)):
            versions[c.event_id].add((c.open, c.high, c.low, c.close, c.volume, c.trades))
        assert all(len(v) == 1 for v in versions.values()), f"a {tf} candle was published with different values"
    # The restarted worker resumed from restored state and committed offsets, not from the beginning.
    restarted = heartbeat_stats(settings)[1]
    assert 0 < restarted["messages"] < len(batches)
