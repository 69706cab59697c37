"""Paper trading on the real broker and database: activation reaches a running worker within seconds, and a paper
session over a replayed feed trades exactly like the backtest of the same candles."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from agents.bars import BarSeries
from agents.paper import trading_config
from streams.keys import instrument_key
from streams.records import SCHEMA_VERSION, Candle, TickBatch, make_candle
from streams.topics import candle_topic
from tests.pipeline_helpers import WorkerProcess, produce, produce_ticks, trading_workers, wait_until
from tests.strategy_helpers import random_series
from tradepulse import control
from tradepulse.marketdata.feeds import candle_batches
from tradepulse.settings import Settings
from training.backtest import BacktestConfig, run_backtest

EXECUTION = {"fee_rate": 0.001, "slippage_bps": 2.0, "allow_short": True}
RISK = {"sizing": "fixed_fraction", "fraction": 0.5}


def insert_configuration(settings: Settings, config_id: str, strategy: str, params: dict[str, Any],
                         symbol: str = "BTC/USDT", timeframe: str = "1h") -> None:
    with psycopg.connect(settings.database.url) as conn:
        control.create_account(conn, "test", 100_000.0)
        conn.execute(
            "INSERT INTO trained_configurations (id, strategy, params, exchange, symbols, timeframe, account_id, "
            "allocation, execution, risk, stage) VALUES (%s, %s, %s, 'synthetic', %s, %s, 'paper-test', 10000, %s, "
            "%s, 'VALIDATION')",
            (config_id, strategy, Jsonb(params), [symbol], timeframe, Jsonb(EXECUTION), Jsonb(RISK)),
        )


def rows(settings: Settings, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.database.url) as conn:
        return conn.execute(query, params).fetchall()


def candles_of(series: BarSeries) -> list[Candle]:
    return [make_candle(series.exchange, series.symbol, series.timeframe, b.ts,
                        (b.open, b.high, b.low, b.close, b.volume), source="replay") for b in series.bars()]


def activate(settings: Settings, config_id: str) -> None:
    with psycopg.connect(settings.database.url) as conn:
        control.activate(conn, config_id, control.kafka_publisher(settings))


def replay(settings: Settings, feed: str, series: BarSeries) -> None:
    """The series as the replay feed plays it (ticks that rebuild its candles, then one that closes the last
    bar), or as candles published to its timeframe's topic, as an import does."""
    candles = candles_of(series)
    if feed == "candles":
        produce(settings, candle_topic(series.timeframe), [(instrument_key(series.exchange, series.symbol), c)
                                                          for c in candles])
        return
    closing = TickBatch(event_id="closing-tick", ts=candles[-1].ts, schema_version=SCHEMA_VERSION,
                        exchange=series.exchange, symbol=series.symbol, source="replay",
                        times=[int(series.ts[-1]) + series.span_ms + settings.worker.late_tick_grace_ms],
                        prices=[candles[-1].close], amounts=[1.0])
    produce_ticks(settings, [*candle_batches(candles), closing])


@pytest.mark.parametrize(("feed", "split"), [("ticks", False), ("ticks", True), ("candles", True)], ids=[
    "ticks-one-worker", "ticks-trading-and-sinks-workers", "candles-trading-and-sinks-workers"])
