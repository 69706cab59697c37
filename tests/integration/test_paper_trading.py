"""Paper trading on the real broker and database: activation reaches a running worker within seconds, and a paper
session over a replayed feed trades exactly like the backtest of the same candles."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from agents.bars import BarSeries
from agents.paper import trading_config
from streams.keys import instrument_key
from streams.records import Candle, make_candle
from streams.topics import candle_topic
from tests.pipeline_helpers import WorkerProcess, produce, wait_until
from tests.strategy_helpers import random_series
from tradepulse import control
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


def test_a_paper_session_over_a_replayed_feed_trades_exactly_like_the_backtest(settings: Settings,
                                                                             tmp_path: Path) -> None:
    series = random_series(600, 77, symbol="BTC/USDT")
    params = {"fast": 5, "slow": 20}
    insert_configuration(settings, "cfg-parity", "sma_cross", params)
    worker = WorkerProcess(settings, tmp_path)
    with worker:
        activate(settings, "cfg-parity")
        started = time.monotonic()
        wait_until(lambda: rows(settings, "SELECT status FROM trained_configurations WHERE id = 'cfg-parity'")[0][0]
                   == "running", 60, "the worker to report the configuration running", worker)
        seen_after = time.monotonic() - started
        key = instrument_key("synthetic", "BTC/USDT")
        produce(settings, candle_topic("1h"), [(key, c) for c in candles_of(series)])
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
