"""Parsing of OHLCV CSV files into validated candles plus a report of everything that was not imported.

Pure: no Kafka, no database. Two layouts are understood:

- long: one candle per row. CryptoDataDownload files (an optional banner line before the header, newest-first rows,
  `Date,Symbol,Open,High,Low,Close,VolumeFrom,VolumeTo`, hours written `2019-07-04 01:00` or `2019-10-17 09-AM`,
  optional `unix` timestamp columns) and plain `timestamp,open,high,low,close,volume` files.
- wide: one date per row and five `SYM:open ... SYM:volume` columns per symbol; an empty group of cells means the
  symbol has no candle that day.

Every data line ends up either as a candle, a rejection (line number and reason), a duplicate (line number and the
line that was kept) or, for wide files, an empty cell group counted per symbol: nothing is dropped silently.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from streams.records import TIMEFRAMES, Candle, make_candle
from tradepulse.marketdata.candles import CandleValueError, check_ohlcv

if TYPE_CHECKING:
    from _csv import Reader

logger = logging.getLogger(__name__)

QUOTE_CURRENCIES: tuple[str, ...] = tuple(
    sorted(
        ("USDT", "USDC", "BUSD", "TUSD", "FDUSD", "USD", "EUR", "GBP", "JPY", "AUD", "CAD", "CHF", "KRW", "TRY",
         "BTC", "ETH", "DAI"),
        key=len,
        reverse=True,
    )
)
"""Quote currencies recognised at the end of a symbol written without separator (`BTCUSD`), longest first."""

SOURCE = "import"
HEADER_SEARCH_LINES = 10
"""How many lines may precede the header (CryptoDataDownload puts one banner line there)."""

_TIME_COLUMNS = ("unix", "unix timestamp", "timestamp", "ts", "time", "open_time", "date", "datetime", "")
_SYMBOL_COLUMNS = ("symbol", "pair", "ticker")
_PRICE_FIELDS = ("open", "high", "low", "close")
_AMPM_RE = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{1,2})(?::(\d{2}))?[- ]?([AaPp][Mm])")
_NUMBER_RE = re.compile(r"\d+(?:\.\d*)?")
_WIDE_RE = re.compile(r"([^:]+):(open|high|low|close|volume)")


class ImportFileError(ValueError):
    """A problem with the file as a whole (no header, unknown layout, nothing to infer from): nothing imported."""


class RowError(ValueError):
    """A problem with one row; the message is the reason reported with its line number."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A data line (or one symbol's cells of it, in a wide file) that was not imported."""

    line: int
    reason: str
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A second row for an already seen bucket; the first row in file order is the one kept."""

    line: int
    kept_line: int
    symbol: str
    ts: int
    identical: bool = False
    """Whether the row repeats the kept one exactly (then nothing is lost by dropping it)."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing buckets between two imported candles: `first`..`last` inclusive, `missing` buckets."""

    symbol: str
    first: int
    last: int
    missing: int


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """What was imported for one instrument of the file."""

    exchange: str
    symbol: str
    timeframe: str
    imported: int
    first: Candle | None
    last: Candle | None
    empty_rows: int = 0


@dataclass
class ImportReport:
    """Everything a person needs to trust an import: counts, rejected lines, duplicates, gaps."""

    name: str
    layout: str
    exchange: str
    timeframe: str
    rows_read: int = 0
    series: list[SeriesSummary] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return sum(s.imported for s in self.series)


@dataclass
class ParsedFile:
    """The valid candles of a file, ascending by time, and its report."""

    candles: list[Candle]
    report: ImportReport


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class _Group:
    """The column indexes of one instrument's OHLCV (a wide file has one group per symbol)."""

    symbol: str | None
    labels: tuple[str, ...]
    indexes: tuple[int, ...]


