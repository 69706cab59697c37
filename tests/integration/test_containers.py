"""The stack checks against the docker-compose images (apache/kafka, timescale/timescaledb) via testcontainers.

They run where a Docker engine answers and skip cleanly elsewhere (TRADEPULSE_TEST_CONTAINERS=0 turns them off).
The broker container gets its configuration from docker-compose.yml, so these tests exercise that file's setup.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from streams.admin import describe_topics
from streams.topics import CONFIGS, LOGS, TICKS, topic_name

# pytest puts this directory on sys.path (tests/integration has no __init__.py)
from tests.integration.test_stack import consume, produce
from tradepulse.settings import DatabaseSettings, KafkaSettings, Settings
from tradepulse.stack import Stack

REPO = Path(__file__).resolve().parents[2]


def docker_unavailable() -> str | None:
    """Why container tests cannot run here, or None when a Docker engine answers."""
    wanted = os.environ.get("TRADEPULSE_TEST_CONTAINERS", "")
    if wanted == "0":
        return "container tests disabled by TRADEPULSE_TEST_CONTAINERS=0"
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:
        requested = " (TRADEPULSE_TEST_CONTAINERS=1 asked for them)" if wanted == "1" else ""
        return f"no Docker engine answers{requested}: {type(exc).__name__}"
    return None


def compose_service(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][name]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def container_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Kafka and TimescaleDB containers as external services of a Settings."""
    reason = docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer

    kafka_spec, db_spec = compose_service("kafka"), compose_service("timescaledb")
    host_port = free_port()
    kafka = DockerContainer(kafka_spec["image"]).with_kwargs(hostname="kafka").with_bind_ports(9094, host_port)
    for key, value in kafka_spec["environment"].items():
        kafka.with_env(key, str(value))
    kafka.with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://kafka:9092,HOST://127.0.0.1:{host_port}")
    db_env = db_spec["environment"]
    database = PostgresContainer(db_spec["image"], username=db_env["POSTGRES_USER"],
                                 password=db_env["POSTGRES_PASSWORD"], dbname=db_env["POSTGRES_DB"])
    with kafka, database:
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        db_port = database.get_exposed_port(5432)
        yield Settings(
            data_dir=tmp_path_factory.mktemp("containers"),
            kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{host_port}", managed=False, partitions=4),
            database=DatabaseSettings(
                url=f"postgresql://{db_env['POSTGRES_USER']}:{db_env['POSTGRES_PASSWORD']}"
                    f"@{database.get_container_host_ip()}:{db_port}/{db_env['POSTGRES_DB']}",
                managed=False),
        )


def test_stack_up_against_containers_migrates_and_creates_topics(container_settings: Settings) -> None:
    status = Stack(container_settings).up()

    assert status.healthy
    assert not status.kafka.managed and not status.postgres.managed
    with psycopg.connect(container_settings.database.url) as conn:
        timescale = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        applied = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert timescale == (1,)
    assert applied is not None and applied[0] >= 1
    topics = {topic.name: topic for topic in describe_topics(container_settings)}
    assert topics[TICKS].partitions == 4
    assert topics[CONFIGS].cleanup_policy == "compact"


def test_container_broker_round_trip(container_settings: Settings) -> None:
    Stack(container_settings).up()
    topic = topic_name(container_settings.kafka.topic_prefix, LOGS)
    sent = [f"container-{uuid.uuid4().hex}".encode() for _ in range(20)]
    asyncio.run(produce(container_settings.kafka.bootstrap_servers, topic, sent))
    received = asyncio.run(consume(container_settings.kafka.bootstrap_servers, topic, 10_000, timeout_s=10))
    assert received[-len(sent):] == sent
