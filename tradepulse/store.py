"""market_data access: idempotent batch upserts and range reads of candles.

Candles carry epoch milliseconds; the table stores timestamptz. Conversion happens in SQL with integer
arithmetic (`epoch + ms * 1 millisecond`, `extract(epoch ...)` is numeric), so a round trip is exact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import islice

import psycopg

from streams.records import Candle, make_candle

logger = logging.getLogger(__name__)

UPSERT_CHUNK = 10_000
"""Rows per statement: large enough to amortise the round trip, small enough to keep messages modest."""

_CANDLE_COLUMNS = ("open", "high", "low", "close", "volume", "trades", "source")

# One statement per chunk: the rows travel as one array per column. Faster than executemany (no per-row
# round trip or pipeline) and it works on every server the store targets, including the PGlite TimescaleDB build,
# whose wire server cannot do pipeline mode. Unchanged rows are skipped, so a replay writes nothing.
_UPSERT_SQL = f"""
INSERT INTO market_data (exchange, symbol, timeframe, ts, {", ".join(_CANDLE_COLUMNS)})
SELECT exchange, symbol, timeframe, TIMESTAMPTZ 'epoch' + ts_ms * INTERVAL '1 millisecond', {", ".join(_CANDLE_COLUMNS)}
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::float8[], %s::float8[], %s::float8[],
            %s::float8[], %s::float8[], %s::int4[], %s::text[])
     AS batch (exchange, symbol, timeframe, ts_ms, {", ".join(_CANDLE_COLUMNS)})
ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE
SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _CANDLE_COLUMNS)}, ingested_at = now()
WHERE ({", ".join(f"market_data.{c}" for c in _CANDLE_COLUMNS)})
      IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _CANDLE_COLUMNS)})
"""

_TS_MS = "(extract(epoch FROM ts) * 1000)::bigint"

_CandleKey = tuple[str, str, str, int]


def _columns(candles: Iterable[Candle]) -> list[list[object]]:
    """Column arrays of a chunk, one row per key (the last candle wins, as it would row by row)."""
    unique: dict[_CandleKey, Candle] = {}
    for candle in candles:
        unique[(candle.exchange, candle.symbol, candle.timeframe, candle.ts)] = candle
    rows = [
        (c.exchange, c.symbol, c.timeframe, c.ts, c.open, c.high, c.low, c.close, c.volume, c.trades, c.source)
        for c in unique.values()
    ]
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


def upsert_candles(conn: psycopg.Connection, candles: Iterable[Candle]) -> int:
    """Insert or update candles by (exchange, symbol, timeframe, ts) in one transaction.

    Returns the number of rows inserted or changed: replaying identical candles returns 0. Inside a caller's
    transaction this runs in a savepoint and leaves the commit to the caller.
    """
    written = 0
    iterator = iter(candles)
    with conn.transaction(), conn.cursor() as cur:
        while chunk := list(islice(iterator, UPSERT_CHUNK)):
            cur.execute(_UPSERT_SQL, _columns(chunk))
            written += cur.rowcount
    return written


def fetch_candles(
    conn: psycopg.Connection,
    exchange: str,
    symbol: str,
    timeframe: str,
    start_ms: int,
    end_ms: int,
    *,
    limit: int | None = None,
) -> list[Candle]:
    """Candles with `start_ms <= ts < end_ms`, oldest first; with `limit`, the newest `limit` of them."""
    query = f"""
        SELECT {_TS_MS}, open, high, low, close, volume, trades, source
        FROM market_data
        WHERE exchange = %s AND symbol = %s AND timeframe = %s
          AND ts >= TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 millisecond'
          AND ts <  TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 millisecond'
        ORDER BY ts {"DESC LIMIT %s" if limit is not None else ""}
    """
    params: list[object] = [exchange, symbol, timeframe, start_ms, end_ms]
    if limit is not None:
        params.append(limit)
    rows = conn.execute(query, params).fetchall()
    if limit is not None:
        rows.reverse()
    return [
        make_candle(exchange, symbol, timeframe, ts, (open_, high, low, close, volume), source=source, trades=trades)
        for ts, open_, high, low, close, volume, trades, source in rows
    ]


def latest_candle_ts(conn: psycopg.Connection, exchange: str, symbol: str, timeframe: str) -> int | None:
    """Open time (epoch ms) of the newest stored candle, or None: where a resumable backfill picks up."""
    row = conn.execute(
        f"""
        SELECT {_TS_MS} FROM market_data
        WHERE exchange = %s AND symbol = %s AND timeframe = %s
        ORDER BY ts DESC LIMIT 1
        """,
        (exchange, symbol, timeframe),
    ).fetchone()
    return int(row[0]) if row else None


def candle_count(
    conn: psycopg.Connection,
    exchange: str,
    symbol: str,
    timeframe: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> int:
    """Number of stored candles of one instrument and timeframe, optionally within `[start_ms, end_ms)`."""
    row = conn.execute(
        """
        SELECT count(*) FROM market_data
        WHERE exchange = %s AND symbol = %s AND timeframe = %s
          AND (%s::bigint IS NULL OR ts >= TIMESTAMPTZ 'epoch' + %s::bigint * INTERVAL '1 millisecond')
          AND (%s::bigint IS NULL OR ts <  TIMESTAMPTZ 'epoch' + %s::bigint * INTERVAL '1 millisecond')
        """,
        (exchange, symbol, timeframe, start_ms, start_ms, end_ms, end_ms),
    ).fetchone()
    return int(row[0]) if row else 0
