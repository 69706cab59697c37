"""The Timescale SQL on a real TimescaleDB (the PGlite build), and the same numbers from the plain variant.

The PGlite server serves one connection at a time, so these tests never hold two connections to it at once.
Tests share one server per module and keep apart by writing under their own exchange and configuration ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from streams.records import SCHEMA_VERSION, TIMEFRAMES, Candle, stable_id
from tests.timescale_server import timescale_server
from tradepulse.db import MIGRATIONS_DIR, connect, load_migrations, migrate
from tradepulse.settings import DatabaseSettings, Settings
from tradepulse.store import candle_count, fetch_candles, upsert_candles

pytestmark = pytest.mark.timescale

HYPERTABLES = {"market_data": "ts", "fills": "ts", "trades": "exit_ts", "portfolio_history": "ts", "trade_logs": "ts"}
CANDLE_VIEWS = {tf: f"market_candles_{tf}" for tf in ("5m", "15m", "1h", "4h", "1d")}
PERFORMANCE_VIEWS = {"1h": "strategy_performance_hourly", "1d": "strategy_performance_daily"}
AGGREGATES = set(CANDLE_VIEWS.values()) | set(PERFORMANCE_VIEWS.values())

START = datetime(2024, 1, 1, 22, 30, tzinfo=UTC)  # the data crosses midnight and a 4h boundary
MINUTE = TIMEFRAMES["1m"]


@pytest.fixture(scope="module")
def timescale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a fresh, migrated PGlite TimescaleDB server, shared by this module's tests."""
    with timescale_server(tmp_path_factory.mktemp("pglite")) as url:
        settings = Settings(database=DatabaseSettings(url=url, managed=False, pool_min=1, pool_max=1))
        applied = migrate(settings)
        assert applied == [m.label for m in load_migrations(MIGRATIONS_DIR, timescale=True)]
        yield settings


@pytest.fixture(params=["plain", "timescale"])
def backend(request: pytest.FixtureRequest) -> Settings:
    """Each variant in turn: the test stack's PostgreSQL (plain views) and PGlite (continuous aggregates)."""
    fixture = "settings" if request.param == "plain" else "timescale"
    return request.getfixturevalue(fixture)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _tag() -> str:
    return uuid.uuid4().hex[:8]


# --------------------------------------------------------------------------------------------- known data set


def known_candles(exchange: str) -> list[Candle]:
    """180 one-minute candles for two symbols from 22:30 UTC, plus 5m rows that every rollup must ignore."""
    candles = []
    for s, symbol in enumerate(("BTC/USDT", "ETH/USDT")):
        for i in range(180):
            ts = _ms(START) + i * MINUTE
            open_ = 1000.0 * (s + 1) + (i * 7) % 23
            close = open_ + ((i % 5) - 2) * 0.5
            candles.append(Candle(
                event_id=stable_id("candle", exchange, symbol, "1m", ts), ts=ts, schema_version=SCHEMA_VERSION,
                exchange=exchange, symbol=symbol, timeframe="1m", open=open_, high=max(open_, close) + 1.5 + i % 3,
                low=min(open_, close) - 1.0 - i % 4, close=close, volume=0.25 * (1 + i % 9), trades=i % 6,
                source="test",
            ))
        for i in range(0, 180, 5):  # an unrelated 5m series with absurd prices
            ts = _ms(START) + i * MINUTE
            candles.append(Candle(
                event_id=stable_id("candle", exchange, symbol, "5m", ts), ts=ts, schema_version=SCHEMA_VERSION,
                exchange=exchange, symbol=symbol, timeframe="5m", open=1e6, high=2e6, low=1.0, close=1e6,
                volume=1e6, trades=1000, source="test",
            ))
    return candles


def expected_rollup(candles: list[Candle], timeframe: str) -> list[tuple[object, ...]]:
    """The rollup computed independently in Python: epoch-aligned buckets of the 1m candles."""
    width = TIMEFRAMES[timeframe]
    buckets: dict[tuple[str, int], list[Candle]] = {}
    for candle in sorted((c for c in candles if c.timeframe == "1m"), key=lambda c: (c.symbol, c.ts)):
        buckets.setdefault((candle.symbol, candle.ts - candle.ts % width), []).append(candle)
    return [
        (symbol, bucket, group[0].open, max(c.high for c in group), min(c.low for c in group), group[-1].close,
         sum(c.volume for c in group), sum(c.trades for c in group), len(group))
        for (symbol, bucket), group in sorted(buckets.items())
    ]


