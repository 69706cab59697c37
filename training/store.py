"""Training results in PostgreSQL: backtest runs, optimisation trials, trained configurations and the lifecycle
decisions about them. Every write is an upsert on a natural key, so a rerun or a resumed job never duplicates."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

logger = logging.getLogger(__name__)

_MS = "TIMESTAMPTZ 'epoch' + %s::bigint * INTERVAL '1 millisecond'"


def record_backtest_run(
    conn: psycopg.Connection,
    *,
    strategy: str,
    params: Mapping[str, Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    data_start_ms: int,
    data_end_ms: int,
    data_hash: str,
    code_version: str,
    initial_cash: float,
    metrics: Mapping[str, Any],
    configuration_id: str | None = None,
) -> str:
    """Store one completed backtest; returns its id."""
    row = conn.execute(
        f"""
        INSERT INTO backtest_runs (configuration_id, strategy, params, exchange, symbols, timeframe, data_start,
                                   data_end, data_hash, code_version, initial_cash, metrics, status, finished_at)
        VALUES (%s, %s, %s, %s, %s, %s, {_MS}, {_MS}, %s, %s, %s, %s, 'completed', now())
        RETURNING id
        """,
        (configuration_id, strategy, Jsonb(dict(params)), exchange, [symbol], timeframe, data_start_ms, data_end_ms,
         data_hash, code_version, initial_cash, Jsonb(dict(metrics))),
    ).fetchone()
    assert row is not None
    return str(row[0])
