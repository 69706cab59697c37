"""Worker liveness: a timer upserting worker_heartbeats (and logging the counters when they change)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import faust
import psycopg
from psycopg.types.json import Jsonb

from agents.sinks import DatabaseWriter
from agents.stats import WorkerStats
from tradepulse.db import connect
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

# A beat already in flight (on a pool thread) when the worker stops may commit after the final heartbeat; the
# WHERE keeps a stopped run stopped. A new run under a reused worker id (same pid) has another started_at.
_UPSERT = """
INSERT INTO worker_heartbeats (worker_id, host, pid, started_at, last_seen, stats)
VALUES (%s, %s, %s, %s, now(), %s)
ON CONFLICT (worker_id) DO UPDATE SET started_at = EXCLUDED.started_at, last_seen = now(), stats = EXCLUDED.stats
WHERE worker_heartbeats.started_at <> EXCLUDED.started_at
   OR (worker_heartbeats.stats ->> 'running') IS DISTINCT FROM 'false'
"""


def upsert_heartbeat(conn: psycopg.Connection, stats: WorkerStats) -> None:
    """Record `stats` as this run's latest beat, unless the run already recorded its final one."""
    conn.execute(_UPSERT, (stats.worker_id, stats.host, stats.pid, stats.started_at, Jsonb(stats.snapshot())))


def register_heartbeat(app: faust.App, settings: Settings, stats: WorkerStats, db: DatabaseWriter) -> None:
    """Every `worker.heartbeat_s`: record this worker as alive with its counters; a missed beat is only logged."""
    last_logged: dict[str, Any] = {}

    @app.timer(interval=settings.worker.heartbeat_s, name=f"{settings.worker.app_id}.heartbeat")
    async def heartbeat() -> None:
        snapshot = stats.snapshot()
        if snapshot != last_logged:
            logger.info("worker %s: %s", stats.worker_id, snapshot)
            last_logged.clear()
            last_logged.update(snapshot)
        try:
            await db.run_once(lambda conn: upsert_heartbeat(conn, stats))
        except psycopg.Error as exc:
            logger.warning("heartbeat not recorded (database unavailable): %s", exc)


def record_final_heartbeat(settings: Settings, stats: WorkerStats) -> None:
    """On a clean stop: the final counters, marked not running, so /health and readers see the whole run at once."""
    stats.running = False
    try:
        with connect(settings, attempts=2) as conn:
            upsert_heartbeat(conn, stats)
    except psycopg.Error as exc:
        logger.warning("final heartbeat not recorded (database unavailable): %s", exc)


def register_diagnostics(app: faust.App) -> None:
    """SIGUSR1 logs where each asyncio task waits and the consumer's view of its partitions (a stalled worker)."""

    @app.task
    async def diagnostics() -> None:
        loop = asyncio.get_running_loop()
        running: set[asyncio.Task[None]] = set()

        async def consumer_state() -> None:
            consumer = app.consumer
            client = consumer._thread._ensure_consumer()
            logger.warning(f"flow control active: {app.flow_control.is_active()}; consumer flow active: "
                           f"{consumer.flow_active}; in recovery: {app.in_recovery}; paused by the client: "
                           f"{sorted(map(str, client.paused()))}")
            for name in ("_active_partitions", "_paused_partitions", "_buffered_partitions"):
                partitions = getattr(consumer, name) or set()
                logger.warning(f"consumer {name}: {sorted(f'{tp.topic}[{tp.partition}]' for tp in partitions)}")
            for tp in sorted(client.assignment(), key=lambda tp: ("changelog" in tp.topic, tp)):
                position = await client.position(tp)
                logger.warning(f"{tp.topic}[{tp.partition}] position {position} highwater {client.highwater(tp)} "
                               f"committed {consumer._committed_offset.get(tp)} read {consumer._read_offset.get(tp)}")
            logger.warning("end of diagnostics")

        def dump() -> None:
            for task in asyncio.all_tasks(loop):
                logger.warning(f"task {task.get_name()}: {' -> '.join(_await_chain(task.get_coro()))}")
            task = loop.create_task(consumer_state())
            running.add(task)
            task.add_done_callback(running.discard)

        loop.add_signal_handler(signal.SIGUSR1, dump)


def _await_chain(awaitable: Any) -> list[str]:
    """Where a coroutine waits: each frame of its await chain, outermost first."""
    chain: list[str] = []
    while awaitable is not None and len(chain) < 40:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
    return chain
