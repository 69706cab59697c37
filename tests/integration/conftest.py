"""Fixtures for tests against the real test stack (Kafka 127.0.0.1:19092, PostgreSQL 127.0.0.1:15432).

`stack` brings the stack up once per session; `settings` gives each test its own topic namespace, consumer
group id and database cloned from the migrated template, so tests never see each other's data. Several pytest
sessions may share the stack at once: each holds a lease, and the last one to finish stops it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import errors, sql

from streams.admin import delete_topics, ensure_topics
from tradepulse.settings import DatabaseSettings, KafkaSettings, Settings
from tradepulse.stack import Stack, StackError, pid_alive, wait_until

TEST_DATA_DIR = Path(os.environ.get("TRADEPULSE_TEST_DATA_DIR", "/tmp/tradepulse-test"))
TEMPLATE_DB = "tradepulse"
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs the real stack: mark it so `-m "not integration"` skips it."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


def with_dbname(url: str, dbname: str) -> str:
    """The same database URL pointing at another database (query options kept)."""
    return urlsplit(url)._replace(path=f"/{dbname}").geturl()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _leases(data_dir: Path) -> Iterator[Path]:
    """The lease directory, locked: one live pid file per pytest session using the shared stack."""
    leases = data_dir / "leases"
    leases.mkdir(parents=True, exist_ok=True)
    with (data_dir / "leases.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            for lease in leases.iterdir():
                if not lease.name.isdigit() or not pid_alive(int(lease.name)):
                    lease.unlink(missing_ok=True)
            yield leases
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    return Settings(
        data_dir=TEST_DATA_DIR,
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:19092", controller_port=19093, partitions=4),
        database=DatabaseSettings(url=f"postgresql://tradepulse:tradepulse@127.0.0.1:15432/{TEMPLATE_DB}"),
    )


@pytest.fixture(scope="session")
def stack(stack_settings: Settings) -> Iterator[Stack]:
    """The running test stack. A start failure (no Java, port taken, ...) fails the tests: CI has everything."""
    test_stack = Stack(stack_settings)
    own_lease = str(os.getpid())
    with _leases(TEST_DATA_DIR) as leases:
        (leases / own_lease).touch()
        problem = None
        try:
            test_stack.up()
        except BaseException as exc:
            (leases / own_lease).unlink(missing_ok=True)
            if not isinstance(exc, StackError):
                raise
            problem = str(exc)
    if problem is not None:
        pytest.fail(f"the test stack did not start: {problem}", pytrace=False)
    yield test_stack
    with _leases(TEST_DATA_DIR) as leases:
        (leases / own_lease).unlink(missing_ok=True)
        if not any(leases.iterdir()):
            test_stack.down()


def _create_database(admin_url: str, name: str) -> None:
    """Clone the migrated template; PostgreSQL refuses while anyone is connected to it, so wait that out."""
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE_DB))
    failure: list[Exception] = []

    def attempt() -> bool:
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(statement)
        except errors.ObjectInUse as exc:
            failure[:] = [exc]
            return False
        return True

    if not wait_until(attempt, 20.0):
        raise RuntimeError(f"could not clone database {TEMPLATE_DB!r}: {failure[0]}")


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def settings(stack: Stack, stack_settings: Settings) -> Iterator[Settings]:
    """Settings isolated for one test: own topic prefix, consumer group id, Faust web port and database."""
    if stack.kafka.pid() is None or stack.postgres.pid() is None:
        stack.up()  # an earlier test stopped a service and did not bring it back
    namespace = f"t{uuid.uuid4().hex[:8]}"
    admin_url = with_dbname(stack_settings.database.url, "postgres")
    isolated = stack_settings.model_copy(update={
        "kafka": stack_settings.kafka.model_copy(update={"topic_prefix": f"{namespace}."}),
        "database": stack_settings.database.model_copy(
            update={"url": with_dbname(stack_settings.database.url, namespace)}),
        "worker": stack_settings.worker.model_copy(update={"app_id": namespace, "web_port": free_port()}),
    })
    _create_database(admin_url, namespace)
    ensure_topics(isolated)
    yield isolated
    for cleanup in (lambda: _drop_database(admin_url, namespace), lambda: delete_topics(stack_settings, namespace)):
        try:
            cleanup()
        except Exception as exc:  # best effort: a test that stopped the broker must not fail in teardown
            warnings.warn(f"teardown of {namespace} incomplete: {exc}", stacklevel=1)


@pytest.fixture
def private_database(settings: Settings) -> Iterator[tuple[Stack, Settings]]:
    """A PostgreSQL server of this test's own (migrated), and the test's settings pointing at it."""
    home = Path(tempfile.mkdtemp(prefix="tradepulse-outage-"))
    home.chmod(0o755)  # the server runs as `postgres`, which must reach its data directory
    own = settings.model_copy(update={
        "data_dir": home,
        "kafka": settings.kafka.model_copy(update={"managed": False}),
        "database": settings.database.model_copy(update={
            "url": f"postgresql://tradepulse:tradepulse@127.0.0.1:{free_port()}/tradepulse", "managed": True,
        }),
    })
    stack = Stack(own)
    try:
        stack.up()
        yield stack, own
    finally:
        stack.down()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def private_stack(settings: Settings, tmp_path: Path) -> Iterator[tuple[Stack, Settings]]:
    """A broker of this test's own, and the test's settings pointing at it."""
    own = settings.model_copy(update={
        "data_dir": tmp_path / "stack",
        "kafka": settings.kafka.model_copy(update={
            "bootstrap_servers": f"127.0.0.1:{free_port()}", "controller_port": free_port(), "managed": True,
        }),
        "database": settings.database.model_copy(update={"managed": False}),
    })
    stack = Stack(own)
    stack.up()
    try:
        yield stack, own
    finally:
        stack.down()
