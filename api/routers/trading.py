"""Paper trading over the store: portfolios, trades, strategy performance (from the performance views) and the
configuration lifecycle (the same `tradepulse.control` functions as the CLI)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import DB_TIMEOUT_S, PoolDep, SettingsDep
from tradepulse import control

router = APIRouter(prefix="/api", tags=["trading"])
MAX_ROWS = 5_000


class Snapshot(BaseModel):
    ts: datetime
    account_id: str
    configuration_id: str | None
    cash: float
    equity: float
    realized_pnl: float
    unrealized_pnl: float
    positions: dict[str, float]


class PositionOut(BaseModel):
    configuration_id: str
    exchange: str
    symbol: str
    quantity: float
    avg_entry_price: float
    stop_loss: float | None
    take_profit: float | None
    opened_at: datetime


class Portfolio(BaseModel):
    account_id: str
    account: Snapshot | None = Field(description="the latest account snapshot (sum of its sub-accounts)")
    configurations: list[Snapshot]
    positions: list[PositionOut]


class TradeOut(BaseModel):
    trade_id: str
    configuration_id: str
    account_id: str
    exchange: str
    symbol: str
    side: str
    quantity: float
    entry_ts: datetime
    entry_price: float
    exit_ts: datetime
    exit_price: float
    pnl: float
    fees: float
    exit_reason: str


class PerformanceRow(BaseModel):
    configuration_id: str
    ts: datetime
    trade_count: int
    wins: int
    win_rate: float
    total_pnl: float
    avg_pnl: float
    total_fees: float


class ConfigurationOut(BaseModel):
    id: str
    strategy: str
    params: dict[str, Any]
    exchange: str
    symbol: str
    timeframe: str
    stage: str
    is_active: bool
    account_id: str
    allocation: float
    status: str
    status_reason: str
    data_start: datetime | None = Field(default=None, description="first candle the configuration was trained on")
    data_end: datetime | None = Field(default=None, description="end of the training data (no later candle seen)")


class Activation(BaseModel):
    account_id: str | None = None
    allocation: float | None = Field(default=None, gt=0)
    on_deactivate: Literal["close", "keep"] | None = None


class Deactivation(BaseModel):
    on_deactivate: Literal["close", "keep"] | None = None


async def _query(pool: PoolDep, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    def load() -> list[tuple[Any, ...]]:
        with pool.connection(timeout=DB_TIMEOUT_S) as conn:
            return conn.execute(sql, params).fetchall()

    return await run_in_threadpool(load)


_SNAPSHOT = "ts, account_id, configuration_id, cash, equity, realized_pnl, unrealized_pnl, positions"


@router.get("/portfolio", response_model=Portfolio)
async def portfolio(pool: PoolDep, account: Annotated[str, Query(min_length=1, max_length=128)]) -> Portfolio:
    """The account's latest snapshot, each configuration's latest sub-account snapshot, and the open positions."""
    latest = await _query(pool, f"""
        SELECT DISTINCT ON (coalesce(configuration_id, '')) {_SNAPSHOT} FROM portfolio_history
        WHERE account_id = %s ORDER BY coalesce(configuration_id, ''), ts DESC""", (account,))
    if not latest:
        known = await _query(pool, "SELECT 1 FROM accounts WHERE id = %s", (account,))
        if not known:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no account {account!r}")
    snapshots = [Snapshot(**dict(zip(_SNAPSHOT.split(", "), row, strict=True))) for row in latest]
    positions = await _query(pool, """
        SELECT configuration_id, exchange, symbol, quantity, avg_entry_price, stop_loss, take_profit, opened_at
        FROM positions WHERE account_id = %s ORDER BY opened_at""", (account,))
    fields = list(PositionOut.model_fields)
    return Portfolio(
        account_id=account,
        account=next((s for s in snapshots if s.configuration_id is None), None),
        configurations=[s for s in snapshots if s.configuration_id is not None],
        positions=[PositionOut(**dict(zip(fields, row, strict=True))) for row in positions],
    )


@router.get("/trades", response_model=list[TradeOut])
async def trades(
    pool: PoolDep,
    account: Annotated[str | None, Query(max_length=128)] = None,
    configuration: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 500,
) -> list[TradeOut]:
    """Closed round trips, newest first, filtered by account and/or configuration."""
    fields = list(TradeOut.model_fields)
    rows = await _query(pool, f"""
        SELECT {", ".join(fields)} FROM trades
        WHERE (%s::text IS NULL OR account_id = %s) AND (%s::text IS NULL OR configuration_id = %s)
        ORDER BY exit_ts DESC LIMIT %s""", (account, account, configuration, configuration, limit))
    return [TradeOut(**dict(zip(fields, row, strict=True))) for row in rows]


@router.get("/strategies/performance", response_model=list[PerformanceRow])
async def performance(
    pool: PoolDep,
    period: Literal["hourly", "daily"] = "daily",
    configuration: Annotated[str | None, Query(max_length=128)] = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
) -> list[PerformanceRow]:
    """Trade count, wins, win rate, total and average PnL and fees per configuration and hour or day, from the
    strategy_performance_* views (continuous aggregates where TimescaleDB runs)."""
    since = (start.replace(tzinfo=start.tzinfo or UTC) if start else datetime(1970, 1, 1, tzinfo=UTC))
    fields = list(PerformanceRow.model_fields)
    rows = await _query(pool, f"""
        SELECT {", ".join(fields)} FROM strategy_performance_{period}
        WHERE (%s::text IS NULL OR configuration_id = %s) AND ts >= %s
        ORDER BY ts DESC, configuration_id LIMIT %s""", (configuration, configuration, since, limit))
    return [PerformanceRow(**dict(zip(fields, row, strict=True))) for row in rows]


def _configuration(row: dict[str, Any]) -> ConfigurationOut:
    fields = ConfigurationOut.model_fields
    return ConfigurationOut(symbol=row["symbols"][0], **{k: v for k, v in row.items() if k in fields})


@router.get("/configurations", response_model=list[ConfigurationOut])
async def configurations(pool: PoolDep, active: bool = False) -> list[ConfigurationOut]:
    """Trained configurations with their stage, whether they trade and the workers' status."""
    def load() -> list[dict[str, Any]]:
        with pool.connection(timeout=DB_TIMEOUT_S) as conn:
            return control.list_configurations(conn, active_only=active)

    return [_configuration(row) for row in await run_in_threadpool(load)]


