"""Candles for backtests and training, from the log (replaying a candle topic), from market_data or from a CSV file.

Whatever the source, candles become a `BarSeries` only after checks: every price positive and OHLC consistent,
times aligned to the timeframe and strictly increasing, no bucket present twice with different values. A candle
that fails is never used: loading stops with `CorruptData` naming each bad candle. Gaps (missing buckets) are not
errors, markets pause and feeds drop out, but they are counted and reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from agents.bars import Bar, BarSeries
from streams.codecs import MAX_TIME_MS
from streams.keys import TIMEFRAMES
from streams.records import Candle
from tradepulse.marketdata.candles import CandleValueError, check_ohlcv
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

Source = Literal["topic", "table", "csv"]
SOURCES: tuple[str, ...] = ("topic", "table", "csv")
MAX_LISTED = 20
"""Bad candles named in an error message; the count covers the rest."""


class DataError(ValueError):
    """Candles that cannot be loaded as asked (no such series, empty range); the message says why."""


class CorruptData(DataError):
    """Candles in the range that break an invariant; they are listed, and none of the range is used."""


@dataclass(frozen=True)
class DataRequest:
    source: Source
    exchange: str | None
    symbol: str | None
    timeframe: str | None
    start_ms: int | None = None
    end_ms: int | None = None
    csv_path: Path | None = None

    def describe(self) -> str:
        if self.source == "csv":
            known = " ".join(v for v in (self.exchange, self.symbol, self.timeframe) if v)
            return f"{known + ' ' if known else ''}candles from {self.csv_path}"
        return f"{self.exchange} {self.symbol} {self.timeframe} from the {self.source}"


@dataclass
class DataReport:
    """What was loaded: the series' extent and its gaps."""

    source: str
    bars: int
    first_ts: int | None
    last_ts: int | None
    span_ms: int
    gaps: list[tuple[int, int]] = field(default_factory=list)
    """`(last bar before, first bar after)` of each gap, epoch ms."""

    @property
    def missing_bars(self) -> int:
        return sum((after - before) // self.span_ms - 1 for before, after in self.gaps)


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def validate_candles(candles: Sequence[Candle], timeframe: str, source: str) -> tuple[BarSeries, DataReport]:
    """The checked series of one instrument's candles (ascending by time) and its report."""
    span = TIMEFRAMES[timeframe]
    problems: list[str] = []
    bars: list[Bar] = []
    seen: dict[int, Candle] = {}
    for candle in candles:
        where = f"{candle.symbol} {timeframe} candle at {iso(candle.ts)} ({candle.ts})"
        if candle.ts % span:
            problems.append(f"{where}: not aligned to {timeframe} buckets")
            continue
        try:
            check_ohlcv(candle.open, candle.high, candle.low, candle.close, candle.volume)
        except CandleValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        earlier = seen.get(candle.ts)
        if earlier is not None:
            if _values(earlier) != _values(candle):
                problems.append(f"{where}: two different candles for one bucket {_values(earlier)} and "
                                f"{_values(candle)}")
            continue
        seen[candle.ts] = candle
        bars.append(Bar(candle.ts, candle.open, candle.high, candle.low, candle.close, candle.volume))
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise CorruptData(f"{len(problems)} corrupt candle(s) in the range from {source}; none were used:\n  "
                          f"{listed}{more}")
    bars.sort(key=lambda b: b.ts)
    first = candles[0] if candles else None
    exchange, symbol = (first.exchange, first.symbol) if first else ("", "")
    series = BarSeries.from_bars(exchange, symbol, timeframe, bars)
    gaps = [(int(a), int(b)) for a, b in zip(series.ts[:-1], series.ts[1:], strict=True) if b - a > span]
    report = DataReport(source, len(series), int(series.ts[0]) if len(series) else None,
                        int(series.ts[-1]) if len(series) else None, span, gaps)
    return series, report


def _values(candle: Candle) -> tuple[float, ...]:
    return candle.open, candle.high, candle.low, candle.close, candle.volume


def load_series(request: DataRequest, settings: Settings | None = None) -> tuple[BarSeries, DataReport]:
    """Load and check the series `request` names; raises `DataError` (or `CorruptData`) with a clear message."""
    if request.source == "csv":
        candles, timeframe = _csv_candles(request)
    else:
        if settings is None:
            raise DataError(f"reading candles from the {request.source} needs the settings of the stack")
        if not request.exchange or not request.symbol or not request.timeframe:
            raise DataError(f"reading from the {request.source} needs an exchange, a symbol and a timeframe")
        timeframe = request.timeframe
        candles = (_topic_candles if request.source == "topic" else _table_candles)(request, settings)
    candles = [c for c in candles if _in_range(c.ts, request)]
    if not candles:
        raise DataError(f"no candles for {request.describe()} in the range {_range_text(request)}")
    return validate_candles(candles, timeframe, request.describe())


def _in_range(ts: int, request: DataRequest) -> bool:
    return (request.start_ms is None or ts >= request.start_ms) and (request.end_ms is None or ts < request.end_ms)


def _range_text(request: DataRequest) -> str:
    start = iso(request.start_ms) if request.start_ms is not None else "the beginning"
    end = iso(request.end_ms) if request.end_ms is not None else "the end"
    return f"{start} .. {end}"


def _csv_candles(request: DataRequest) -> tuple[list[Candle], str]:
    from tradepulse.marketdata.importer import ImportFileError, parse_file

    assert request.csv_path is not None
    path = request.csv_path
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    try:
        parsed = parse_file(path, exchange=request.exchange, timeframe=request.timeframe)
    except ImportFileError as exc:
        raise DataError(str(exc)) from exc
    report = parsed.report
    symbols = sorted({c.symbol for c in parsed.candles})
    symbol = request.symbol
    if symbol is None:
        if len(symbols) != 1:
            raise DataError(f"{path.name} holds {', '.join(symbols) or 'no symbols'}; choose one with --symbol")
        symbol = symbols[0]
    elif symbol not in symbols:
        raise DataError(f"{path.name} has no {symbol}; it holds {', '.join(symbols)}")
    bad = [r for r in report.rejected if r.symbol in (None, symbol)]
    if bad:
        listed = "\n  ".join(f"line {r.line}: {r.reason}" for r in bad[:MAX_LISTED])
        raise CorruptData(f"{len(bad)} row(s) of {path.name} could not be read as candles; none of the file was "
                          f"used:\n  {listed}")
    conflicting = [d for d in report.duplicates if d.symbol == symbol and not d.identical]
    if conflicting:
        listed = "\n  ".join(f"line {d.line} gives other values for the bucket of line {d.kept_line}"
                             for d in conflicting[:MAX_LISTED])
        raise CorruptData(f"{len(conflicting)} conflicting duplicate row(s) in {path.name}; none of the file was "
                          f"used:\n  {listed}")
    return [c for c in parsed.candles if c.symbol == symbol], report.timeframe


def _table_candles(request: DataRequest, settings: Settings) -> list[Candle]:
    import psycopg

    from tradepulse.store import fetch_candles

    assert request.exchange and request.symbol and request.timeframe
    with psycopg.connect(settings.database.url, connect_timeout=10) as conn:
        return fetch_candles(conn, request.exchange, request.symbol, request.timeframe,
                             request.start_ms if request.start_ms is not None else 0,
                             request.end_ms if request.end_ms is not None else MAX_TIME_MS)


def _topic_candles(request: DataRequest, settings: Settings) -> list[Candle]:
    from streams.replay import read_candles

    assert request.timeframe
    return asyncio.run(read_candles(settings, request.timeframe, exchange=request.exchange, symbol=request.symbol,
                                    start_ms=request.start_ms, end_ms=request.end_ms))