# ------------------------------------------------------------------------------------------------ small parsers


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds (UTC) from an epoch number in s/ms/µs/ns, an ISO date-time, or `2019-10-17 09-AM`."""
    value = text.strip()
    if not value:
        raise RowError("empty timestamp")
    if _NUMBER_RE.fullmatch(value):
        number = float(value)
        for limit, to_ms in ((1e11, 1e3), (1e14, 1.0), (1e17, 1e-3)):
            if number < limit:
                return round(number * to_ms)
        return round(number * 1e-6)
    match = _AMPM_RE.fullmatch(value)
    try:
        if match:
            day, hour_text, minute_text, meridiem = match.groups()
            hour = int(hour_text)
            if not 1 <= hour <= 12:
                raise RowError(f"bad hour in timestamp {value!r}")
            hour = hour % 12 + (12 if meridiem.upper() == "PM" else 0)
            moment = datetime.fromisoformat(f"{day}T{hour:02d}:{minute_text or '00'}")
        else:
            moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise RowError(f"bad timestamp {value!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def format_ts(ts: int) -> str:
    """A readable UTC time for reports and error messages."""
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@lru_cache(maxsize=1024)
def normalize_symbol(raw: str) -> str:
    """`BTCUSD`, `btc-usd`, `BTC/USD` → `BTC/USD` (quote recognised from `QUOTE_CURRENCIES` when not separated)."""
    text = raw.strip().upper()
    for separator in "/-_:":
        if separator in text:
            base, quote = (part.strip() for part in text.split(separator, 1))
            if base and quote:
                return f"{base}/{quote}"
    for quote in QUOTE_CURRENCIES:
        if text.endswith(quote) and len(text) > len(quote):
            return f"{text[: -len(quote)]}/{quote}"
    raise RowError(f"cannot tell base and quote apart in symbol {raw!r}")


@cache
def known_exchanges() -> frozenset[str]:
    """The exchange ids ccxt knows; a file name prefix counts as an exchange only if it is one of them."""
    import ccxt

    return frozenset(ccxt.exchanges)


def infer_from_filename(name: str) -> tuple[str | None, str | None]:
    """`(exchange, symbol)` from names like `bitfinex_btcusd_1h.csv`; None where the name does not tell."""
    tokens = Path(name).stem.split("_")
    if len(tokens) < 2 or tokens[0].lower() not in known_exchanges():
        return None, None
    try:
        symbol: str | None = normalize_symbol(tokens[1])
    except RowError:
        symbol = None
    return tokens[0].lower(), symbol


def timeframe_of(span_ms: int) -> str | None:
    """The name of a timeframe from its length, if it is one of `TIMEFRAMES`."""
    return next((name for name, span in TIMEFRAMES.items() if span == span_ms), None)


def _number(cell: str, label: str) -> float:
    text = cell.strip()
    if not text:
        raise RowError(f"missing value for {label}")
    try:
        value = float(text)
    except ValueError as exc:
        raise RowError(f"{label} is not a number: {text!r}") from exc
    if not math.isfinite(value):
        raise RowError(f"{label} is not finite: {text!r}")
    return value


def _values(row: list[str], group: _Group) -> tuple[float, float, float, float, float]:
    o, h, lo, c, v = (_number(row[i], label) for i, label in zip(group.indexes, group.labels, strict=True))
    try:
        check_ohlcv(o, h, lo, c, v)
    except CandleValueError as exc:
        raise RowError(str(exc)) from exc
    return o, h, lo, c, v


# ------------------------------------------------------------------------------------------------------ layouts


def _normalize(cell: str) -> str:
    return cell.strip().lower()


def _is_header(row: list[str]) -> bool:
    cells = {_normalize(cell) for cell in row}
    return {"open", "close"} <= cells or any(_WIDE_RE.fullmatch(cell) for cell in cells)


def _wide_groups(header: list[str], quote: str) -> list[_Group]:
    fields: dict[str, dict[str, int]] = {}
    for index, cell in enumerate(header):
        match = _WIDE_RE.fullmatch(_normalize(cell))
        if match:
            fields.setdefault(match.group(1).strip().upper(), {})[match.group(2)] = index
    groups = []
    for base, columns in fields.items():
        missing = [name for name in (*_PRICE_FIELDS, "volume") if name not in columns]
        if missing:
            raise ImportFileError(f"columns {', '.join(f'{base}:{m}' for m in missing)} are missing")
        indexes = tuple(columns[name] for name in (*_PRICE_FIELDS, "volume"))
        groups.append(_Group(f"{base}/{quote.upper()}", tuple(header[i].strip() for i in indexes), indexes))
    return groups


def _volume_column(names: list[str], symbol: str | None) -> int:
    """Base-currency volume: `VolumeFrom`, `Volume`, or `Volume <base>` (CryptoDataDownload's newer files)."""
    for wanted in ("volumefrom", "volume", "volume_from", "base_volume"):
        if wanted in names:
            return names.index(wanted)
    volume_columns = [i for i, name in enumerate(names) if name.startswith("volume ")]
    if symbol is not None:
        base = symbol.split("/")[0].lower()
        for i in volume_columns:
            if names[i] == f"volume {base}":
                return i
    if volume_columns:
        return volume_columns[0]
    raise ImportFileError("no volume column (expected VolumeFrom, Volume or 'Volume <base>')")


# ------------------------------------------------------------------------------------------------------- parsing


def parse_file(
    path: str | Path,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    quote: str = "USD",
) -> ParsedFile:
    """Parse one CSV file; exchange and symbol default to what the file (or its name) tells."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return parse_lines(
                handle, name=path.name, exchange=exchange, symbol=symbol, timeframe=timeframe, quote=quote
            )
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path.name} is not UTF-8 text: {exc}") from exc


def parse_lines(
    lines: Iterable[str],
    *,
    name: str,
    exchange: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    quote: str = "USD",
) -> ParsedFile:
    """Parse CSV text given line by line; `name` is the file name used for inference and in the report."""
    if timeframe is not None and timeframe not in TIMEFRAMES:
        raise ImportFileError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")
    name_exchange, name_symbol = infer_from_filename(name)
    exchange = (exchange or name_exchange or "").strip().lower()
    if not exchange:
        raise ImportFileError(f"cannot tell the exchange of {name}; pass --exchange")
    given_symbol = _given_symbol(symbol)

    reader = csv.reader(lines)
    header = _find_header(reader, name)
    names = [_normalize(cell) for cell in header]
    wide = _wide_groups(header, quote)
    rejected: list[Rejection] = []
    rows: dict[str, list[_Row]] = {}
    empty: Counter[str] = Counter()

    time_index = next((names.index(c) for c in _TIME_COLUMNS if c in names), -1)
    if time_index < 0:
        raise ImportFileError(f"{name}: no time column (expected one of unix, timestamp, time, date)")
    data = _DataRows(reader, len(header), time_index, rejected, given_symbol)
    if wide:
        if given_symbol is not None:
            raise ImportFileError(f"{name} holds several symbols ({', '.join(g.symbol or '' for g in wide)}); "
                                  "--symbol applies to single-symbol files only (use --quote for the quote)")
        layout = "wide"
        for group in wide:
            rows[group.symbol or ""] = []
        for line, ts, row in data:
            for group in wide:
                key = group.symbol or ""
                if not any(row[i].strip() for i in group.indexes):
                    empty[key] += 1
                    continue
                try:
                    rows[key].append(_Row(line, ts, *_values(row, group)))
                except RowError as exc:
                    rejected.append(Rejection(line, str(exc), key))
    else:
        layout = "long"
        missing = [f for f in _PRICE_FIELDS if f not in names]
        if missing:
            raise ImportFileError(f"{name}: missing columns {', '.join(missing)}")
        symbol_index = next((names.index(c) for c in _SYMBOL_COLUMNS if c in names), -1)
        if given_symbol is None and symbol_index < 0 and name_symbol is None:
            raise ImportFileError(f"cannot tell the symbol of {name} (no Symbol column, none in the name); "
                                  "pass --symbol")
        indexes = (*(names.index(f) for f in _PRICE_FIELDS), _volume_column(names, given_symbol or name_symbol))
        single = _Group(None, tuple(header[i].strip() for i in indexes), indexes)
        for line, ts, row in data:
            try:
                row_symbol = given_symbol or (
                    normalize_symbol(row[symbol_index]) if symbol_index >= 0 else name_symbol
                )
                rows.setdefault(row_symbol or "", []).append(_Row(line, ts, *_values(row, single)))
            except RowError as exc:
                rejected.append(Rejection(line, str(exc), given_symbol))

    report = ImportReport(name=name, layout=layout, exchange=exchange, timeframe="", rows_read=data.rows_read)
    tf = _resolve_timeframe(rows, timeframe, report)
    report.timeframe = tf
    report.rejected = rejected
    candles = _build_series(rows, exchange, tf, empty, report)
    report.rejected.sort(key=lambda r: (r.line, r.symbol or ""))
    logger.info(
        "parsed %s: %d rows, %d candles, %d rejected, %d duplicates, %d gaps",
        name, data.rows_read, len(candles), len(report.rejected), len(report.duplicates), len(report.gaps),
    )
    return ParsedFile(candles, report)


def _given_symbol(symbol: str | None) -> str | None:
    if symbol is None:
        return None
    try:
        return normalize_symbol(symbol)
    except RowError as exc:
        raise ImportFileError(str(exc)) from exc


def _find_header(reader: Iterable[list[str]], name: str) -> list[str]:
    for count, row in enumerate(reader, start=1):
        if _is_header(row):
            return row
        if count >= HEADER_SEARCH_LINES:
            break
    raise ImportFileError(
        f"{name}: no header line with open/high/low/close columns in its first {HEADER_SEARCH_LINES} lines"
    )


class _DataRows:
    """The non-blank rows after the header as (line, event time, cells), counted; a row of the wrong width or
    with a bad time is rejected here, so both layouts count and report such rows alike."""

    def __init__(
        self, reader: Reader, width: int, time_index: int, rejected: list[Rejection], symbol: str | None,
    ) -> None:
        self.rows_read = 0
        self._symbol = symbol
        self._reader = reader
        self._width = width
        self._time_index = time_index
        self._rejected = rejected

    def __iter__(self) -> Iterator[tuple[int, int, list[str]]]:
        for row in self._reader:
            if not any(cell.strip() for cell in row):
                continue
            self.rows_read += 1
            line = self._reader.line_num
            try:
                if len(row) < self._width or any(cell.strip() for cell in row[self._width:]):
                    raise RowError(f"expected {self._width} columns, got {len(row)}")
                ts = parse_timestamp(row[self._time_index])
            except RowError as exc:
                self._rejected.append(Rejection(line, str(exc), self._symbol))
                continue
            yield line, ts, row


def _resolve_timeframe(rows: dict[str, list[_Row]], timeframe: str | None, report: ImportReport) -> str:
    """The given timeframe, or the most common spacing of consecutive timestamps over all series."""
    spacings: Counter[int] = Counter()
    for series in rows.values():
        stamps = sorted({row.ts for row in series})
        spacings.update(b - a for a, b in pairwise(stamps))
    inferred = timeframe_of(spacings.most_common(1)[0][0]) if spacings else None
    if timeframe is not None:
        if inferred is not None and inferred != timeframe:
            report.warnings.append(f"timestamps are spaced like {inferred} candles, imported as {timeframe}")
        return timeframe
    if not spacings:
        raise ImportFileError(f"{report.name}: too few valid rows to infer the timeframe; pass --timeframe")
    if inferred is None:
        spacing = spacings.most_common(1)[0][0]
        raise ImportFileError(
            f"{report.name}: rows are {spacing // 1000} s apart, which is not one of {', '.join(TIMEFRAMES)}; "
            "pass --timeframe"
        )
    return inferred


def _build_series(
    rows: dict[str, list[_Row]], exchange: str, timeframe: str, empty: Counter[str], report: ImportReport
) -> list[Candle]:
    """Align, de-duplicate and gap-check each instrument's rows, then turn them into candles."""
    span = TIMEFRAMES[timeframe]
    candles: list[Candle] = []
    for symbol in sorted(rows):
        kept: list[_Row] = []
        for row in sorted(rows[symbol], key=lambda r: r.ts):
            if row.ts % span:
                report.rejected.append(
                    Rejection(row.line, f"timestamp {format_ts(row.ts)} is not aligned to {timeframe}", symbol)
                )
            elif kept and kept[-1].ts == row.ts:
                first = kept[-1]
                same = (row.open, row.high, row.low, row.close, row.volume) == (
                    first.open, first.high, first.low, first.close, first.volume)
                report.duplicates.append(Duplicate(row.line, first.line, symbol, row.ts, same))
            else:
                if kept and row.ts - kept[-1].ts > span:
                    missing = (row.ts - kept[-1].ts) // span - 1
                    report.gaps.append(Gap(symbol, kept[-1].ts + span, row.ts - span, missing))
                kept.append(row)
        series = [
            make_candle(exchange, symbol, timeframe, row.ts, (row.open, row.high, row.low, row.close, row.volume),
                        source=SOURCE)
            for row in kept
        ]
        report.series.append(
            SeriesSummary(
                exchange, symbol, timeframe, len(series),
                series[0] if series else None, series[-1] if series else None, empty[symbol],
            )
        )
        candles.extend(series)
    candles.sort(key=lambda c: (c.ts, c.symbol))
    return candles