def rollup_rows(conn: psycopg.Connection, view: str, exchange: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.execute(
        f"""SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint, open, high, low, close, volume, trades, candles
            FROM {view} WHERE exchange = %s ORDER BY symbol, ts""",
        (exchange,),
    ).fetchall()]


# (configuration, minutes after START when the trade closes, pnl, fees)
KNOWN_TRADES = [
    ("a", 5, 10.0, 0.5), ("a", 20, -4.0, 0.5), ("a", 50, 6.0, 0.25),  # a: 22:xx, 3 trades, 2 wins
    ("a", 95, -2.5, 0.25),  # a: 00:05 next day
    ("a", 150, 7.5, 0.5),  # a: 01:00
    ("b", 10, -1.0, 0.0), ("b", 15, -3.0, 0.0),  # b: two losses in the first hour
    ("b", 100, 0.0, 0.25),  # b: break-even is not a win
]


def insert_trades(conn: psycopg.Connection, prefix: str) -> None:
    for config in ("a", "b"):
        conn.execute(
            """INSERT INTO trained_configurations (id, strategy, exchange, symbols, timeframe)
               VALUES (%s, 'ema_cross', 'kraken', ARRAY['BTC/USDT'], '1m')""",
            (f"{prefix}-{config}",),
        )
    for n, (config, minutes, pnl, fees) in enumerate(KNOWN_TRADES):
        exit_ts = START + timedelta(minutes=minutes)
        conn.execute(
            """INSERT INTO trades (trade_id, configuration_id, account_id, exchange, symbol, side, quantity,
                                   entry_ts, entry_price, exit_ts, exit_price, pnl, fees)
               VALUES (%s, %s, 'paper', 'kraken', 'BTC/USDT', 'long', 1, %s, 100, %s, 100 + %s, %s, %s)""",
            (f"{prefix}-t{n}", f"{prefix}-{config}", exit_ts - timedelta(minutes=3), exit_ts, pnl, pnl, fees),
        )
    conn.commit()


def expected_performance(prefix: str, timeframe: str) -> list[tuple[object, ...]]:
    width = TIMEFRAMES[timeframe]
    groups: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for config, minutes, pnl, fees in KNOWN_TRADES:
        ts = _ms(START) + minutes * MINUTE
        groups.setdefault((f"{prefix}-{config}", ts - ts % width), []).append((pnl, fees))
    rows = []
    for (config, bucket), trades in sorted(groups.items()):
        pnls = [pnl for pnl, _ in trades]
        wins = sum(1 for pnl in pnls if pnl > 0)
        rows.append((config, bucket, len(pnls), wins, wins / len(pnls), sum(pnls), sum(pnls) / len(pnls),
                     sum(fees for _, fees in trades)))
    return rows


def performance_rows(conn: psycopg.Connection, view: str, prefix: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.execute(
        f"""SELECT configuration_id, (extract(epoch FROM ts) * 1000)::bigint, trade_count, wins, win_rate,
                   total_pnl, avg_pnl, total_fees
            FROM {view} WHERE configuration_id LIKE %s ORDER BY configuration_id, ts""",
        (f"{prefix}-%",),
    ).fetchall()]


def assert_all_rollups(conn: psycopg.Connection, candles: list[Candle], exchange: str, prefix: str) -> None:
    for timeframe, view in CANDLE_VIEWS.items():
        assert rollup_rows(conn, view, exchange) == expected_rollup(candles, timeframe), view
    for timeframe, view in PERFORMANCE_VIEWS.items():
        assert performance_rows(conn, view, prefix) == expected_performance(prefix, timeframe), view


# ------------------------------------------------------------------------------------------------------ tests


