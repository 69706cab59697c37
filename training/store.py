"""Training results in PostgreSQL: backtest runs, optimisation trials, trained configurations and the lifecycle
decisions about them. Every write is an upsert on a natural key, so a rerun or a resumed job never duplicates."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
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


def upsert_trial(
    conn: psycopg.Connection,
    *,
    study: str,
    trial_number: int,
    strategy: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    objective: float | None,
    state: str,
    data_start_ms: int,
    data_end_ms: int,
) -> None:
    """Mirror one optuna trial (a rerun of the same trial number updates its row)."""
    conn.execute(
        f"""
        INSERT INTO optimization_trials (study, trial_number, strategy, params, metrics, objective, state, data_start,
                                         data_end, completed_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, {_MS}, {_MS}, now())
        ON CONFLICT (study, trial_number) DO UPDATE
        SET params = EXCLUDED.params, metrics = EXCLUDED.metrics, objective = EXCLUDED.objective,
            state = EXCLUDED.state, completed_at = EXCLUDED.completed_at
        """,
        (study, trial_number, strategy, Jsonb(dict(params)), Jsonb(dict(metrics)), objective, state, data_start_ms,
         data_end_ms),
    )


@dataclass(frozen=True)
class TrainedConfiguration:
    """A configuration with its evidence, as stored in trained_configurations."""

    configuration_id: str
    strategy: str
    params: Mapping[str, Any]
    exchange: str
    symbol: str
    timeframe: str
    stage: str
    stage_reasons: list[str]
    in_sample: Mapping[str, Any]
    out_of_sample: Mapping[str, Any]
    walk_forward: Mapping[str, Any]
    significance: Mapping[str, Any]
    data_start_ms: int
    data_end_ms: int
    data_hash: str
    code_version: str
    study: str
    trial_number: int
    allocation: float = 10_000.0
    execution: Mapping[str, Any] = field(default_factory=dict)
    risk: Mapping[str, Any] = field(default_factory=dict)
    """The backtest settings it was trained with: paper trading uses the same."""


def upsert_configuration(conn: psycopg.Connection, config: TrainedConfiguration) -> str | None:
    """Insert or refresh a configuration's evidence; returns the stage it had before (None when new).

    Whether it is active, and its account and deactivation policy, belong to the trader and are left alone.
    """
    previous = conn.execute("SELECT stage FROM trained_configurations WHERE id = %s",
                            (config.configuration_id,)).fetchone()
    conn.execute(
        f"""
        INSERT INTO trained_configurations (id, strategy, params, exchange, symbols, timeframe, stage, stage_reasons,
            in_sample_metrics, out_of_sample_metrics, walk_forward_metrics, significance_metrics, data_start,
            data_end, data_hash, code_version, study, trial_number, allocation, execution, risk)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {_MS}, {_MS}, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (id) DO UPDATE
        SET stage = EXCLUDED.stage, stage_reasons = EXCLUDED.stage_reasons,
            in_sample_metrics = EXCLUDED.in_sample_metrics, out_of_sample_metrics = EXCLUDED.out_of_sample_metrics,
            walk_forward_metrics = EXCLUDED.walk_forward_metrics,
            significance_metrics = EXCLUDED.significance_metrics, data_start = EXCLUDED.data_start,
            data_end = EXCLUDED.data_end, data_hash = EXCLUDED.data_hash, code_version = EXCLUDED.code_version,
            trial_number = EXCLUDED.trial_number, execution = EXCLUDED.execution, risk = EXCLUDED.risk
        """,
        (config.configuration_id, config.strategy, Jsonb(dict(config.params)), config.exchange, [config.symbol],
         config.timeframe, config.stage, Jsonb(config.stage_reasons), Jsonb(dict(config.in_sample)),
         Jsonb(dict(config.out_of_sample)), Jsonb(dict(config.walk_forward)), Jsonb(dict(config.significance)),
         config.data_start_ms, config.data_end_ms, config.data_hash, config.code_version, config.study,
         config.trial_number, config.allocation, Jsonb(dict(config.execution)), Jsonb(dict(config.risk))),
    )
    return str(previous[0]) if previous else None


def record_decision(
    conn: psycopg.Connection,
    *,
    decision_id: str,
    configuration_id: str,
    previous_stage: str | None,
    stage: str,
    rules_version: str,
    checks: list[dict[str, Any]],
    reasons: list[str],
) -> None:
    """Store a lifecycle decision; the same decision (same id) made again is stored once."""
    conn.execute(
        """
        INSERT INTO lifecycle_decisions (decision_id, configuration_id, previous_stage, stage, rules_version, checks,
                                         reasons)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (decision_id) DO NOTHING
        """,
        (decision_id, configuration_id, previous_stage, stage, rules_version, Jsonb(checks), Jsonb(reasons)),
    )


def link_trial(conn: psycopg.Connection, study: str, trial_number: int, configuration_id: str) -> None:
    conn.execute("UPDATE optimization_trials SET configuration_id = %s WHERE study = %s AND trial_number = %s",
                 (configuration_id, study, trial_number))