def test_a_paper_session_over_a_replayed_feed_trades_exactly_like_the_backtest(settings: Settings, tmp_path: Path,
                                                                             feed: str, split: bool) -> None:
    series = random_series(600, 77, symbol="BTC/USDT")
    params = {"fast": 5, "slow": 20}
    insert_configuration(settings, "cfg-parity", "sma_cross", params)
    with trading_workers(settings, tmp_path, split) as worker:
        wait_until(worker.ready, 60, "the worker to start", worker)  # activation reaches a running worker
        activate(settings, "cfg-parity")
        started = time.monotonic()
        wait_until(lambda: rows(settings, "SELECT status FROM trained_configurations WHERE id = 'cfg-parity'")[0][0]
                   == "running", 60, "the worker to report the configuration running", worker)
        seen_after = time.monotonic() - started
        replay(settings, feed, series)
        last_close = int(series.ts[-1]) + series.span_ms
        wait_until(lambda: rows(settings, "SELECT count(*) FROM portfolio_history WHERE configuration_id = "
                                "'cfg-parity' AND ts = TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 millisecond'",
                                last_close)[0][0] == 1, 180, "the snapshot of the last bar", worker)
        wait_until(lambda: len(rows(settings, "SELECT 1 FROM trades WHERE configuration_id = 'cfg-parity'"))
                   >= 1, 60, "trades stored", worker)
        time.sleep(2)  # let the trades sink drain its last batch
    config = trading_config(_change_for(settings, "cfg-parity"))
    backtest = run_backtest(config.new_strategy(), series, BacktestConfig(
        cash=config.allocation, execution=config.execution, risk=config.risk, finalize=False))
    expected = [(t.side, t.quantity, t.entry_ts, t.entry_price, t.exit_ts, t.exit_price, t.pnl, t.fees,
                 t.exit_reason) for t in backtest.trades]
    stored = rows(settings, """
        SELECT side, quantity, (extract(epoch FROM entry_ts) * 1000)::bigint, entry_price,
               (extract(epoch FROM exit_ts) * 1000)::bigint, exit_price, pnl, fees, exit_reason
        FROM trades WHERE configuration_id = 'cfg-parity' ORDER BY entry_ts""")
    assert len(expected) > 5
    assert [tuple(r) for r in stored] == expected
    assert seen_after < 5.0, f"the worker took {seen_after:.1f} s to pick the activation up"


def _change_for(settings: Settings, config_id: str) -> Any:
    with psycopg.connect(settings.database.url) as conn:
        return control.current_change(conn, config_id)


CONFIGS = [
    ("cfg-sma-btc", "sma_cross", {"fast": 5, "slow": 20}, "BTC/USDT"),
    ("cfg-ema-btc", "ema_trend", {"fast": 5, "slow": 20, "atr_target": 3.0, "direction": "both"}, "BTC/USDT"),
    ("cfg-donchian-eth", "donchian_breakout", {"entry_period": 20, "exit_period": 10}, "ETH/USDT"),
    ("cfg-rsi-sol", "rsi_bollinger", {"k": 1.5, "oversold": 40.0, "direction": "both"}, "SOL/USDT"),
]


def expected_session(settings: Settings, config_id: str, series: BarSeries) -> Any:
    config = trading_config(_change_for(settings, config_id))
    return run_backtest(config.new_strategy(), series, BacktestConfig(
        cash=config.allocation, execution=config.execution, risk=config.risk, finalize=False))


def stored_trades(settings: Settings, config_id: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in rows(settings, """
        SELECT side, quantity, (extract(epoch FROM entry_ts) * 1000)::bigint, entry_price,
               (extract(epoch FROM exit_ts) * 1000)::bigint, exit_price, pnl, fees, exit_reason
        FROM trades WHERE configuration_id = %s ORDER BY entry_ts""", config_id)]


def as_rows(backtest: Any) -> list[tuple[Any, ...]]:
    return [(t.side, t.quantity, t.entry_ts, t.entry_price, t.exit_ts, t.exit_price, t.pnl, t.fees, t.exit_reason)
            for t in backtest.trades]


def last_snapshots(settings: Settings) -> int:
    return int(rows(settings, "SELECT count(*) FROM portfolio_history WHERE configuration_id IS NOT NULL")[0][0])


def bar_times(settings: Settings) -> int:
    return int(rows(settings, "SELECT count(DISTINCT ts) FROM portfolio_history WHERE configuration_id IS NOT NULL")
               [0][0])


def account_bars(settings: Settings) -> int:
    """The number of account snapshots, or -1 when some bar time has two."""
    count, times = rows(settings, "SELECT count(*), count(DISTINCT ts) FROM portfolio_history "
                                  "WHERE configuration_id IS NULL")[0]
    return int(count) if count == times else -1


