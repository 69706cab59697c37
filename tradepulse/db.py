"""PostgreSQL access: connections, a pool, retry of transient failures and the forward-only migration runner.

Migrations live in sql/migrations as `NNNN_name.sql`, or as a pair `NNNN_name.timescale.sql` /
`NNNN_name.plain.sql` for parts that need TimescaleDB: the runner picks the `.timescale` file when the
`timescaledb` extension is available on the server and the `.plain` one otherwise, and both create the same
relation names, so nothing above the store needs to know which one it runs on. A file whose header carries
`-- tradepulse: no-transaction` is run statement by statement in autocommit (continuous aggregates cannot be
created inside a transaction); such files must be safe to re-run (IF NOT EXISTS) since a failure leaves them
partly applied. Every other file runs in one transaction together with its schema_migrations row.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"
NO_TRANSACTION_MARKER = "tradepulse: no-transaction"
MIGRATION_LOCK_KEY = 0x7470_6D69_6772  # pg_advisory_lock key: migrate runs one process at a time

_FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<variant>timescale|plain))?\.sql$")
_DOLLAR_TAG_RE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")

_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up / recovering)
    }
)


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree, or a file is malformed."""


@dataclass(frozen=True)
class Migration:
    """One migration file chosen for this server."""

    version: int
    name: str
    variant: str  # "all" for single-file versions, else "timescale" or "plain"
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        return NO_TRANSACTION_MARKER not in _header_comments(self.sql)

    @property
    def label(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class AppliedMigration:
    """A row of schema_migrations."""

    version: int
    name: str
    variant: str
    checksum: str
    applied_at: datetime


# --------------------------------------------------------------------------------------------------- connections


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same operation on a fresh connection can succeed (server restart, deadlock, ...)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = exc.sqlstate
    if sqlstate is None:  # raised client-side: connection refused, reset, or closed under us
        return True
    return sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES


def _backoff(attempts: int, base_delay: float, max_delay: float) -> Iterator[float]:
    """Delays between attempts: exponential, capped."""
    for attempt in range(attempts - 1):
        yield min(max_delay, base_delay * 2**attempt)


def with_retry(
    operation: Callable[[], T],
    *,
    attempts: int = 5,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
) -> T:
    """Run `operation`, retrying transient database errors with exponential backoff.

    The operation must be safe to repeat (an upsert keyed by a stable id) and should take its connection from a
    pool inside the call, so a retry gets a healthy connection instead of the broken one.
    """
    for delay in _backoff(attempts, base_delay, max_delay):
        try:
            return operation()
        except psycopg.OperationalError as exc:
            if not is_transient(exc):
                raise
            logger.warning("transient database error, retrying in %.2fs: %s", delay, exc)
            time.sleep(delay)
    return operation()


def _connect_timeout(settings: Settings) -> int:
    return max(1, min(10, int(settings.database.ready_timeout_s)))


def connect(settings: Settings, *, autocommit: bool = False, attempts: int = 5) -> psycopg.Connection:
    """A connection to `settings.database.url` (which may carry sslmode etc.), retried while the server is away."""
    url = settings.database.url
    return with_retry(
        lambda: psycopg.connect(url, autocommit=autocommit, connect_timeout=_connect_timeout(settings)),
        attempts=attempts,
    )


def create_pool(settings: Settings, *, wait: bool = True) -> ConnectionPool:
    """An opened pool; connections are checked on checkout so a server restart costs one retry, not an outage.

    `wait=False` returns at once and lets the pool connect in the background: a server (the API) must come up and
    report the database as down rather than refuse to start.
    """
    pool = ConnectionPool(
        settings.database.url,
        min_size=settings.database.pool_min,
        max_size=max(settings.database.pool_min, settings.database.pool_max),
        kwargs={"connect_timeout": _connect_timeout(settings)},
        check=ConnectionPool.check_connection,
        open=False,
        name="tradepulse",
    )
    pool.open(wait=wait, timeout=settings.database.ready_timeout_s)
    return pool


def timescale_available(conn: psycopg.Connection) -> bool:
    """Whether this server can run the `.timescale` migration variants."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')").fetchone()
    return bool(row and row[0])


# ------------------------------------------------------------------------------------------------------ SQL text


def split_sql(sql: str) -> list[str]:
    """Split a script into statements on top-level semicolons.

    Semicolons inside quotes ('..', E'..' with backslash escapes, ".."), dollar-quoted bodies ($$..$$, $tag$..$tag$)
    and comments (--, nested /* */) do not split. Statements that are only comments are dropped.
    """
    statements: list[str] = []
    start = 0
    has_code = False
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        if ch == "-" and nxt == "-":
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if ch == "/" and nxt == "*":
            i = _skip_block_comment(sql, i)
            continue
        if ch == ";":
            if has_code:
                statements.append(sql[start:i].strip())
            start = i + 1
            has_code = False
            i += 1
            continue
        if ch.isspace():
            i += 1
            continue
        has_code = True
        if ch == "'":
            escaped = i > 0 and sql[i - 1] in "eE" and (i == 1 or not _is_ident_char(sql[i - 2]))
            i = _skip_quoted(sql, i, "'", backslash=escaped)
        elif ch == '"':
            i = _skip_quoted(sql, i, '"', backslash=False)
        elif ch == "$" and (i == 0 or not _is_ident_char(sql[i - 1])):
            match = _DOLLAR_TAG_RE.match(sql, i)
            if match:
                close = sql.find(match.group(), match.end())
                if close == -1:
                    raise MigrationError(f"unterminated dollar-quoted string starting at offset {i}")
                i = close + len(match.group())
            else:
                i += 1
        else:
            i += 1
    if has_code:
        statements.append(sql[start:].strip())
    return statements


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _skip_quoted(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    """Index just past the string or identifier opened at `i` (a doubled quote is an escaped quote)."""
    j = i + 1
    n = len(sql)
    while j < n:
        ch = sql[j]
        if backslash and ch == "\\":
            j += 2
            continue
        if ch == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    raise MigrationError(f"unterminated {quote}-quoted text starting at offset {i}")


def _skip_block_comment(sql: str, i: int) -> int:
    depth = 0
    j = i
    n = len(sql)
    while j < n:
        if sql.startswith("/*", j):
            depth += 1
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    raise MigrationError(f"unterminated block comment starting at offset {i}")


def _header_comments(sql: str) -> str:
    """The leading `--` comment lines of a file, where directives such as no-transaction live."""
    lines: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        lines.append(stripped[2:].strip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- migrations


def select_migrations(filenames: list[str], *, timescale: bool) -> list[tuple[int, str, str, str]]:
    """Pick, per version, the file to run on this server: `(version, name, variant, filename)` in order.

    A version is either one plain-named file or a `.timescale` + `.plain` pair with the same name; anything else
    (a lone variant, duplicates, a badly named .sql file) is an error, because it would give servers different
    schemas.
    """
    by_version: dict[int, dict[str, tuple[str, str]]] = {}
    for filename in filenames:
        if not filename.endswith(".sql"):
            continue
        match = _FILE_RE.match(filename)
        if not match:
            raise MigrationError(f"badly named migration {filename!r}: expected NNNN_name[.timescale|.plain].sql")
        version = int(match["version"])
        variant = match["variant"] or "all"
        variants = by_version.setdefault(version, {})
        if variant in variants:
            raise MigrationError(f"two migrations for version {version:04d}: {variants[variant][1]}, {filename}")
        variants[variant] = (match["name"], filename)

    chosen: list[tuple[int, str, str, str]] = []
    for version in sorted(by_version):
        variants = by_version[version]
        files = sorted(filename for _, filename in variants.values())
        if set(variants) == {"all"}:
            name, filename = variants["all"]
            chosen.append((version, name, "all", filename))
            continue
        if set(variants) != {"timescale", "plain"}:
            raise MigrationError(
                f"version {version:04d} needs one file or a .timescale/.plain pair, found: {', '.join(files)}"
            )
        if variants["timescale"][0] != variants["plain"][0]:
            raise MigrationError(f"the variants of version {version:04d} must share a name: {', '.join(files)}")
        variant = "timescale" if timescale else "plain"
        name, filename = variants[variant]
        chosen.append((version, name, variant, filename))
    return chosen


def load_migrations(directory: Path, *, timescale: bool) -> list[Migration]:
    """The migrations of `directory` as they would run on a server with or without TimescaleDB."""
    chosen = select_migrations(sorted(p.name for p in directory.iterdir()), timescale=timescale)
    return [
        Migration(version, name, variant, directory / filename, (directory / filename).read_text(encoding="utf-8"))
        for version, name, variant, filename in chosen
    ]


_SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    variant    text        NOT NULL CHECK (variant IN ('all', 'timescale', 'plain')),
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def applied_migrations(conn: psycopg.Connection) -> dict[int, AppliedMigration]:
    """What schema_migrations records (empty before the first migrate)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not (exists and exists[0]):
        return {}
    rows = conn.execute(
        "SELECT version, name, variant, checksum, applied_at FROM schema_migrations ORDER BY version"
    ).fetchall()
    return {row[0]: AppliedMigration(*row) for row in rows}


def pending_migrations(
    conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR
) -> tuple[list[AppliedMigration], list[Migration]]:
    """`(applied, pending)` after checking that no applied file was changed or removed (forward-only)."""
    applied = applied_migrations(conn)
    timescale = timescale_available(conn)
    _verify_applied(applied, directory)
    pending = [m for m in load_migrations(directory, timescale=timescale) if m.version not in applied]
    return list(applied.values()), pending


def _verify_applied(applied: dict[int, AppliedMigration], directory: Path) -> None:
    """Refuse to go on if a migration already applied no longer matches its file: history is never rewritten."""
    on_disk = {
        (m.version, m.variant): m
        for timescale in (True, False)
        for m in load_migrations(directory, timescale=timescale)
    }
    for record in applied.values():
        migration = on_disk.get((record.version, record.variant))
        if migration is None:
            raise MigrationError(f"applied migration {record.version:04d}_{record.name} is missing on disk")
        if migration.checksum != record.checksum:
            raise MigrationError(
                f"applied migration {migration.label} was changed after it was applied "
                f"(checksum {record.checksum[:12]} in the database, {migration.checksum[:12]} on disk); "
                "migrations are forward-only: add a new migration instead"
            )


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    statements = split_sql(migration.sql)
    record = (
        "INSERT INTO schema_migrations (version, name, variant, checksum) VALUES (%s, %s, %s, %s)",
        (migration.version, migration.name, migration.variant, migration.checksum),
    )
    started = time.perf_counter()
    if migration.transactional:
        with conn.transaction():
            for statement in statements:
                _execute(conn, migration, statement)
            conn.execute(*record)
    else:
        for statement in statements:
            _execute(conn, migration, statement)
        conn.execute(*record)
    logger.info("applied migration %s in %.2fs", migration.label, time.perf_counter() - started)


def _execute(conn: psycopg.Connection, migration: Migration, statement: str) -> None:
    try:
        conn.execute(statement, prepare=False)
    except psycopg.Error as exc:
        first_line = statement.splitlines()[0] if statement else ""
        raise MigrationError(f"{migration.label}: {type(exc).__name__}: {exc} (statement: {first_line})") from exc


def migrate_connection(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations on an autocommit connection; returns the applied file names."""
    if not conn.autocommit:
        raise ValueError("migrate_connection needs an autocommit connection")
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(_SCHEMA_MIGRATIONS_DDL)
        _, pending = pending_migrations(conn, directory)
        for migration in pending:
            _apply(conn, migration)
        return [m.label for m in pending]
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def migrate(settings: Settings, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Bring the database at `settings.database.url` up to date; idempotent, returns the applied file names."""
    with connect(settings, autocommit=True) as conn:
        applied = migrate_connection(conn, directory)
    if applied:
        logger.info("database migrated: %s", ", ".join(applied))
    else:
        logger.info("database schema up to date")
    return applied
