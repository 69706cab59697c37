"""Worker liveness: a timer upserting worker_heartbeats (and logging the counters when they change)."""

from __future__ import annotations

import logging
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
