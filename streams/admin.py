"""Topic administration: create the documented topics idempotently and read back what the broker has."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaTimeoutError, for_code
from aiokafka.protocol.api import Response

from streams.topics import TOPICS, TopicSpec, topic_name
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_REQUEST_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the broker reports it."""

    name: str
    partitions: int
    cleanup_policy: str
    retention_ms: int


def topic_configs(spec: TopicSpec) -> dict[str, str]:
    """The broker-side configs a spec implies."""
    return {"cleanup.policy": spec.cleanup_policy, "retention.ms": str(spec.retention_ms)}


def new_topics(settings: Settings) -> list[NewTopic]:
    """Every documented topic under the settings' prefix, with its partitions and policies."""
    return [
        NewTopic(
            name=topic_name(settings.kafka.topic_prefix, spec.name),
            num_partitions=spec.partition_count(settings.kafka.partitions),
            replication_factor=1,
            topic_configs=topic_configs(spec),
        )
        for spec in TOPICS
    ]


def _admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers,
                               request_timeout_ms=_REQUEST_TIMEOUT_MS)


async def ensure_topics_async(settings: Settings) -> list[str]:
    """Create the missing documented topics; existing ones are left alone. Returns the names created."""
    admin = _admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in new_topics(settings) if topic.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(missing)
        created = []
        for name, code, message in _topic_errors(response):
            if code == 0:
                created.append(name)
            elif code != _TOPIC_ALREADY_EXISTS:
                raise for_code(code)(f"creating topic {name}: {message}")
        await wait_for_leaders(admin, [topic.name for topic in missing])
    finally:
        await admin.close()
    logger.info("created topics: %s", ", ".join(created) if created else "none (raced with another creator)")
    return created


async def wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """CreateTopics returns when the controller has committed; the broker serves the topics a moment later.
    Waiting here spares every producer and consumer right after `ensure_topics` an unknown-topic error."""
    deadline = asyncio.get_running_loop().time() + _REQUEST_TIMEOUT_MS / 1000
    while True:
        rows = await admin.describe_topics(names)
        ready = {
            row["topic"] for row in rows
            if row["error_code"] == 0 and row["partitions"]
            and all(partition["leader"] >= 0 for partition in row["partitions"])
        }
        if ready >= set(names):
            return
        if asyncio.get_running_loop().time() >= deadline:
            raise KafkaTimeoutError(f"topics without a leader after creation: {sorted(set(names) - ready)}")
        await asyncio.sleep(0.1)


def ensure_topics(settings: Settings) -> list[str]:
    """Blocking form of `ensure_topics_async` for the CLI, the stack and test fixtures."""
    return asyncio.run(ensure_topics_async(settings))


def _topic_errors(response: Response) -> list[tuple[str, int, str | None]]:
    """(topic, error code, message) from a CreateTopics response of any version (v0 has no message)."""
    return [(row[0], row[1], row[2] if len(row) > 2 else None) for row in response.topic_errors]


async def delete_topics_async(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a test namespace); returns the names deleted."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = _admin(settings)
    await admin.start()
    try:
        doomed = sorted(name for name in await admin.list_topics() if name.startswith(prefix))
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
    return doomed


def delete_topics(settings: Settings, prefix: str) -> list[str]:
    return asyncio.run(delete_topics_async(settings, prefix))


async def describe_topics_async(settings: Settings, prefix: str | None = None) -> list[TopicInfo]:
    """Partitions and policies of the broker's topics under `prefix` (default: the settings' prefix)."""
    prefix = settings.kafka.topic_prefix if prefix is None else prefix
    admin = _admin(settings)
    await admin.start()
    try:
        metadata = await admin.describe_topics()
        partitions = {
            row["topic"]: len(row["partitions"])
            for row in metadata
            if row["topic"].startswith(prefix) and not row["is_internal"] and not row["topic"].startswith("__")
        }
        names = sorted(partitions)
        configs: dict[str, dict[str, str]] = {name: {} for name in names}
        if names:
            resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
            for response in await admin.describe_configs(resources):
                for _code, _message, _type, name, entries in response.resources:
                    configs[name] = {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()
    return [
        TopicInfo(
            name=name,
            partitions=partitions[name],
            cleanup_policy=configs[name].get("cleanup.policy", "?"),
            retention_ms=int(configs[name].get("retention.ms") or -1),
        )
        for name in names
    ]


def describe_topics(settings: Settings, prefix: str | None = None) -> list[TopicInfo]:
    return asyncio.run(describe_topics_async(settings, prefix))
