"""The migration runner on the real PostgreSQL: fresh databases, idempotency, forward-only checks, transactions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from tradepulse.db import MIGRATIONS_DIR, MigrationError, connect, load_migrations, migrate
from tradepulse.settings import Settings

PRODUCT_TABLES = {
    "users", "exchange_connections", "market_data", "trained_configurations", "optimization_trials",
    "backtest_runs", "signals", "orders", "fills", "trades", "positions", "portfolio_history", "trade_logs",
    "worker_heartbeats", "dead_letters", "lifecycle_decisions", "accounts", "schema_migrations",
}
SHIPPED = len({m.version for m in load_migrations(MIGRATIONS_DIR, timescale=False)})
ROLLUP_VIEWS = {
    "market_candles_5m", "market_candles_15m", "market_candles_1h", "market_candles_4h", "market_candles_1d",
    "strategy_performance_hourly", "strategy_performance_daily",
}


def _with_dbname(url: str, dbname: str) -> str:
    return urlsplit(url)._replace(path=f"/{dbname}").geturl()


@pytest.fixture
def empty(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a new, empty database on the test server (the `settings` one is already migrated)."""
    name = f"empty_{uuid.uuid4().hex[:10]}"
    admin_url = _with_dbname(settings.database.url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    yield settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": _with_dbname(settings.database.url, name)})}
    )
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    """A private copy of the shipped migrations, free to edit."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    return directory


def _relations(conn: psycopg.Connection, kind: str) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = %s",
        (kind,),
    ).fetchall()
    return {row[0] for row in rows}


def _recorded(conn: psycopg.Connection) -> list[tuple[int, str, str, str]]:
    return [tuple(row) for row in conn.execute(
        "SELECT version, name, variant, checksum FROM schema_migrations ORDER BY version"
    ).fetchall()]


def _primary_key(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        """
        SELECT a.attname FROM pg_index i
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.n
        """,
        (table,),
    ).fetchall()
    return [row[0] for row in rows]


def test_a_fresh_database_gets_every_plain_migration(empty: Settings) -> None:
    expected = load_migrations(MIGRATIONS_DIR, timescale=False)
    assert migrate(empty) == [m.label for m in expected]
    with connect(empty) as conn:
        assert _recorded(conn) == [(m.version, m.name, m.variant, m.checksum) for m in expected]
        assert {m.variant for m in expected} == {"all", "plain"}
        assert _relations(conn, "BASE TABLE") == PRODUCT_TABLES
        assert _relations(conn, "VIEW") == ROLLUP_VIEWS
        # hypertable-ready keys: the time column is part of every time-series table's primary key
        assert _primary_key(conn, "market_data") == ["exchange", "symbol", "timeframe", "ts"]
        assert _primary_key(conn, "fills") == ["fill_id", "ts"]
        assert _primary_key(conn, "trades") == ["trade_id", "exit_ts"]
        assert _primary_key(conn, "portfolio_history") == ["snapshot_id", "ts"]
        assert _primary_key(conn, "dead_letters") == ["event_id"]
        secrets = conn.execute(
            """SELECT column_name FROM information_schema.columns WHERE table_name = 'exchange_connections'
               AND (column_name LIKE '%%secret%%' OR column_name LIKE '%%api_key%%' OR column_name = 'password')"""
        ).fetchall()
        assert secrets == []  # credentials are referenced, never stored


def test_the_test_database_is_migrated_and_migrating_again_is_a_no_op(settings: Settings) -> None:
    history = "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY 1"
    with connect(settings) as conn:
        before = conn.execute(history).fetchall()
    assert [row[0] for row in before] == [m.version for m in load_migrations(MIGRATIONS_DIR, timescale=False)]
    assert migrate(settings) == []
    assert migrate(settings) == []
    with connect(settings) as conn:
        assert conn.execute(history).fetchall() == before


def test_new_migrations_are_applied_forward(empty: Settings, migrations: Path) -> None:
    migrate(empty, migrations)
    (migrations / "0099_extra.sql").write_text("CREATE TABLE extra (id int PRIMARY KEY);\n")
    assert migrate(empty, migrations) == ["0099_extra.sql"]
    with connect(empty) as conn:
        assert "extra" in _relations(conn, "BASE TABLE")
        assert _recorded(conn)[-1][:3] == (99, "extra", "all")


def test_a_changed_migration_is_refused(empty: Settings, migrations: Path) -> None:
    migrate(empty, migrations)
    core = migrations / "0001_core.sql"
    core.write_text(core.read_text() + "\nCREATE TABLE sneaky (id int);\n")
    (migrations / "0099_extra.sql").write_text("CREATE TABLE extra (id int);\n")
    with pytest.raises(MigrationError, match=r"0001_core\.sql was changed after it was applied.*forward-only"):
        migrate(empty, migrations)
    with connect(empty) as conn:  # nothing further ran
        assert not {"sneaky", "extra"} & _relations(conn, "BASE TABLE")
        assert max(row[0] for row in _recorded(conn)) == SHIPPED


def test_a_removed_migration_is_refused(empty: Settings, migrations: Path) -> None:
    migrate(empty, migrations)
    (migrations / "0002_timeseries.plain.sql").unlink()
    (migrations / "0002_timeseries.timescale.sql").unlink()
    with pytest.raises(MigrationError, match="0002_timeseries is missing on disk"):
        migrate(empty, migrations)


def test_a_failing_migration_is_rolled_back_whole(empty: Settings, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int);\nSELECT 1 / 0;\n")
    with pytest.raises(MigrationError, match=r"0002_bad\.sql: DivisionByZero"):
        migrate(empty, tmp_path)
    with connect(empty) as conn:
        assert _relations(conn, "BASE TABLE") == {"ok", "schema_migrations"}
        assert [row[:2] for row in _recorded(conn)] == [(1, "ok")]


def test_no_transaction_files_run_in_autocommit(empty: Settings, tmp_path: Path) -> None:
    concurrent_index = "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_id_idx ON t (id);\n"
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (id int);")
    (tmp_path / "0002_index.sql").write_text(concurrent_index)
    with pytest.raises(MigrationError, match="cannot run inside a transaction block"):
        migrate(empty, tmp_path)

    (tmp_path / "0002_index.sql").write_text("-- tradepulse: no-transaction\n" + concurrent_index)
    assert migrate(empty, tmp_path) == ["0002_index.sql"]
    with connect(empty) as conn:
        assert conn.execute("SELECT to_regclass('t_id_idx') IS NOT NULL").fetchone() == (True,)


def test_concurrent_runners_apply_each_migration_once(empty: Settings) -> None:
    results: list[list[str]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(empty))
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert sorted(label for applied in results for label in applied) == sorted(
        m.label for m in load_migrations(MIGRATIONS_DIR, timescale=False)
    )


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRADEPULSE_DATABASE__URL": settings.database.url, "COLUMNS": "200"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("tradepulse")), "db", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )


def test_cli_status_and_migrate(empty: Settings) -> None:
    before = _cli(empty, "status")
    assert before.returncode == 0, before.stderr
    assert f"0 applied, {SHIPPED} pending" in before.stdout and "not available" in before.stdout

    applied = _cli(empty, "migrate")
    assert applied.returncode == 0, applied.stderr
    assert "applied 0001_core.sql" in applied.stdout and f"{SHIPPED} migration(s) applied" in applied.stdout
    assert "up to date" in _cli(empty, "migrate").stdout

    after = _cli(empty, "status")
    assert f"{SHIPPED} applied, 0 pending" in after.stdout


def test_cli_reports_an_unreachable_database_without_a_traceback(empty: Settings) -> None:
    unreachable = empty.model_copy(update={"database": empty.database.model_copy(
        update={"url": "postgresql://nobody:hunter2@127.0.0.1:1/none"})})
    result = _cli(unreachable, "migrate")
    assert result.returncode == 1
    assert "is not usable" in result.stderr and "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
