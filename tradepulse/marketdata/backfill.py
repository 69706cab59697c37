"""Historical candles from an exchange through ccxt's `fetch_ohlcv`: paginated, retried, resumable, idempotent.

For each symbol the backfill starts at `since`, or just after the newest candle already stored if that is later
(so an interrupted run resumes and a repeated run fetches nothing), asks for a page of candles from a cursor,
writes the closed ones, and moves the cursor past the newest candle it got. A candle is closed when its bucket has
ended by `until` and by now: the still-open current candle is never stored. Transient failures (network errors,
HTTP 429/418 rate limits, 5xx) are retried with backoff; refusals (bad symbol, bad request) stop with the
exchange's message.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from streams.records import TIMEFRAMES, Candle, make_candle
from tradepulse.marketdata.candles import CandleValueError, check_ohlcv
from tradepulse.marketdata.exchanges import Backoff, ExchangeRequestError, with_backoff
from tradepulse.marketdata.importer import format_ts

if TYPE_CHECKING:
    from tradepulse.marketdata.writer import WriteStats

logger = logging.getLogger(__name__)

SOURCE = "backfill"
DEFAULT_PAGE_SIZE = 1_000


class CandleSink(Protocol):
    """Where backfilled candles go (`CandleWriter` in production)."""

    async def latest(self, exchange: str, symbol: str, timeframe: str) -> int | None: ...

    async def write(self, candles: Sequence[Candle]) -> WriteStats: ...


@dataclass
class BackfillResult:
    """What one symbol's backfill did."""

    symbol: str
    start: int
    end: int
    resumed_from: int | None = None
    pages: int = 0
    fetched: int = 0
    written: int = 0
    unchanged: int = 0
    rejected: list[str] = field(default_factory=list)


def bucket_count(start: int, end: int, timeframe: str) -> int:
    """Closed buckets of `timeframe` that open at or after `start` and close by `end`."""
    return max(0, (end - start) // TIMEFRAMES[timeframe])


def closed_candles(
    rows: Sequence[Sequence[Any]],
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    start: int,
    end: int,
    rejected: list[str],
) -> list[Candle]:
    """Candles from ccxt OHLCV rows `[ts, o, h, l, c, v]`: only those opening at or after `start` and closed by
    `end`, aligned, with consistent values. Bad rows are described in `rejected` and skipped."""
    span = TIMEFRAMES[timeframe]
    candles: list[Candle] = []
    for row in rows:
        ts = int(row[0])
        if ts < start or ts + span > end:
            continue
        try:
            o, h, lo, c, v = (float(value) for value in row[1:6])
            if not all(math.isfinite(value) for value in (o, h, lo, c, v)):
                raise CandleValueError(f"non-finite values {list(row[1:6])}")
            if ts % span:
                raise CandleValueError(f"not aligned to {timeframe}")
            check_ohlcv(o, h, lo, c, v)
        except (CandleValueError, TypeError, ValueError) as exc:
            rejected.append(f"{symbol} {format_ts(ts)}: {exc or type(exc).__name__}")
            logger.warning("skipping candle %s %s from %s: %s", symbol, format_ts(ts), exchange, exc)
            continue
        candles.append(make_candle(exchange, symbol, timeframe, ts, (o, h, lo, c, v), source=SOURCE))
    return candles


async def backfill_symbol(
    client: Any,
    sink: CandleSink,
    symbol: str,
    timeframe: str,
    *,
    since: int,
    until: int,
    page_size: int = DEFAULT_PAGE_SIZE,
    backoff: Backoff | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> BackfillResult:
    """Backfill one symbol of `client` (a loaded async ccxt exchange) into `sink`; `until` must not be in the
    future for the open candle to be dropped (the caller passes `min(until, now)`)."""
    span = TIMEFRAMES[timeframe]
    exchange = client.id
    start = -(-since // span) * span
    latest = await sink.latest(exchange, symbol, timeframe)
    result = BackfillResult(symbol, start, until)
    if latest is not None and latest + span > start:
        start = latest + span
        result.resumed_from = start
        logger.info("%s %s %s: resuming after stored candle %s", exchange, symbol, timeframe, format_ts(latest))
    cursor = start
    while cursor + span <= until:
        rows = await with_backoff(
            partial(client.fetch_ohlcv, symbol, timeframe, since=cursor, limit=page_size),
            what=f"{exchange} fetch_ohlcv {symbol} {timeframe} from {format_ts(cursor)}",
            backoff=backoff or Backoff(),
        )
        result.pages += 1
        if not rows:
            break
        candles = closed_candles(
            rows, exchange=exchange, symbol=symbol, timeframe=timeframe, start=cursor, end=until,
            rejected=result.rejected,
        )
        result.fetched += len(candles)
        if candles:
            stats = await sink.write(candles)
            result.written += stats.written
            result.unchanged += stats.unchanged
        newest = max(int(row[0]) for row in rows)
        if newest < cursor:
            break
        advanced = min(newest + span, until) - cursor
        cursor = newest + span
        if on_progress is not None:
            on_progress(symbol, max(0, advanced // span))
    logger.info(
        "%s %s %s: %d pages, %d candles fetched, %d written", exchange, symbol, timeframe, result.pages,
        result.fetched, result.written,
    )
    return result


async def backfill(
    client: Any,
    sink: CandleSink,
    symbols: Sequence[str],
    timeframe: str,
    *,
    since: int,
    until: int,
    page_size: int = DEFAULT_PAGE_SIZE,
    backoff: Backoff | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> list[BackfillResult]:
    """Backfill several symbols one after the other, after checking the exchange lists them all."""
    if timeframe not in TIMEFRAMES:
        raise ExchangeRequestError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")
    if since >= until:
        raise ExchangeRequestError(f"nothing to backfill: since {format_ts(since)} is not before {format_ts(until)}")
    await with_backoff(client.load_markets, what=f"{client.id} load_markets", backoff=backoff or Backoff())
    if client.timeframes and timeframe not in client.timeframes:
        raise ExchangeRequestError(f"{client.id} has no {timeframe} candles")
    unknown = [s for s in symbols if s not in client.markets]
    if unknown:
        raise ExchangeRequestError(f"{client.id} does not list {', '.join(unknown)}")
    return [
        await backfill_symbol(
            client, sink, symbol, timeframe, since=since, until=until, page_size=page_size, backoff=backoff,
            on_progress=on_progress,
        )
        for symbol in symbols
    ]