def test_rollups_return_the_expected_numbers(backend: Settings) -> None:
    """Same data, same numbers, on the plain views and on the continuous aggregates."""
    exchange, prefix = f"x{_tag()}", f"c{_tag()}"
    candles = known_candles(exchange)
    with connect(backend) as conn:
        assert upsert_candles(conn, candles) == len(candles)
        insert_trades(conn, prefix)
        assert_all_rollups(conn, candles, exchange, prefix)  # plain views; real-time aggregates before any refresh

    # a sanity anchor besides the reference computation: the first 5m candle of BTC from its own rows
    first = expected_rollup(candles, "5m")[0]
    assert first[:2] == ("BTC/USDT", _ms(START)) and first[8] == 5
    assert len(expected_rollup(candles, "1d")) == 4  # two symbols, two UTC days
    assert [row[1] for row in expected_rollup(candles, "4h")][:2] == [_ms(datetime(2024, 1, 1, 20, tzinfo=UTC)),
                                                                      _ms(datetime(2024, 1, 2, tzinfo=UTC))]


def test_continuous_aggregates_materialize_the_expected_numbers(timescale: Settings) -> None:
    """After a refresh, the materialized rows alone (real-time part switched off) hold the right numbers."""
    exchange, prefix = f"x{_tag()}", f"c{_tag()}"
    candles = known_candles(exchange)
    with connect(timescale, autocommit=True) as conn:
        upsert_candles(conn, candles)
        insert_trades(conn, prefix)
        for view in sorted(AGGREGATES):
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
        _set_materialized_only(conn, True)
        try:
            assert_all_rollups(conn, candles, exchange, prefix)
        finally:
            _set_materialized_only(conn, False)


def _set_materialized_only(conn: psycopg.Connection, value: bool) -> None:
    for view in sorted(AGGREGATES):
        conn.execute(f"ALTER MATERIALIZED VIEW {view} SET (timescaledb.materialized_only = {str(value).lower()})")


def test_schema_is_timescale_where_it_should_be(timescale: Settings) -> None:
    assert migrate(timescale) == []  # idempotent here too
    with connect(timescale) as conn:
        variants = dict(conn.execute("SELECT name, variant FROM schema_migrations").fetchall())
        assert variants == {"core": "all", "timeseries": "timescale", "rollups": "timescale", "training": "all",
                            "paper_trading": "all"}
        dimensions = dict(conn.execute(
            "SELECT hypertable_name, column_name FROM timescaledb_information.dimensions"
            " WHERE hypertable_schema = 'public' AND hypertable_name NOT LIKE '\\_%'"
        ).fetchall())
        assert dimensions == HYPERTABLES
        compressed = {row[0] for row in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE compression_enabled"
        ).fetchall()}
        assert compressed == set(HYPERTABLES)
        aggregates = dict(conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        ).fetchall())
        assert aggregates == dict.fromkeys(AGGREGATES, False)  # real-time, as current as the plain views


def test_policies_are_registered(timescale: Settings) -> None:
    with connect(timescale) as conn:
        jobs = conn.execute(
            """SELECT j.proc_name, coalesce(c.view_name, j.hypertable_name), j.config
               FROM timescaledb_information.jobs j
               LEFT JOIN timescaledb_information.continuous_aggregates c
                 ON c.materialization_hypertable_name = j.hypertable_name
               WHERE j.proc_name IN ('policy_compression', 'policy_retention', 'policy_refresh_continuous_aggregate')
            """
        ).fetchall()
    by_kind: dict[str, dict[str, dict[str, object]]] = {}
    for proc, target, config in jobs:
        by_kind.setdefault(proc, {})[target] = config
    assert set(by_kind["policy_compression"]) == set(HYPERTABLES)
    assert {name: config["drop_after"] for name, config in by_kind["policy_retention"].items()} == {
        "portfolio_history": "730 days", "trade_logs": "90 days",
    }
    refresh = by_kind["policy_refresh_continuous_aggregate"]
    assert set(refresh) == AGGREGATES
    assert all(config["start_offset"] is None for config in refresh.values())  # backfills get rolled up too


