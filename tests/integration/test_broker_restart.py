"""The broker stops and comes back mid-stream: the worker rides it out and the pipeline completes exactly.

The test stack's broker is shared by every test session on the machine, so stopping it would break tests that run
beside this one. This test runs a private broker (same code path, `Stack`, on free ports) against its own
isolated database on the shared PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.pipeline_helpers import (
    WorkerProcess,
    assert_same_candles,
    count_rows,
    expected_candles,
    produce_ticks,
    stored_candles,
    topic_candles,
    wait_until,
)
from tradepulse.marketdata.synth import generate_ticks
from tradepulse.settings import Settings
from tradepulse.stack import Stack

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]
START_MS = 1_700_000_000_000 // 86_400_000 * 86_400_000 + 20 * 3_600_000


def test_broker_stop_and_restart_mid_stream(private_stack: tuple[Stack, Settings], tmp_path: Path) -> None:
    stack, settings = private_stack
    batches = list(generate_ticks(SYMBOLS, START_MS, 6 * 60, seed=9, ticks_per_minute=40.0, batch_ms=5_000))
    expected = expected_candles(batches, settings.worker.late_tick_grace_ms)
    half = len(batches) // 2
    produce_ticks(settings, batches[:half])

    with WorkerProcess(settings, tmp_path) as worker:
        wait_until(lambda: count_rows(settings, "market_data") >= len(expected) // 5, 120, "a fifth stored", worker)
        stack.stop_kafka()
        try:
            stopped_at = count_rows(settings, "market_data")
            time.sleep(8)
            assert worker.alive(), f"the worker died with the broker:\n{worker.log_tail()}"
        finally:
            stack.start_kafka()
        assert stopped_at < len(expected)
        produce_ticks(settings, batches[half:])
        wait_until(lambda: count_rows(settings, "market_data") >= len(expected), 300, "every candle stored", worker)
        assert worker.stop() == 0, worker.log_tail()

    assert_same_candles(stored_candles(settings), expected)
    assert_same_candles(topic_candles(settings), expected)
