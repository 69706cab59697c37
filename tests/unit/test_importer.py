"""CSV parsing: the real CryptoDataDownload files, the other layouts, and every kind of bad row."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.codecs import decode, encode
from streams.records import Candle, stable_id
from tradepulse.marketdata.importer import (
    ImportFileError,
    RowError,
    normalize_symbol,
    parse_file,
    parse_lines,
    parse_timestamp,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "data"
DATA = next(p for p in (ROOT.parent / "shared" / "data", ROOT / "data" / "demo") if p.is_dir())


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# ------------------------------------------------------------------------------------------- the real data files


def test_bitfinex_1h_file() -> None:
    parsed = parse_file(DATA / "bitfinex_btcusd_1h.csv")
    report = parsed.report
    assert (report.layout, report.exchange, report.timeframe) == ("long", "bitfinex", "1h")
    assert report.rows_read == 17_583
    assert report.imported == len(parsed.candles) == 17_583
    assert report.rejected == [] and report.duplicates == [] and report.gaps == []
    first, last = parsed.candles[0], parsed.candles[-1]
    assert (first.ts, first.open, first.high, first.low, first.close, first.volume) == (
        ms("2017-07-01 11:00"), 2505.56, 2513.38, 2495.12, 2509.17, 114.6
    )
    assert (last.ts, last.open, last.close, last.volume) == (ms("2019-07-04 01:00"), 11849.99, 11849.69, 303.61)
    assert [c.ts for c in parsed.candles] == sorted(c.ts for c in parsed.candles)
    assert {c.symbol for c in parsed.candles} == {"BTC/USD"}
    assert first.event_id == stable_id("candle", "bitfinex", "BTC/USD", "1h", first.ts)
    assert first.source == "import"
    assert decode(Candle, encode(last)) == last


def test_bitfinex_1d_file_reports_the_march_2019_gap() -> None:
    parsed = parse_file(DATA / "bitfinex_btcusd_1d.csv")
    report = parsed.report
    assert (report.timeframe, report.rows_read, report.imported) == ("1d", 1_665, 1_665)
    assert (parsed.candles[0].ts, parsed.candles[0].open) == (ms("2014-12-01"), 300.0)
    assert (parsed.candles[-1].ts, parsed.candles[-1].close) == (ms("2019-07-04"), 11909.55)
    assert [(g.first, g.last, g.missing) for g in report.gaps] == [(ms("2019-03-20"), ms("2019-03-31"), 12)]


@pytest.mark.parametrize(
    ("name", "exchange", "rows", "series"),
    [
        (
            "bitfinex_btc_eth_usd_1d.csv", "bitfinex", 1_862,
            {"BTC/USD": (1_862, 0, "2014-12-01", 300.0, "2020-01-17", 8693.43),
             "ETH/USD": (1_319, 543, "2016-05-27", 11.98, "2020-01-17", 163.95)},
        ),
        (
            "bitstamp_btc_eth_ltc_usd_1d.csv", "bitstamp", 1_865,
            {"BTC/USD": (1_865, 0, "2014-11-28", 363.59, "2020-01-17", 8709.49),
             "ETH/USD": (788, 1_077, "2017-11-09", 322.15, "2020-01-17", 164.52),
             "LTC/USD": (925, 940, "2017-06-25", 43.03, "2020-01-17", 57.88)},
        ),
    ],
)
def test_wide_files(name: str, exchange: str, rows: int, series: dict[str, tuple]) -> None:
    parsed = parse_file(DATA / name)
    report = parsed.report
    assert (report.layout, report.exchange, report.timeframe, report.rows_read) == ("wide", exchange, "1d", rows)
    assert report.rejected == [] and report.duplicates == []
    got = {
        s.symbol: (s.imported, s.empty_rows, s.first and s.first.ts, s.first and s.first.open,
                   s.last and s.last.ts, s.last and s.last.close)
        for s in report.series
    }
    assert got == {
        symbol: (count, empty, ms(first), first_open, ms(last), last_close)
        for symbol, (count, empty, first, first_open, last, last_close) in series.items()
    }
    assert report.imported == len(parsed.candles) == sum(v[0] for v in series.values())
    # every date row is accounted for per symbol: a candle or an empty cell group
    assert all(s.imported + s.empty_rows == rows for s in report.series)
    assert {g.symbol for g in report.gaps} == set(series)
    assert all((g.first, g.missing) == (ms("2019-03-20"), 12) for g in report.gaps)


# -------------------------------------------------------------------------------------------------- bad rows


def test_bad_rows_are_reported_by_line_and_the_rest_imported() -> None:
    parsed = parse_file(FIXTURES / "bitfinex_btcusd_bad_1h.csv")
    report = parsed.report
    assert report.rows_read == 15
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [4, 5, 8, 10, 11, 13, 14, 15]
    assert "high 99.0 is below" in reasons[4]
    assert "non-positive price" in reasons[5]
    assert "bad timestamp 'not-a-date'" in reasons[8]
    assert "not aligned to 1h" in reasons[10]
    assert reasons[11] == "expected 8 columns, got 5"
    assert "negative volume" in reasons[13]
    assert "Close is not finite" in reasons[14]
    assert "low 101.0 is above" in reasons[15]
    assert [(d.line, d.kept_line, d.ts) for d in report.duplicates] == [(9, 7, ms("2019-07-01 05:00"))]
    kept = {c.ts: c for c in parsed.candles}
    assert kept[ms("2019-07-01 05:00")].open == 103.0  # the first row in file order wins
    assert sorted(kept) == [ms(f"2019-{t}") for t in ("06-30 22:00", "06-30 23:00", "07-01 03:00", "07-01 05:00",
                                                    "07-01 06:00", "07-01 09:00")]
    assert [(g.first, g.last, g.missing) for g in report.gaps] == [
        (ms("2019-07-01 00:00"), ms("2019-07-01 02:00"), 3),
        (ms("2019-07-01 04:00"), ms("2019-07-01 04:00"), 1),
        (ms("2019-07-01 07:00"), ms("2019-07-01 08:00"), 2),
    ]
    # nothing silently dropped
    assert report.imported + len(report.rejected) + len(report.duplicates) == report.rows_read


def test_wide_file_with_empty_and_partial_cells() -> None:
    parsed = parse_file(FIXTURES / "kraken_wide_1d.csv", quote="EUR")
    report = parsed.report
    assert report.exchange == "kraken"
    by_symbol = {s.symbol: s for s in report.series}
    assert set(by_symbol) == {"BTC/EUR", "ETH/EUR"}
    assert (by_symbol["BTC/EUR"].imported, by_symbol["BTC/EUR"].empty_rows) == (5, 0)
    assert (by_symbol["ETH/EUR"].imported, by_symbol["ETH/EUR"].empty_rows) == (3, 1)
    assert [(r.line, r.symbol, r.reason) for r in report.rejected] == [(4, "ETH/EUR", "missing value for ETH:high")]
    assert [(g.symbol, g.first, g.missing) for g in report.gaps] == [
        ("BTC/EUR", ms("2020-01-05"), 1), ("ETH/EUR", ms("2020-01-03"), 1), ("ETH/EUR", ms("2020-01-05"), 1)
    ]


def test_misaligned_timestamps_against_a_given_timeframe() -> None:
    text = ["timestamp,open,high,low,close,volume\n"] + [
        f"{ms('2024-01-01') + i * 3_600_000 + (60_000 if i == 2 else 0)},10,11,9,10,1\n" for i in range(5)
    ]
    parsed = parse_lines(text, name="plain.csv", exchange="kraken", symbol="SOL/USD", timeframe="1h")
    assert [(r.line, r.reason) for r in parsed.report.rejected] == [
        (4, "timestamp 2024-01-01 02:01 is not aligned to 1h")
    ]
    assert len(parsed.candles) == 4


def test_given_timeframe_that_disagrees_with_the_spacing_is_warned_about() -> None:
    parsed = parse_file(FIXTURES / "candles_iso.csv", exchange="kraken", symbol="ETH/USD", timeframe="1h")
    assert parsed.report.warnings == ["timestamps are spaced like 4h candles, imported as 1h"]


# ------------------------------------------------------------------------------------------- formats and layouts


def test_banner_and_am_pm_hours() -> None:
    parsed = parse_file(FIXTURES / "gemini_ethusd_ampm_1h.csv")
    report = parsed.report
    assert (report.exchange, report.timeframe, report.rows_read, report.imported) == ("gemini", "1h", 6, 6)
    assert [c.ts for c in parsed.candles] == [
        ms(t) for t in ("2019-10-16 23:00", "2019-10-17 00:00", "2019-10-17 01:00", "2019-10-17 11:00",
                        "2019-10-17 12:00", "2019-10-17 13:00")
    ]
    assert parsed.candles[3].volume == 80.0  # base volume (Volume ETH), not the quote volume
    assert [(g.first, g.last, g.missing) for g in report.gaps] == [
        (ms("2019-10-17 02:00"), ms("2019-10-17 10:00"), 9)
    ]


def test_unix_timestamp_column_and_slash_symbols() -> None:
    parsed = parse_file(FIXTURES / "binance_btcusdt_unix_1m.csv")
    assert (parsed.report.exchange, parsed.report.timeframe) == ("binance", "1m")
    assert [c.symbol for c in parsed.candles] == ["BTC/USDT"] * 4
    assert parsed.candles[0].ts == 1_609_459_200_000
    assert [c.volume for c in parsed.candles] == [8.5, 9.0, 10.25, 12.5]


def test_plain_file_with_epoch_seconds_needs_exchange_and_symbol() -> None:
    with pytest.raises(ImportFileError, match="cannot tell the exchange"):
        parse_file(FIXTURES / "candles_epoch_seconds.csv")
    with pytest.raises(ImportFileError, match="cannot tell the symbol"):
        parse_file(FIXTURES / "candles_epoch_seconds.csv", exchange="kraken")
    parsed = parse_file(FIXTURES / "candles_epoch_seconds.csv", exchange="Kraken", symbol="sol-usd")
    assert (parsed.report.exchange, parsed.report.timeframe) == ("kraken", "5m")
    assert [c.ts for c in parsed.candles] == [1_700_000_100_000 + i * 300_000 for i in range(4)]
    assert {c.symbol for c in parsed.candles} == {"SOL/USD"}
    assert parsed.candles[-1].volume == 0.0


def test_plain_file_with_iso_timestamps() -> None:
    parsed = parse_file(FIXTURES / "candles_iso.csv", exchange="kraken", symbol="ETH/USD")
    assert parsed.report.timeframe == "4h"
    assert [c.ts for c in parsed.candles] == [ms(f"2024-03-01 {h}") for h in ("00:00", "04:00", "08:00", "16:00")]
    assert [(g.first, g.missing) for g in parsed.report.gaps] == [(ms("2024-03-01 12:00"), 1)]


def test_file_level_errors_are_clear() -> None:
    with pytest.raises(ImportFileError, match="no header line"):
        parse_lines(["1,2,3\n"] * 20, name="kraken_btcusd.csv")
    with pytest.raises(ImportFileError, match="too few valid rows"):
        parse_lines(["timestamp,open,high,low,close,volume\n", "1700000000,1,1,1,1,1\n"], name="kraken_btcusd.csv")
    with pytest.raises(ImportFileError, match="not one of"):
        parse_lines(
            ["timestamp,open,high,low,close,volume\n", "1700000000,1,1,1,1,1\n", "1700000007,1,1,1,1,1\n"],
            name="kraken_btcusd.csv",
        )
    with pytest.raises(ImportFileError, match="several symbols"):
        parse_file(FIXTURES / "kraken_wide_1d.csv", symbol="BTC/USD")
    with pytest.raises(ImportFileError, match="unknown timeframe"):
        parse_file(FIXTURES / "candles_iso.csv", exchange="kraken", symbol="ETH/USD", timeframe="2h")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-07-04 01:00", "2019-07-04 01:00"),
        ("2019-10-17 09-AM", "2019-10-17 09:00"),
        ("2019-10-17 12-AM", "2019-10-17 00:00"),
        ("2019-10-17 12-PM", "2019-10-17 12:00"),
        ("2019-10-17 01-PM", "2019-10-17 13:00"),
        ("2019-07-04", "2019-07-04 00:00"),
        ("2024-03-01T08:00:00Z", "2024-03-01 08:00"),
        ("2024-03-01T10:00:00+02:00", "2024-03-01 08:00"),
        ("1562202000", "2019-07-04 01:00"),
        ("1562202000000", "2019-07-04 01:00"),
        ("1562202000000000", "2019-07-04 01:00"),
    ],
)
def test_parse_timestamp(text: str, expected: str) -> None:
    assert parse_timestamp(text) == ms(expected)


@pytest.mark.parametrize("text", ["", "yesterday", "2019-10-17 13-PM", "2019-02-30 01:00"])
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(RowError):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("BTCUSD", "BTC/USD"), ("btcusdt", "BTC/USDT"), ("ETH-BTC", "ETH/BTC"), ("SOL/USDC", "SOL/USDC")],
)
def test_normalize_symbol(raw: str, expected: str) -> None:
    assert normalize_symbol(raw) == expected


def test_normalize_symbol_rejects_unknown_quote() -> None:
    with pytest.raises(RowError, match="cannot tell base and quote"):
        normalize_symbol("FOOBAR")