def test_views_and_tables_have_the_same_columns_on_both_variants(settings: Settings, timescale: Settings) -> None:
    """Nothing above the store can tell the variants apart by names or types."""
    query = """SELECT table_name, column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"""
    with connect(settings) as conn:
        plain = conn.execute(query).fetchall()
    with connect(timescale) as conn:
        timescale_columns = conn.execute(query).fetchall()
    assert plain == timescale_columns
    assert AGGREGATES <= {row[0] for row in plain}


def _job_id(conn: psycopg.Connection, proc: str, hypertable: str) -> int:
    row = conn.execute(
        """SELECT j.job_id FROM timescaledb_information.jobs j
           LEFT JOIN timescaledb_information.continuous_aggregates c
             ON c.materialization_hypertable_name = j.hypertable_name
           WHERE j.proc_name = %s AND coalesce(c.view_name, j.hypertable_name) = %s""",
        (proc, hypertable),
    ).fetchone()
    assert row is not None, f"no {proc} job for {hypertable}"
    return int(row[0])


def test_refresh_policy_job_materializes_new_rows(timescale: Settings) -> None:
    exchange = f"x{_tag()}"
    candles = known_candles(exchange)
    with connect(timescale, autocommit=True) as conn:
        upsert_candles(conn, candles)
        conn.execute("CALL run_job(%s)", (_job_id(conn, "policy_refresh_continuous_aggregate", "market_candles_1h"),))
        conn.execute("ALTER MATERIALIZED VIEW market_candles_1h SET (timescaledb.materialized_only = true)")
        try:
            assert rollup_rows(conn, "market_candles_1h", exchange) == expected_rollup(candles, "1h")
        finally:
            conn.execute("ALTER MATERIALIZED VIEW market_candles_1h SET (timescaledb.materialized_only = false)")


def test_compressed_chunks_still_take_upserts(timescale: Settings) -> None:
    exchange = f"x{_tag()}"
    candles = known_candles(exchange)
    start, end = _ms(START), _ms(START) + 180 * MINUTE
    with connect(timescale, autocommit=True) as conn:
        upsert_candles(conn, candles)
        conn.execute("CALL run_job(%s)", (_job_id(conn, "policy_compression", "market_data"),))
        states = conn.execute(
            """SELECT DISTINCT is_compressed FROM timescaledb_information.chunks
               WHERE hypertable_name = 'market_data' AND range_end > %s AND range_start < %s""",
            (START, START + timedelta(hours=3)),
        ).fetchall()
        assert states == [(True,)]  # 2024 is long past compress_after

        revised = [c for c in candles if c.symbol == "BTC/USDT" and c.timeframe == "1m"][:10]
        for candle in revised:
            candle.close = candle.open
            candle.high = candle.open + 50.0
        assert upsert_candles(conn, revised) == 10
        assert upsert_candles(conn, revised) == 0
        stored = fetch_candles(conn, exchange, "BTC/USDT", "1m", start, end)
        assert len(stored) == 180 == candle_count(conn, exchange, "BTC/USDT", "1m")
        assert [(c.ts, c.high, c.close) for c in stored[:10]] == [(c.ts, c.high, c.close) for c in revised]


def test_retention_policy_drops_only_old_snapshots(timescale: Settings) -> None:
    account = f"acct-{_tag()}"
    now = datetime.now(UTC)
    with connect(timescale, autocommit=True) as conn:
        for n, ts in enumerate((now - timedelta(days=1000), now - timedelta(days=1))):
            conn.execute(
                """INSERT INTO portfolio_history (snapshot_id, ts, account_id, cash, equity)
                   VALUES (%s, %s, %s, 1000, 1000)""",
                (f"{account}-{n}", ts, account),
            )
        conn.execute("CALL run_job(%s)", (_job_id(conn, "policy_retention", "portfolio_history"),))
        kept = conn.execute(
            "SELECT snapshot_id FROM portfolio_history WHERE account_id = %s", (account,)
        ).fetchall()
    assert kept == [(f"{account}-1",)]


def test_server_helper_fails_clearly_without_its_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.timescale_server as helper

    monkeypatch.setattr(helper, "PGLITE_DIR", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="npm ci --prefix deploy/pglite"), timescale_server(tmp_path):
        pass
