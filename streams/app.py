"""The Faust application factory: one place that turns `Settings` into a configured `faust.App`."""

from __future__ import annotations

import logging

import faust

from tradepulse.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    """A Faust app for the worker described by `settings`; agents are registered on it separately.

    Values stay raw bytes so every agent decodes with `streams.codecs` and can dead-letter what does not decode,
    instead of Faust's deserialiser failing inside the stream. Tables live in memory and are rebuilt from their
    changelog topics on start. Faust's web server (stats pages) listens on 127.0.0.1:`worker.web_port`, or not at
    all when that is 0. Session and rebalance timeouts are short because workers run on one machine or a
    LAN: a restarted worker rejoins in seconds rather than Faust's default minute.

    A stop or rebalance commits what is acknowledged without first waiting for every fetched message to be
    acknowledged (`stream_wait_empty`): agents acknowledge a batch only once it is handled (`agents.batches`), so
    the committed offsets are safe either way, and the wait can last forever when a fetched message was dropped
    from the stream buffers (a rebalance clears them) and will never be acknowledged.
    """
    worker = settings.worker
    session_timeout = worker.session_timeout_s
    datadir = settings.data_dir / "faust" / worker.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    web: dict[str, object] = (
        {"web_enabled": True, "web_port": worker.web_port, "web_bind": "127.0.0.1", "web_host": "127.0.0.1"}
        if worker.web_port > 0
        else {"web_enabled": False}
    )
    return faust.App(
        worker.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")],
        datadir=str(datadir),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 5),
        broker_rebalance_timeout=session_timeout,
        broker_commit_interval=1.0,
        stream_recovery_delay=0.0,
        stream_wait_empty=False,
        producer_acks=-1,
        **web,
    )
