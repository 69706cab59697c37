"""Liveness of the broker, the database and the workers, for operators and load balancers."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from psycopg_pool import ConnectionPool

from api.deps import DB_TIMEOUT_S, PoolDep, SettingsDep
from api.schemas import ComponentHealth, Health, WorkerHealth
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 5.0



async def _broker_health(settings: Settings) -> ComponentHealth:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=int(BROKER_TIMEOUT_S * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), BROKER_TIMEOUT_S)
        topics = await asyncio.wait_for(admin.list_topics(), BROKER_TIMEOUT_S)
    except Exception as exc:  # any failure means "not healthy"; the reason is reported, not raised
        return ComponentHealth(ok=False, detail=f"{type(exc).__name__}: {exc}")
    finally:
        await admin.close()
    return ComponentHealth(ok=True, detail=f"{len(topics)} topics at {settings.kafka.bootstrap_servers}")


def _database_and_workers(pool: ConnectionPool, settings: Settings) -> tuple[ComponentHealth, list[WorkerHealth]]:
    try:
        with pool.connection(timeout=DB_TIMEOUT_S) as conn:
            version = conn.execute("SELECT current_setting('server_version')").fetchone()
            rows = conn.execute(
                "SELECT worker_id, host, pid, last_seen, stats FROM worker_heartbeats ORDER BY worker_id"
            ).fetchall()
    except Exception as exc:  # reported in the health document
        return ComponentHealth(ok=False, detail=f"{type(exc).__name__}: {exc}"), []
    stale_after = timedelta(seconds=max(15.0, 3 * settings.worker.heartbeat_s))
    now = datetime.now(UTC)
    workers = [
        WorkerHealth(
            worker_id=worker_id, host=host, pid=pid, last_seen=last_seen,
            alive=bool((stats or {}).get("running", True)) and now - last_seen <= stale_after, stats=stats or {},
        )
        for worker_id, host, pid, last_seen, stats in rows
    ]
    return ComponentHealth(ok=True, detail=f"PostgreSQL {version[0] if version else '?'}"), workers


@router.get("/health", response_model=Health)
async def health(settings: SettingsDep, pool: PoolDep, response: Response) -> Health:
    """200 when broker, database and at least one worker are up; 503 with the reasons otherwise."""
    broker, (database, workers) = await asyncio.gather(
        _broker_health(settings), run_in_threadpool(_database_and_workers, pool, settings)
    )
    healthy = broker.ok and database.ok and any(worker.alive for worker in workers)
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="ok" if healthy else "degraded", broker=broker, database=database, workers=workers)
