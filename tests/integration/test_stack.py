"""The stack manager against real processes: health, idempotence, clear errors, and data kept across restarts.

Restart tests run on a private stack (ports 21092/21093/21432, its own data dir) so they never disturb other
tests sharing the session's test stack.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from typer.testing import CliRunner

from streams.admin import describe_topics, ensure_topics
from streams.topics import CONFIGS, LOGS, TICKS, topic_name
from tradepulse.commands import stack as stack_cli
from tradepulse.commands import topics as topics_cli
from tradepulse.settings import DatabaseSettings, KafkaSettings, Settings, get_settings
from tradepulse.stack import Stack, StackError, port_in_use


def test_stack_up_reports_both_services_healthy(stack: Stack, stack_settings: Settings) -> None:
    status = stack.status()

    assert status.healthy, status
    assert status.kafka.pid and status.postgres.pid
    assert status.kafka.address == "127.0.0.1:19092"
    assert status.postgres.address == "127.0.0.1:15432"
    with psycopg.connect(stack_settings.database.url) as conn:
        applied = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert applied is not None and applied[0] >= 1
    topics = {topic.name: topic for topic in describe_topics(stack_settings, prefix="")}
    assert topics[TICKS].partitions == 4
    assert topics[CONFIGS].cleanup_policy == "compact"


def test_up_again_is_a_no_op(stack: Stack) -> None:
    before = stack.status()
    again = stack.up()
    assert (again.kafka.pid, again.postgres.pid) == (before.kafka.pid, before.postgres.pid)
    assert again.healthy


def test_settings_fixture_gives_an_isolated_namespace_and_database(settings: Settings) -> None:
    namespace = settings.worker.app_id
    assert settings.kafka.topic_prefix == f"{namespace}."
    assert settings.database.url.endswith(f"/{namespace}")
    topics = {topic.name for topic in describe_topics(settings)}
    assert topic_name(settings.kafka.topic_prefix, TICKS) in topics
    assert all(name.startswith(settings.kafka.topic_prefix) for name in topics)
    with psycopg.connect(settings.database.url) as conn:
        row = conn.execute("SELECT current_database(), to_regclass('schema_migrations') IS NOT NULL").fetchone()
    assert row == (namespace, True)


def scratch_settings(data_dir: Path, kafka_port: int, pg_port: int, **kafka: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{kafka_port}", controller_port=kafka_port + 1,
                            partitions=2, ready_timeout_s=90, **kafka),
        database=DatabaseSettings(url=f"postgresql://tradepulse:tradepulse@127.0.0.1:{pg_port}/tradepulse"),
    )


def test_kafka_port_taken_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 21500))
        squatter.listen()
        with pytest.raises(StackError) as failure:
            Stack(scratch_settings(tmp_path, 21500, 21502)).up()
    message = str(failure.value)
    assert f"127.0.0.1:21500 is already in use by pid {os.getpid()}" in message
    assert "TRADEPULSE_KAFKA__BOOTSTRAP_SERVERS" in message
    assert not (tmp_path / "kafka" / "kafka.pid").exists()


def test_postgres_port_taken_is_a_clear_error_and_nothing_is_left_running(tmp_path: Path) -> None:
    settings = scratch_settings(tmp_path, 21510, 21512)
    stack = Stack(settings)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 21512))
        squatter.listen()
        with pytest.raises(StackError, match=r"PostgreSQL cannot start: 127\.0\.0\.1:21512 is already in use"):
            stack.up()
    assert stack.kafka.pid() is None
    assert not port_in_use("127.0.0.1", 21510)
    assert not (tmp_path / "postgres" / "data" / "PG_VERSION").exists()


@pytest.fixture(scope="module")
def private_stack() -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="tradepulse-private-stack-"))
    data_dir.chmod(0o755)  # the postgres OS user must reach its data dir inside
    own = Stack(scratch_settings(data_dir, 21092, 21432))
    try:
        own.up()
        yield own
    finally:
        own.down()
        shutil.rmtree(data_dir, ignore_errors=True)


def fresh_topic(stack: Stack) -> tuple[Settings, str]:
    """A namespace of topics on the private stack and the physical name of its 1-partition log topic."""
    prefix = f"r{uuid.uuid4().hex[:8]}."
    settings = stack.settings.model_copy(
        update={"kafka": stack.settings.kafka.model_copy(update={"topic_prefix": prefix})})
    ensure_topics(settings)
    return settings, topic_name(prefix, LOGS)


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, key=b"k")
        await producer.flush()
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [record.value for records in batches.values() for record in records]
    finally:
        await consumer.stop()
    return values


def test_records_survive_a_broker_restart(private_stack: Stack) -> None:
    settings, topic = fresh_topic(private_stack)
    bootstrap = settings.kafka.bootstrap_servers
    sent = [f"record-{i}".encode() for i in range(500)]
    asyncio.run(produce(bootstrap, topic, sent))

    private_stack.stop_kafka()
    assert not private_stack.status().kafka.running
    private_stack.start_kafka()

    assert private_stack.status().kafka.running
    assert asyncio.run(consume(bootstrap, topic, len(sent))) == sent


def test_acknowledged_records_survive_a_broker_crash(private_stack: Stack) -> None:
    settings, topic = fresh_topic(private_stack)
    bootstrap = settings.kafka.bootstrap_servers
    sent = [f"crash-{i}".encode() for i in range(200)]
    asyncio.run(produce(bootstrap, topic, sent))
    crashed_pid = private_stack.kafka.pid()

    private_stack.kill_kafka()
    assert crashed_pid is not None and private_stack.kafka.pid() is None
    private_stack.start_kafka()

    assert asyncio.run(consume(bootstrap, topic, len(sent))) == sent


def test_postgres_restart_keeps_data(private_stack: Stack) -> None:
    url = private_stack.settings.database.url
    table = f"restart_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
        conn.execute(f"INSERT INTO {table} SELECT i, 'row ' || i FROM generate_series(1, 1000) AS i")

    private_stack.stop_postgres()
    assert not private_stack.status().postgres.running
    private_stack.start_postgres()

    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*), max(note) FROM {table}").fetchone()
    assert row == (1000, "row 999")


def test_down_is_idempotent_and_up_resumes_from_the_same_data(private_stack: Stack) -> None:
    settings, topic = fresh_topic(private_stack)
    sent = [b"before-down"]
    asyncio.run(produce(settings.kafka.bootstrap_servers, topic, sent))

    private_stack.down()
    private_stack.down()
    stopped = private_stack.status()
    assert not stopped.kafka.running and not stopped.postgres.running

    restarted = private_stack.up()
    assert restarted.healthy
    assert asyncio.run(consume(settings.kafka.bootstrap_servers, topic, 1)) == sent


def test_unreachable_external_services_are_reported_not_started(stack: Stack, tmp_path: Path) -> None:
    settings = scratch_settings(tmp_path, 21520, 21522, managed=False).model_copy(deep=True)
    settings.kafka.ready_timeout_s = 2
    settings.database.managed = False
    settings.database.ready_timeout_s = 2
    with pytest.raises(StackError, match=r"external Kafka at 127\.0\.0\.1:21520 is not reachable"):
        Stack(settings).up()
    settings.kafka.bootstrap_servers = stack.settings.kafka.bootstrap_servers
    with pytest.raises(StackError, match=r"external database at 127\.0\.0\.1:21522 is not reachable"):
        Stack(settings).up()
    assert not (tmp_path / "kafka").exists() and not (tmp_path / "postgres").exists()


def test_broker_not_ready_in_time_reports_its_log_and_is_stopped(stack: Stack, tmp_path: Path) -> None:
    settings = scratch_settings(tmp_path, 21530, 21532).model_copy(deep=True)
    settings.kafka.ready_timeout_s = 0.5
    settings.database = stack.settings.database.model_copy(update={"managed": False})
    broken = Stack(settings)

    with pytest.raises(StackError) as failure:
        broken.up()

    message = str(failure.value)
    assert "Kafka was not ready within 0.5 s (kafka.ready_timeout_s)" in message
    assert f"Last lines of {tmp_path.resolve() / 'kafka' / 'logs'}" in message
    assert broken.kafka.pid() is None
    assert not port_in_use("127.0.0.1", 21530)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The CLI reads its settings from the environment: point it at this test's namespace."""
    env = {
        "TRADEPULSE_DATA_DIR": str(settings.data_dir),
        "TRADEPULSE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "TRADEPULSE_KAFKA__CONTROLLER_PORT": str(settings.kafka.controller_port),
        "TRADEPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "TRADEPULSE_DATABASE__URL": settings.database.url,
        "COLUMNS": "200",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def table_rows(output: str) -> list[list[str]]:
    """The cells of each body row of a rich table."""
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in output.splitlines()
            if line.startswith("│")]


def test_cli_status_logs_and_topics(cli_env: Settings) -> None:
    runner = CliRunner()

    status = runner.invoke(stack_cli.app, ["status"])
    assert status.exit_code == 0, status.output
    assert "127.0.0.1:19092" in status.output and "accepting connections" in status.output

    logs = runner.invoke(stack_cli.app, ["logs", "postgres", "-n", "3"])
    assert logs.exit_code == 0 and len(logs.output.splitlines()) == 3

    listed = runner.invoke(topics_cli.app, ["list"])
    assert listed.exit_code == 0, listed.output
    rows = {cells[0]: cells[1:] for cells in table_rows(listed.output)}
    prefix = cli_env.kafka.topic_prefix
    assert rows[f"{prefix}{CONFIGS}"] == ["1", "compact", "forever"]
    assert rows[f"{prefix}{TICKS}"] == ["4", "delete", "7 d"]

    created = runner.invoke(topics_cli.app, ["create"])
    assert created.exit_code == 0 and "(all existed)" in created.output


def test_cli_reports_an_unreachable_broker_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEPULSE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:21540")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(topics_cli.app, ["list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:21540" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
