"""The stack manager's pure parts: config rendering, address parsing, prerequisite checks and their messages."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import stat
from pathlib import Path

import pytest
import yaml

from streams.admin import new_topics
from streams.topics import CONFIGS, TICKS, TOPICS, candle_topic
from tradepulse.settings import DatabaseSettings, KafkaSettings, Settings
from tradepulse.stack import (
    DatabaseTarget,
    ServiceStatus,
    StackError,
    StackStatus,
    ensure_kafka_libs,
    find_java,
    find_pg_bindir,
    kafka_libs_current,
    new_cluster_id,
    parse_bootstrap,
    parse_java_version,
    port_in_use,
    port_taken_error,
    render_server_properties,
    tail,
)


def scratch_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:21192", controller_port=21193, partitions=4),
        database=DatabaseSettings(url="postgresql://app:secret@127.0.0.1:21432/appdb"),
    )


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_server_properties_describe_a_single_node_kraft_broker(tmp_path: Path) -> None:
    rendered = render_server_properties(scratch_settings(tmp_path), tmp_path / "kafka" / "data")
    props = properties(rendered)

    assert "$" not in rendered
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:21193"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:21192,CONTROLLER://127.0.0.1:21193"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:21192"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert props["num.partitions"] == "4"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "1", key


@pytest.mark.parametrize(
    ("bootstrap", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("localhost:19092,127.0.0.1:19094", ("localhost", 19092)),
        (" [::1]:9092", ("::1", 9092)),
    ],
)
def test_parse_bootstrap_takes_the_first_server(bootstrap: str, expected: tuple[str, int]) -> None:
    assert parse_bootstrap(bootstrap) == expected


@pytest.mark.parametrize("bootstrap", ["127.0.0.1", "127.0.0.1:", ":9092", "host:port"])
def test_parse_bootstrap_rejects_malformed_addresses_with_an_example(bootstrap: str) -> None:
    with pytest.raises(StackError, match=r"expected host:port, e\.g\. 127\.0\.0\.1:9092"):
        parse_bootstrap(bootstrap)


def test_database_target_from_url() -> None:
    target = DatabaseTarget.from_url("postgresql://tradepulse:s%40cret@127.0.0.1:15432/tradepulse")
    assert target == DatabaseTarget("127.0.0.1", 15432, "tradepulse", "s@cret", "tradepulse")


def test_database_target_defaults_port_and_database_name() -> None:
    target = DatabaseTarget.from_url("postgresql://app@db.internal")
    assert (target.host, target.port, target.user, target.password, target.dbname) == (
        "db.internal", 5432, "app", None, "app")


@pytest.mark.parametrize("url", [
    "postgresql://a:s3cret@host/db?bogus_option=1",
    "postgresql://a:s3cret@host:notaport/db",
])
def test_database_target_rejects_garbage_without_echoing_the_password(url: str) -> None:
    with pytest.raises(StackError, match="invalid TRADEPULSE_DATABASE__URL") as raised:
        DatabaseTarget.from_url(url)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "11.0.2" 2019-01-15', 11),
    ],
)
def test_parse_java_version(output: str, major: int) -> None:
    assert parse_java_version(output) == major


def test_parse_java_version_says_what_it_could_not_read() -> None:
    with pytest.raises(StackError, match="cannot read the Java version"):
        parse_java_version("command not found")


def fake_java(tmp_path: Path, version: str) -> Path:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2019-01-15\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


def test_old_java_is_refused_with_the_required_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_java(tmp_path, "11.0.2")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(StackError, match="is Java 11; Kafka 4 needs Java 17 or newer"):
        find_java()


def test_java_17_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = fake_java(tmp_path, "17.0.9")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert find_java() == str(java)


def test_missing_java_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-such-jdk"))
    with pytest.raises(StackError, match=r"Java is not installed.*openjdk-17-jre-headless"):
        find_java()


def test_pg_bindir_is_the_first_candidate_with_the_server_programs(tmp_path: Path) -> None:
    client_only, server = tmp_path / "client" / "bin", tmp_path / "15" / "bin"
    client_only.mkdir(parents=True)
    (client_only / "pg_ctl").touch()
    server.mkdir(parents=True)
    for tool in ("initdb", "pg_ctl", "postgres"):
        (server / tool).touch()
    assert find_pg_bindir([client_only, server]) == server


def test_missing_postgres_binaries_name_the_package(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"Install the `postgresql` package.*bootstrap script"):
        find_pg_bindir([tmp_path])


def test_cluster_id_is_kafka_uuid_format() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cluster_id in ids:
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_taken_port_is_detected_and_the_error_names_port_owner_and_setting() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        message = str(port_taken_error("Kafka", "127.0.0.1", port, "TRADEPULSE_KAFKA__BOOTSTRAP_SERVERS"))
    assert f"127.0.0.1:{port} is already in use by pid {os.getpid()}" in message
    assert "TRADEPULSE_KAFKA__BOOTSTRAP_SERVERS" in message
    assert not port_in_use("127.0.0.1", port)


def test_tail_returns_the_last_lines_even_when_they_are_long(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"{i:04d} " + "x" * 500 + "\n" for i in range(200)))
    last = tail(log, 3)
    assert [line[:4] for line in last] == ["0197", "0198", "0199"]
    assert all(len(line) == 505 for line in last)
    assert tail(log, 0) == []
    assert tail(tmp_path / "missing.log", 5) == []


def test_kafka_libs_are_current_only_with_the_stamp_of_this_pom(tmp_path: Path) -> None:
    pom, libs = tmp_path / "pom.xml", tmp_path / "libs"
    pom.write_text("<project/>")
    libs.mkdir()
    assert not kafka_libs_current(libs, pom)
    (libs / ".pom.sha256").write_text(hashlib.sha256(b"<project/>").hexdigest() + "\n")
    assert kafka_libs_current(libs, pom)
    pom.write_text("<project><!-- kafka bumped --></project>")
    assert not kafka_libs_current(libs, pom)


def test_stack_is_healthy_only_when_every_service_runs() -> None:
    kafka = ServiceStatus("kafka", True, True, 10, "127.0.0.1:9092", "ready")
    postgres_down = ServiceStatus("postgres", True, False, None, "127.0.0.1:5432", "stopped")
    assert not StackStatus(kafka, postgres_down).healthy
    assert StackStatus(kafka, ServiceStatus("postgres", False, True, None, "db:5432", "ok")).healthy


def test_topic_requests_follow_the_specs(tmp_path: Path) -> None:
    settings = scratch_settings(tmp_path).model_copy(
        update={"kafka": KafkaSettings(topic_prefix="t1234.", partitions=4)})
    requests = {topic.name: topic for topic in new_topics(settings)}

    assert set(requests) == {f"t1234.{spec.name}" for spec in TOPICS}
    assert requests[f"t1234.{TICKS}"].num_partitions == 4
    assert requests[f"t1234.{candle_topic('1h')}"].num_partitions == 4
    assert requests[f"t1234.{CONFIGS}"].num_partitions == 1
    assert requests[f"t1234.{CONFIGS}"].topic_configs["cleanup.policy"] == "compact"
    assert requests[f"t1234.{TICKS}"].topic_configs["retention.ms"] == str(7 * 86_400_000)
    assert all(topic.replication_factor == 1 for topic in requests.values())


REPO = Path(__file__).resolve().parents[2]
# server.properties keys that name hosts and paths, which differ by construction between the two setups
_HOST_SPECIFIC = {"listeners", "advertised.listeners", "listener.security.protocol.map", "controller.quorum.voters",
                  "log.dirs"}


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_kafka_runs_the_local_stack_broker_config(tmp_path: Path) -> None:
    services = compose()["services"]
    local = properties(render_server_properties(Settings(data_dir=tmp_path), tmp_path / "data"))
    kafka_env = services["kafka"]["environment"]

    for key, value in local.items():
        if key not in _HOST_SPECIFIC:
            assert kafka_env.get("KAFKA_" + key.upper().replace(".", "_")) == value, key
    pom_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", (REPO / "deploy/kafka/pom.xml").read_text())
    assert pom_version is not None
    assert services["kafka"]["image"] == f"apache/kafka:{pom_version.group(1)}"
    assert len(base64.urlsafe_b64decode(kafka_env["CLUSTER_ID"] + "==")) == 16


def test_compose_application_settings_point_at_the_compose_services(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = compose()
    services = spec["services"]
    for name in ("migrate", "worker", "sinks", "api"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        for key, value in services[name]["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = Settings()
        assert not settings.kafka.managed and not settings.database.managed
        assert f"PLAINTEXT://{settings.kafka.bootstrap_servers}" in services["kafka"]["environment"][
            "KAFKA_ADVERTISED_LISTENERS"].split(",")
        assert str(settings.kafka.partitions) == services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"]
        database = DatabaseTarget.from_url(settings.database.url)
        db_env = services["timescaledb"]["environment"]
        assert (database.host, database.port) == ("timescaledb", 5432)
        assert (database.user, database.password, database.dbname) == (
            db_env["POSTGRES_USER"], db_env["POSTGRES_PASSWORD"], db_env["POSTGRES_DB"])
    assert services["migrate"]["command"] == ["stack", "up"]
    assert [services[name]["command"] for name in ("worker", "sinks")] == [
        ["worker", "--role", "trading"], ["worker", "--role", "sinks"]]
    for name in ("worker", "sinks"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    monkeypatch.setenv("TRADEPULSE_WORKER__OWN_CORE", services["worker"]["environment"]["TRADEPULSE_WORKER__OWN_CORE"])
    assert not Settings().worker.own_core, "core claims in a container's /tmp would not keep scaled-out workers apart"
    assert all("healthcheck" in services[name] for name in ("kafka", "timescaledb", "worker", "sinks", "api"))


def test_missing_maven_is_named_when_the_jars_must_be_fetched(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pom.xml").write_text("<project/>")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(StackError, match=r"Maven \(mvn\) is not installed.*`maven` package"):
        ensure_kafka_libs(tmp_path)
    assert not (tmp_path / "libs").exists()


def test_current_jars_are_not_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pom.xml").write_text("<project/>")
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / ".pom.sha256").write_text(hashlib.sha256(b"<project/>").hexdigest())
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert ensure_kafka_libs(tmp_path) == tmp_path / "libs"
