"""Response models of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class ComponentHealth(BaseModel):
    ok: bool
    detail: str


class WorkerHealth(BaseModel):
    worker_id: str
    host: str
    pid: int
    last_seen: datetime
    alive: bool
    stats: dict[str, object]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    broker: ComponentHealth
    database: ComponentHealth
    workers: list[WorkerHealth]


class CandleOut(BaseModel):
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int


class CandleSeries(BaseModel):
    exchange: str
    symbol: str
    timeframe: str
    count: int
    candles: list[CandleOut]
