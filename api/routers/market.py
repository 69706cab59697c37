"""Market data read from the store (market_data and its rollups)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool

from api.deps import DB_TIMEOUT_S, PoolDep
from api.schemas import CandleOut, CandleSeries
from streams.records import Candle
from tradepulse.store import fetch_candles

router = APIRouter(prefix="/api/market", tags=["market"])

Timeframe = Literal["1m", "5m", "15m", "1h", "4h", "1d"]
MAX_CANDLES = 10_000


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _out(candle: Candle) -> CandleOut:
    return CandleOut(
        ts=datetime.fromtimestamp(candle.ts / 1000, tz=UTC), open=candle.open, high=candle.high, low=candle.low,
        close=candle.close, volume=candle.volume, trades=candle.trades,
    )


@router.get("/candles", response_model=CandleSeries)
async def candles(
    pool: PoolDep,
    exchange: Annotated[str, Query(min_length=1, max_length=64, examples=["kraken"])],
    symbol: Annotated[str, Query(min_length=1, max_length=64, examples=["BTC/USDT"])],
    timeframe: Timeframe = "1m",
    start: Annotated[datetime | None, Query(alias="from", description="inclusive, ISO 8601 (UTC if naive)")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="exclusive, ISO 8601 (UTC if naive)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CANDLES, description="most recent candles in the range")] = 1000,
) -> CandleSeries:
    """Closed candles of one instrument, oldest first; the newest `limit` of the range."""
    start_ms = _epoch_ms(start) if start else 0
    end_ms = _epoch_ms(end) if end else 2**53
    if start_ms >= end_ms:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="'from' must be earlier than 'to'")

    def load() -> list[Candle]:
        with pool.connection(timeout=DB_TIMEOUT_S) as conn:
            return fetch_candles(conn, exchange, symbol, timeframe, start_ms, end_ms, limit=limit)

    rows = await run_in_threadpool(load)
    return CandleSeries(
        exchange=exchange, symbol=symbol, timeframe=timeframe, count=len(rows), candles=[_out(c) for c in rows]
    )
