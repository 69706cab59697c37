"""Paper trading through failures on the real broker and database: workers joining and dying, a broker restart,
a 30 s database outage, a strategy that raises, a malformed configuration event, and deactivation.

Each session replays candles of several instruments through active configurations and ends with every
configuration's trades equal to the backtest of the same candles."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from agents.bars import BarSeries
from agents.strategies import STRATEGIES
from streams.keys import instrument_key
from streams.topics import CONFIGS, candle_topic
from tests.faulty_strategies import FailsAbovePrice
from tests.integration.test_paper_trading import (
    activate,
    as_rows,
    candles_of,
    expected_session,
    insert_configuration,
    last_snapshots,
    rows,
    stored_trades,
)
from tests.pipeline_helpers import WorkerProcess, free_port, produce, produce_raw, wait_until
from tests.strategy_helpers import random_series
from tradepulse import control
from tradepulse.settings import Settings
from tradepulse.stack import Stack

SESSION = [
    ("cfg-sma", "sma_cross", {"fast": 5, "slow": 20}, "BTC/USDT"),
    ("cfg-ema", "ema_trend", {"fast": 5, "slow": 20, "atr_target": 3.0, "direction": "both"}, "ETH/USDT"),
    ("cfg-don", "donchian_breakout", {"entry_period": 20, "exit_period": 10}, "SOL/USDT"),
]
BARS = 1500


def permissive(settings: Settings) -> Settings:
    """Account-wide limits that never bind (they act on eventually consistent views; see the recovery test)."""
    return settings.model_copy(update={"paper": settings.paper.model_copy(
        update={"daily_loss_limit": 1.0, "max_exposure": 100.0})})


def market(bars: int = BARS) -> dict[str, BarSeries]:
    return {symbol: random_series(bars, seed, symbol=symbol)
            for seed, symbol in enumerate(("BTC/USDT", "ETH/USDT", "SOL/USDT"), start=21)}


def publish(settings: Settings, data: dict[str, BarSeries], start: int, stop: int) -> None:
    series = [candles_of(data[s].slice(start, stop)) for s in data]
    produce(settings, candle_topic("1h"), [
        (instrument_key("synthetic", symbol), candle)
        for batch in zip(*series, strict=True) for symbol, candle in zip(data, batch, strict=True)])


def start_session(settings: Settings, workers: list[WorkerProcess], session: list[tuple[str, str, dict[str, Any],
                                                                                      str]] = SESSION) -> None:
    for config_id, strategy, params, symbol in session:
        insert_configuration(settings, config_id, strategy, params, symbol)
    for worker in workers:
        worker.start()
    for config_id, *_ in session:
        activate(settings, config_id)
    wait_until(lambda: rows(settings, "SELECT count(*) FROM trained_configurations WHERE status = 'running'")[0][0]
               == len(session), 60, "every configuration running", workers[0])


def assert_session_matches_backtests(settings: Settings, data: dict[str, BarSeries],
                                     session: list[tuple[str, str, dict[str, Any], str]] = SESSION) -> None:
    total = 0
    for config_id, _, _, symbol in session:
        backtest = expected_session(settings, config_id, data[symbol])
        assert stored_trades(settings, config_id) == as_rows(backtest), config_id
        total += len(backtest.trades)
    assert total > 20


def finish(settings: Settings, workers: list[WorkerProcess], snapshots: int) -> None:
    wait_until(lambda: last_snapshots(settings) >= snapshots, 300, "the whole session", workers[0])
    wait_until(lambda: _sinks_idle(settings), 60, "the sinks' last batches", workers[0])
    for worker in workers:
        if worker.alive():
            assert worker.stop() == 0, worker.log_tail()
    assert last_snapshots(settings) == snapshots


def _sinks_idle(settings: Settings, quiet_s: float = 2.0) -> bool:
    before = rows(settings, "SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM fills)")[0]
    time.sleep(quiet_s)
    return rows(settings, "SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM fills)")[0] == before


def run_with(settings: Settings, tmp_path: Path, interrupt: Callable[[list[WorkerProcess]], None],
             worker_count: int = 1) -> dict[str, BarSeries]:
    data = market()
    workers = [WorkerProcess(settings.model_copy(update={"worker": settings.worker.model_copy(
        update={"web_port": free_port()})}), tmp_path / f"w{i}") for i in range(worker_count)]
    for i in range(worker_count):
        (tmp_path / f"w{i}").mkdir()
    try:
        start_session(settings, workers[:1])
        publish(settings, data, 0, BARS // 2)
        wait_until(lambda: last_snapshots(settings) >= len(SESSION) * BARS // 5, 120, "a fifth of the session",
                   workers[0])
        interrupt(workers)
        publish(settings, data, BARS // 2, BARS)
        finish(settings, [w for w in workers if w.alive()], len(SESSION) * BARS)
    finally:
        for worker in workers:
            if worker.alive():
                worker.kill()
    assert_session_matches_backtests(settings, data)
    return data


def test_a_worker_joining_and_one_dying_rebalance_without_losing_state(settings: Settings, tmp_path: Path) -> None:
    settings = permissive(settings)

    def join_then_die(workers: list[WorkerProcess]) -> None:
        workers[1].start()
        wait_until(lambda: len(rows(settings, "SELECT 1 FROM worker_heartbeats WHERE (stats ->> 'running')::bool"))
                   >= 2, 60, "the second worker beating", workers[1])
        time.sleep(8)  # the group rebalances and the partitions are shared
        workers[0].kill()

    run_with(settings, tmp_path, join_then_die, worker_count=2)
    shared = rows(settings, "SELECT stats -> 'paper' ->> 'trade_paper' FROM worker_heartbeats")
    assert sum(1 for (count,) in shared if count and int(count) > 0) == 2, "both workers traded"


def test_paper_trading_survives_a_broker_restart(private_stack: tuple[Stack, Settings], tmp_path: Path) -> None:
    stack, settings = private_stack
    settings = permissive(settings)

    def restart_broker(workers: list[WorkerProcess]) -> None:
        stack.stop_kafka()
        try:
            time.sleep(8)
            assert workers[0].alive(), f"the worker died with the broker:\n{workers[0].log_tail()}"
        finally:
            stack.start_kafka()

    run_with(settings, tmp_path, restart_broker)


def test_paper_trading_survives_a_30_second_database_outage(private_database: tuple[Stack, Settings],
                                                            tmp_path: Path) -> None:
    stack, settings = private_database
    settings = permissive(settings)

    def outage(workers: list[WorkerProcess]) -> None:
        stack.stop_postgres()
        try:
            time.sleep(30)
            assert workers[0].alive(), f"the worker died with the database:\n{workers[0].log_tail()}"
        finally:
            stack.start_postgres()

    run_with(settings, tmp_path, outage)


def test_a_failing_strategy_and_a_malformed_config_event_leave_the_others_trading(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))  # the worker imports tests.*
    settings = permissive(settings).model_copy(update={"strategy_modules": ["tests.faulty_strategies"]})
    monkeypatch.setitem(STRATEGIES, FailsAbovePrice.name, FailsAbovePrice)  # this process validates it too
    data = market(800)
    limit = float(data["BTC/USDT"].close[100:400].max()) * 0.9999
    session = [*SESSION, ("cfg-faulty", "fails_above_price", {"limit": limit}, "BTC/USDT")]
    worker = WorkerProcess(settings, tmp_path)
    try:
        start_session(settings, [worker], session)
        produce_raw(settings, CONFIGS, [(b"cfg-sma", b"{not json"), (b"cfg-ema", b'{"configuration_id": 3}')])
        publish(settings, data, 0, 800)
        wait_until(lambda: rows(settings, "SELECT status FROM trained_configurations WHERE id = 'cfg-faulty'")[0][0]
                   == "error", 120, "the failing configuration in error", worker)
        finish(settings, [worker], len(SESSION) * 800 + _bars_up_to_failure(data["BTC/USDT"], limit))
    finally:
        if worker.alive():
            worker.kill()
    assert_session_matches_backtests(settings, data)
    reason = rows(settings, "SELECT status_reason FROM trained_configurations WHERE id = 'cfg-faulty'")[0][0]
    assert "RuntimeError" in reason and "above" in reason
    logged = rows(settings, "SELECT metadata ->> 'traceback' FROM trade_logs WHERE configuration_id = 'cfg-faulty' "
                            "AND level = 'ERROR'")
    assert logged and "Traceback" in logged[0][0]
    letters = rows(settings, "SELECT reason FROM dead_letters WHERE source_topic LIKE %s ORDER BY reason",
                   f"%{CONFIGS}")
    assert [r[0].split(":")[0] for r in letters] == ["bad_json", "missing_field"]


def _bars_up_to_failure(series: BarSeries, limit: float) -> int:
    """The failing configuration's snapshots: every bar before the failure, and the bar it fails on, which its
    sub-account still works (the orders it placed before fill as they would on an exchange)."""
    above = [i for i, close in enumerate(series.close.tolist()) if close > limit]
    assert above, "the data must reach the failing strategy's limit"
    return above[0] + 1


@pytest.mark.parametrize("policy", ["close", "keep"])
def test_deactivation_stops_entries_and_closes_or_keeps_positions(settings: Settings, tmp_path: Path,
                                                                  policy: str) -> None:
    settings = permissive(settings)
    data = market(600)
    session = [("cfg-dea", "sma_cross", {"fast": 2, "slow": 5}, "BTC/USDT")]
    worker = WorkerProcess(settings, tmp_path)
    try:
        start_session(settings, [worker], session)
        # stop at a bar where sma_cross(2, 5) has just entered, so a position is open when it is deactivated
        backtest = expected_session(settings, "cfg-dea", data["BTC/USDT"])
        entry = next(t for t in backtest.trades if t.entry_ts > data["BTC/USDT"].ts[200] and
                     t.exit_ts - t.entry_ts > 3 * 3_600_000)
        cut = int(np.searchsorted(data["BTC/USDT"].ts, entry.entry_ts)) + 1  # the data has gaps
        publish(settings, data, 0, cut)
        wait_until(lambda: rows(settings, "SELECT count(*) FROM positions WHERE configuration_id = 'cfg-dea'")[0][0]
                   == 1, 120, "an open position", worker)
        with psycopg.connect(settings.database.url) as conn:
            control.deactivate(conn, "cfg-dea", control.kafka_publisher(settings), on_deactivate=policy)
        time.sleep(3)
        publish(settings, data, cut, 600)
        wait_until(lambda: last_snapshots(settings) >= cut + 2, 120, "bars after the deactivation", worker)
        wait_until(lambda: _sinks_idle(settings), 60, "quiet sinks", worker)
        trades_after = rows(settings, "SELECT exit_reason, (extract(epoch FROM entry_ts) * 1000)::bigint FROM trades "
                                      "WHERE configuration_id = 'cfg-dea' AND entry_ts >= to_timestamp(%s / 1000.0)",
                            entry.entry_ts)
        held = rows(settings, "SELECT count(*) FROM positions WHERE configuration_id = 'cfg-dea'")[0][0]
        status = rows(settings, "SELECT status FROM trained_configurations WHERE id = 'cfg-dea'")[0][0]
        assert worker.stop() == 0, worker.log_tail()
    finally:
        if worker.alive():
            worker.kill()
    assert all(ts <= entry.entry_ts for _, ts in trades_after), "no entry after the deactivation"
    if policy == "close":
        assert [reason for reason, _ in trades_after] == ["signal"] and held == 0 and status == "stopped"
    else:
        assert len(trades_after) <= 1 and status in ("stopping", "stopped")
        if not trades_after:
            assert held == 1  # kept, with its bracket working (sma_cross sets none): still open