async def _lifecycle(pool: PoolDep, settings: SettingsDep, configuration_id: str, action: str,
                     body: Activation | Deactivation) -> ConfigurationOut:
    publish = control.kafka_publisher(settings)

    def change() -> dict[str, Any]:
        with pool.connection(timeout=DB_TIMEOUT_S) as conn:
            try:
                if action == "activate":
                    assert isinstance(body, Activation)
                    control.activate(conn, configuration_id, publish, account_id=body.account_id,
                                     allocation=body.allocation, on_deactivate=body.on_deactivate)
                else:
                    control.deactivate(conn, configuration_id, publish, on_deactivate=body.on_deactivate)
            except control.ControlError as exc:
                missing = str(exc).startswith("no configuration")
                raise HTTPException(status.HTTP_404_NOT_FOUND if missing else status.HTTP_422_UNPROCESSABLE_CONTENT,
                                    detail=str(exc)) from exc
            except psycopg.Error:
                raise
            except KafkaError as exc:  # the broker refused: nothing was committed
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                    detail=f"the log is unavailable, nothing changed: {type(exc).__name__}") from exc
            rows = [r for r in control.list_configurations(conn) if r["id"] == configuration_id]
            return rows[0]

    return _configuration(await run_in_threadpool(change))


@router.post("/configurations/{configuration_id}/activate", response_model=ConfigurationOut)
async def activate(pool: PoolDep, settings: SettingsDep, configuration_id: str,
                   body: Activation | None = None) -> ConfigurationOut:
    """Start paper trading the configuration; workers pick it up within seconds."""
    return await _lifecycle(pool, settings, configuration_id, "activate", body or Activation())


@router.post("/configurations/{configuration_id}/deactivate", response_model=ConfigurationOut)
async def deactivate(pool: PoolDep, settings: SettingsDep, configuration_id: str,
                     body: Deactivation | None = None) -> ConfigurationOut:
    """Stop new entries at once; open positions closed at market or kept, as configured."""
    return await _lifecycle(pool, settings, configuration_id, "deactivate", body or Deactivation())
