"""PostgreSQL goes away mid-stream: the sinks wait and retry, nothing is acknowledged unwritten, nothing is lost.

Stopping the shared test database would break tests running beside this one, so this test runs a private
PostgreSQL (the same `Stack` code, on a free port) and the shared broker under its own topic namespace.
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
    wait_until,
)
from tradepulse.marketdata.synth import generate_ticks
from tradepulse.settings import Settings
from tradepulse.stack import Stack

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
START_MS = 1_700_000_000_000 // 86_400_000 * 86_400_000 + 21 * 3_600_000


def test_sinks_survive_a_database_outage(private_database: tuple[Stack, Settings], tmp_path: Path) -> None:
    stack, settings = private_database
    batches = list(generate_ticks(SYMBOLS, START_MS, 300, seed=4, ticks_per_minute=30.0, batch_ms=15_000))
    expected = expected_candles(batches, settings.worker.late_tick_grace_ms)
    half = len(batches) // 2
    produce_ticks(settings, batches[:half])

    with WorkerProcess(settings, tmp_path) as worker:
        wait_until(lambda: count_rows(settings, "market_data") > 0, 120, "the first candles stored", worker)
        stored_before = count_rows(settings, "market_data")
        stack.stop_postgres()
        try:
            produce_ticks(settings, batches[half:])  # candles keep coming while nothing can be written
            time.sleep(8)
            assert worker.alive(), f"the worker died with the database:\n{worker.log_tail()}"
        finally:
            stack.start_postgres()
        # Counted before the outage: a count after the restart would race the sink catching up. The candles of the
        # second half can only be stored after the restart, since their ticks were published during the outage.
        assert stored_before < len(expected), "the outage should have held candles back"
        wait_until(lambda: count_rows(settings, "market_data") >= len(expected), 180, "every candle stored", worker)
        assert worker.stop() == 0, worker.log_tail()

    assert_same_candles(stored_candles(settings), expected)