def test_a_killed_worker_restarts_without_losing_or_repeating_anything(settings: Settings, tmp_path: Path) -> None:
    # Account-wide limits act on the latest portfolio the worker has heard of (eventually consistent), so where they
    # bind a replay may decide differently; this test is about delivery, so they must not bind.
    settings = settings.model_copy(update={"paper": settings.paper.model_copy(
        update={"daily_loss_limit": 1.0, "max_exposure": 100.0})})
    data = {symbol: random_series(2500, seed, symbol=symbol)
            for seed, symbol in enumerate(("BTC/USDT", "ETH/USDT", "SOL/USDT"), start=11)}
    for config_id, strategy, params, symbol in CONFIGS:
        insert_configuration(settings, config_id, strategy, params, symbol)
    worker = WorkerProcess(settings, tmp_path)
    with worker:
        for config_id, *_ in CONFIGS:
            activate(settings, config_id)
        wait_until(lambda: rows(settings, "SELECT count(*) FROM trained_configurations WHERE status = 'running'")
                   [0][0] == len(CONFIGS), 60, "every configuration running", worker)
        produce(settings, candle_topic("1h"), [
            (instrument_key("synthetic", s), c) for batch in zip(*(candles_of(d) for d in data.values()), strict=True)
            for s, c in zip(data, batch, strict=True)])
        total = sum(len(data[symbol]) for *_, symbol in CONFIGS)
        wait_until(lambda: last_snapshots(settings) >= total // 4, 120, "a quarter of the session", worker)
        worker.kill()
    assert last_snapshots(settings) < total, "the session ended before the worker could be killed"
    with worker:
        wait_until(lambda: last_snapshots(settings) >= total, 300, "the whole session", worker)
        wait_until(lambda: account_bars(settings) == bar_times(settings), 120, "the account's snapshots", worker)
        time.sleep(3)  # the trade and fill sinks' last batches
        assert worker.stop() == 0, worker.log_tail()
    assert last_snapshots(settings) == total  # one snapshot per configuration and bar, none twice
    for config_id, _, _, symbol in CONFIGS:
        backtest = expected_session(settings, config_id, data[symbol])
        assert stored_trades(settings, config_id) == as_rows(backtest), config_id
        fills = rows(settings, "SELECT count(*) FROM fills WHERE configuration_id = %s", config_id)[0][0]
        assert fills == len(backtest.fills), config_id
        final = rows(settings, "SELECT equity FROM portfolio_history WHERE configuration_id = %s ORDER BY ts DESC "
                               "LIMIT 1", config_id)[0][0]
        assert final == backtest.equity[-1], config_id
        held = rows(settings, "SELECT quantity FROM positions WHERE configuration_id = %s", config_id)
        open_trades = len(backtest.fills) - 2 * len(backtest.trades)
        assert len(held) == open_trades, config_id
    assert sum(len(as_rows(expected_session(settings, c, data[s]))) for c, _, _, s in CONFIGS) > 40
    assert account_bars(settings) == bar_times(settings)  # one account snapshot per bar time, none twice
    signals = rows(settings, "SELECT count(*), count(DISTINCT signal_id) FROM signals")[0]
    assert signals[0] == signals[1] > 0


def _thread_niceness(pid: int) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def test_the_sinks_worker_yields_the_cores_to_the_trading_worker(settings: Settings, tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    lower = min(19, own + 7)
    quiet = settings.model_copy(update={"worker": settings.worker.model_copy(
        update={"web_port": 0, "sinks_niceness": lower})})
    with WorkerProcess(settings, tmp_path, "trading") as trading, WorkerProcess(quiet, tmp_path, "sinks") as sinks:
        wait_until(trading.ready, 60, "the trading worker to start", trading)
        wait_until(sinks.ready, 60, "the sinks worker to start", sinks)
        assert trading.process is not None and sinks.process is not None
        assert _thread_niceness(trading.process.pid) == {own}
        assert _thread_niceness(sinks.process.pid) == {lower}, \
            "every thread of the sinks worker, Faust's consumer thread included, runs at the lower priority"
