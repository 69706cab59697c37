"""The migration runner's pure parts: statement splitting, variant selection, directives, retry decisions."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from tradepulse.db import (
    MIGRATIONS_DIR,
    Migration,
    MigrationError,
    is_transient,
    load_migrations,
    select_migrations,
    split_sql,
    with_retry,
)

# ------------------------------------------------------------------------------------------------ split_sql


def test_splits_on_top_level_semicolons_and_drops_empty_statements() -> None:
    assert split_sql("SELECT 1; SELECT 2;\n;  ;\nSELECT 3") == ["SELECT 1", "SELECT 2", "SELECT 3"]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'a;b'",
        "SELECT 'it''s; fine'",
        "SELECT E'back\\'slash; quote'",
        'SELECT 1 AS "odd;name"',
        'SELECT 1 AS "say ""hi"";"',
        "SELECT $$ ; $$",
        "SELECT $body$ BEGIN RETURN 1; END; $$ nested $$ $body$",
        "SELECT 1 /* a; /* nested; */ still comment; */ + 1",
        "SELECT 1 -- trailing; comment\n + 1",
    ],
)
def test_semicolons_inside_quotes_dollar_quotes_and_comments_do_not_split(statement: str) -> None:
    assert split_sql(f"{statement}; SELECT 2;") == [statement, "SELECT 2"]


def test_plpgsql_function_body_stays_whole() -> None:
    script = """
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        NEW.updated_at := now();
        RETURN NEW;
    END;
    $fn$;
    CREATE TABLE t (id int);
    """
    statements = split_sql(script)
    assert len(statements) == 2
    assert statements[0].startswith("CREATE FUNCTION") and statements[0].endswith("$fn$")
    assert statements[1] == "CREATE TABLE t (id int)"


def test_dollar_signs_that_are_not_quotes_are_left_alone() -> None:
    # a positional parameter and an identifier containing $ do not open a dollar-quoted string
    assert split_sql("PREPARE p AS SELECT $1; SELECT a$b FROM t") == ["PREPARE p AS SELECT $1", "SELECT a$b FROM t"]


def test_a_plain_string_after_an_identifier_ending_in_e_is_not_an_escape_string() -> None:
    # `name'...'` is not E'...': a backslash before the closing quote must not swallow it
    assert split_sql("SELECT some_name'\\'; SELECT 2") == ["SELECT some_name'\\'", "SELECT 2"]


def test_comment_only_statements_are_dropped_but_comments_inside_statements_kept() -> None:
    script = "-- header; with a semicolon\n/* block */;\nSELECT 1 -- why\n;"
    assert split_sql(script) == ["SELECT 1 -- why"]


@pytest.mark.parametrize("script", ["SELECT 'open", 'SELECT "open', "SELECT $$ open", "SELECT 1 /* open"])
def test_unterminated_text_is_an_error(script: str) -> None:
    with pytest.raises(MigrationError, match="unterminated"):
        split_sql(script)


# ----------------------------------------------------------------------------------------- variant selection

FILES = [
    "0001_core.sql",
    "0002_timeseries.plain.sql",
    "0002_timeseries.timescale.sql",
    "0010_later.sql",
    "README.md",
]


def test_timescale_servers_get_the_timescale_variants_in_version_order() -> None:
    assert select_migrations(list(reversed(FILES)), timescale=True) == [
        (1, "core", "all", "0001_core.sql"),
        (2, "timeseries", "timescale", "0002_timeseries.timescale.sql"),
        (10, "later", "all", "0010_later.sql"),
    ]


def test_plain_servers_get_the_plain_variants() -> None:
    assert [row[2:] for row in select_migrations(FILES, timescale=False)] == [
        ("all", "0001_core.sql"),
        ("plain", "0002_timeseries.plain.sql"),
        ("all", "0010_later.sql"),
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0002_x.timescale.sql"], "needs one file or a .timescale/.plain pair"),
        (["0002_x.sql", "0002_x.plain.sql"], "needs one file or a .timescale/.plain pair"),
        (["0002_x.timescale.sql", "0002_y.plain.sql"], "must share a name"),
        (["0002_x.sql", "0002_y.sql"], "two migrations for version 0002"),
        (["2_x.sql"], "badly named"),
        (["0002_Bad-Name.sql"], "badly named"),
    ],
)
def test_inconsistent_sets_of_files_are_refused(files: list[str], message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        select_migrations(files, timescale=True)


def test_no_transaction_directive_is_read_from_the_header_only(tmp_path: Path) -> None:
    def migration(sql: str) -> Migration:
        return Migration(1, "x", "all", tmp_path / "0001_x.sql", sql)

    assert not migration("-- why this file exists\n-- tradepulse: no-transaction\n\nSELECT 1;").transactional
    assert migration("SELECT 1;\n-- tradepulse: no-transaction\n").transactional
    assert migration("-- an ordinary header\nSELECT 1;").transactional


def test_the_shipped_migrations_form_consistent_variants() -> None:
    timescale = load_migrations(MIGRATIONS_DIR, timescale=True)
    plain = load_migrations(MIGRATIONS_DIR, timescale=False)
    assert [(m.version, m.name) for m in timescale] == [(m.version, m.name) for m in plain]
    assert timescale[0].label == "0001_core.sql" and timescale[0] == plain[0]
    for migration in timescale + plain:
        assert split_sql(migration.sql), migration.label
    # continuous aggregates cannot be created in a transaction; their plain views can
    rollups = {m.variant: m for m in timescale + plain if m.name == "rollups"}
    assert not rollups["timescale"].transactional
    assert rollups["plain"].transactional


# --------------------------------------------------------------------------------------------------- retrying


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (psycopg.OperationalError("connection refused"), True),  # client side, no SQLSTATE
        (errors.SerializationFailure("40001"), True),
        (errors.DeadlockDetected("40P01"), True),
        (errors.AdminShutdown("57P01"), True),
        (errors.CannotConnectNow("57P03"), True),
        (errors.ConnectionFailure("08006"), True),
        (errors.QueryCanceled("57014"), False),  # a statement timeout would only time out again
        (errors.UniqueViolation("23505"), False),
        (errors.CheckViolation("23514"), False),
        (ValueError("not a database error"), False),
    ],
)
def test_transient_errors_are_recognised(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_with_retry_retries_transient_errors_until_success() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return "written"

    assert with_retry(flaky, attempts=5, base_delay=0) == "written"
    assert len(calls) == 3


def test_with_retry_gives_up_after_the_last_attempt_and_never_retries_permanent_errors() -> None:
    calls: list[str] = []

    def always(exc: Exception) -> None:
        calls.append(type(exc).__name__)
        raise exc

    with pytest.raises(psycopg.OperationalError):
        with_retry(lambda: always(psycopg.OperationalError("down")), attempts=3, base_delay=0)
    assert calls == ["OperationalError"] * 3

    calls.clear()
    with pytest.raises(errors.UniqueViolation):
        with_retry(lambda: always(errors.UniqueViolation("dup")), attempts=3, base_delay=0)
    assert calls == ["UniqueViolation"]
