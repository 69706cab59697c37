"""Candles for training: the checks every candle passes before it becomes a bar, and loading from CSV files."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.records import Candle, make_candle
from training.data import CorruptData, DataError, DataReport, DataRequest, load_series, validate_candles

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo"
FIXTURES = ROOT / "tests" / "data"
HOUR = 3_600_000
T0 = 1_700_006_400_000  # 2023-11-15 00:00 UTC


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def candle(hour: int, ohlcv: tuple[float, float, float, float, float] = (100.0, 102.0, 99.0, 101.0, 5.0), *,
           offset_ms: int = 0) -> Candle:
    return make_candle("bitfinex", "BTC/USD", "1h", T0 + hour * HOUR + offset_ms, ohlcv, source="test")


def csv_request(path: Path, **kwargs: object) -> DataRequest:
    return DataRequest("csv", kwargs.pop("exchange", None), kwargs.pop("symbol", None),  # type: ignore[arg-type]
                       kwargs.pop("timeframe", None), csv_path=path, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- validate_candles


def test_clean_candles_become_a_series() -> None:
    candles = [candle(h, (100.0 + h, 102.0 + h, 99.0 + h, 101.0 + h, 5.0 + h)) for h in range(5)]
    series, report = validate_candles(candles, "1h", "test")
    assert (series.exchange, series.symbol, series.timeframe) == ("bitfinex", "BTC/USD", "1h")
    assert series.ts.tolist() == [T0 + h * HOUR for h in range(5)]
    assert series.open.tolist() == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert series.high.tolist() == [102.0, 103.0, 104.0, 105.0, 106.0]
    assert series.low.tolist() == [99.0, 100.0, 101.0, 102.0, 103.0]
    assert series.close.tolist() == [101.0, 102.0, 103.0, 104.0, 105.0]
    assert series.volume.tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert report == DataReport("test", 5, T0, T0 + 4 * HOUR, HOUR, [])
    assert report.missing_bars == 0


def test_gaps_are_reported_not_refused() -> None:
    series, report = validate_candles([candle(h) for h in (0, 1, 4, 5, 9)], "1h", "test")
    assert len(series) == report.bars == 5
    assert report.gaps == [(T0 + HOUR, T0 + 4 * HOUR), (T0 + 5 * HOUR, T0 + 9 * HOUR)]
    assert report.missing_bars == 2 + 3
    assert (report.first_ts, report.last_ts) == (T0, T0 + 9 * HOUR)


def test_candles_out_of_order_are_sorted() -> None:
    series, report = validate_candles([candle(2), candle(0), candle(1)], "1h", "test")
    assert series.ts.tolist() == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert report.gaps == []


def test_identical_duplicates_are_collapsed_silently() -> None:
    series, report = validate_candles([candle(0), candle(1), candle(1), candle(2)], "1h", "test")
    assert series.ts.tolist() == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert report.bars == 3 and report.gaps == []


def test_no_candles_give_an_empty_series() -> None:
    series, report = validate_candles([], "1h", "test")
    assert len(series) == 0
    assert (report.bars, report.first_ts, report.last_ts, report.gaps) == (0, None, None, [])


def corrupt_message(candles: list[Candle]) -> str:
    with pytest.raises(CorruptData) as info:
        validate_candles(candles, "1h", "the test feed")
    return str(info.value)


def where(hour: int, offset_ms: int = 0) -> str:
    ts = T0 + hour * HOUR + offset_ms
    return f"BTC/USD 1h candle at {datetime.fromtimestamp(ts / 1000, tz=UTC):%Y-%m-%d %H:%M} ({ts})"


@pytest.mark.parametrize(("bad", "reason"), [
    (candle(1, (0.0, 102.0, 99.0, 101.0, 5.0)), "non-positive price"),
    (candle(1, (100.0, 102.0, -1.0, 101.0, 5.0)), "non-positive price"),
    (candle(1, (100.0, 100.5, 99.0, 101.0, 5.0)), "inconsistent OHLC: high 100.5 is below"),
    (candle(1, (100.0, 102.0, 100.5, 101.0, 5.0)), "inconsistent OHLC: low 100.5 is above"),
    (candle(1, (100.0, 102.0, 99.0, 101.0, -5.0)), "negative volume"),
])
def test_a_bad_candle_is_named_with_its_time_and_reason(bad: Candle, reason: str) -> None:
    message = corrupt_message([candle(0), bad, candle(2)])
    assert message.startswith("1 corrupt candle(s) in the range from the test feed; none were used:")
    assert f"{where(1)}: {reason}" in message


def test_misaligned_timestamps_are_refused() -> None:
    message = corrupt_message([candle(0), candle(1, offset_ms=60_000), candle(2)])
    assert f"{where(1, 60_000)}: not aligned to 1h buckets" in message


def test_two_different_candles_for_one_bucket_are_refused() -> None:
    message = corrupt_message([candle(0), candle(1), candle(1, (100.0, 103.0, 99.0, 101.0, 5.0)), candle(2)])
    assert f"{where(1)}: two different candles for one bucket" in message
    assert "(100.0, 102.0, 99.0, 101.0, 5.0) and (100.0, 103.0, 99.0, 101.0, 5.0)" in message


def test_every_bad_candle_is_listed() -> None:
    candles = [
        candle(0),
        candle(1, (-3.0, 102.0, 99.0, 101.0, 5.0)),
        candle(2, (100.0, 100.0, 99.0, 101.0, 5.0)),
        candle(3, offset_ms=1),
        candle(4),
        candle(4, (100.0, 102.0, 99.0, 100.0, 5.0)),
    ]
    message = corrupt_message(candles)
    assert message.startswith("4 corrupt candle(s)")
    for hour, offset, reason in [(1, 0, "non-positive price"), (2, 0, "inconsistent OHLC: high 100.0 is below"),
                                 (3, 1, "not aligned"), (4, 0, "two different candles")]:
        assert f"{where(hour, offset)}: {reason}" in message
    assert where(0) not in message


def test_long_lists_are_cut_with_a_count() -> None:
    message = corrupt_message([candle(h, (0.0, 1.0, 0.0, 1.0, 1.0)) for h in range(25)])
    assert message.startswith("25 corrupt candle(s)")
    assert message.count("non-positive price") == 20
    assert message.endswith("... and 5 more")


# ---------------------------------------------------------------------------------------------- load_series


def test_load_the_demo_csv() -> None:
    series, report = load_series(csv_request(DEMO / "bitfinex_btcusd_1h.csv"))
    assert len(series) == report.bars == 17_583
    assert (series.exchange, series.symbol, series.timeframe) == ("bitfinex", "BTC/USD", "1h")
    assert (report.first_ts, report.last_ts) == (ms("2017-07-01 11:00"), ms("2019-07-04 01:00"))
    assert report.gaps == [] and report.missing_bars == 0
    assert (series.open[0], series.close[-1]) == (2505.56, 11849.69)
    assert str(DEMO / "bitfinex_btcusd_1h.csv") in report.source


def test_load_respects_the_range_with_an_exclusive_end() -> None:
    start, end = ms("2018-01-01 00:00"), ms("2018-01-02 00:00")
    series, report = load_series(csv_request(DEMO / "bitfinex_btcusd_1h.csv", start_ms=start, end_ms=end))
    assert len(series) == 24
    assert (report.first_ts, report.last_ts) == (start, end - HOUR)
    only_start, _ = load_series(csv_request(DEMO / "bitfinex_btcusd_1h.csv", start_ms=ms("2019-07-03 22:00")))
    assert only_start.ts.tolist() == [ms(f"2019-07-{t}") for t in ("03 22:00", "03 23:00", "04 00:00", "04 01:00")]
    only_end, _ = load_series(csv_request(DEMO / "bitfinex_btcusd_1h.csv", end_ms=ms("2017-07-01 13:00")))
    assert only_end.ts.tolist() == [ms("2017-07-01 11:00"), ms("2017-07-01 12:00")]


def test_a_multi_symbol_file_needs_a_symbol() -> None:
    path = DEMO / "bitfinex_btc_eth_usd_1d.csv"
    with pytest.raises(DataError, match=re.escape("holds BTC/USD, ETH/USD; choose one with --symbol")):
        load_series(csv_request(path))
    eth, report = load_series(csv_request(path, symbol="ETH/USD"))
    assert eth.symbol == "ETH/USD" and eth.timeframe == "1d"
    assert len(eth) == report.bars == 1_319
    assert report.first_ts == ms("2016-05-27") and report.last_ts == ms("2020-01-17")
    assert report.gaps == [(ms("2019-03-19"), ms("2019-04-01"))] and report.missing_bars == 12
    btc, _ = load_series(csv_request(path, symbol="BTC/USD"))
    assert len(btc) == 1_862 and btc.symbol == "BTC/USD"


def test_a_symbol_the_file_lacks_is_refused() -> None:
    with pytest.raises(DataError, match=re.escape("has no LTC/USD; it holds BTC/USD, ETH/USD")):
        load_series(csv_request(DEMO / "bitfinex_btc_eth_usd_1d.csv", symbol="LTC/USD"))


def test_a_bad_file_is_refused_with_its_line_numbers() -> None:
    with pytest.raises(CorruptData) as info:
        load_series(csv_request(FIXTURES / "bitfinex_btcusd_bad_1h.csv"))
    message = str(info.value)
    assert message.startswith("8 row(s) of bitfinex_btcusd_bad_1h.csv could not be read as candles; none of the "
                              "file was used:")
    assert [int(n) for n in re.findall(r"line (\d+):", message)] == [4, 5, 8, 10, 11, 13, 14, 15]
    assert "line 8: bad timestamp 'not-a-date'" in message


def test_a_bad_file_is_refused_whatever_the_range() -> None:
    # the file's good rows include 2019-06-30 22:00-23:00, yet none of the file is used
    with pytest.raises(CorruptData):
        load_series(csv_request(FIXTURES / "bitfinex_btcusd_bad_1h.csv", end_ms=ms("2019-07-01 00:00")))


def test_conflicting_duplicate_rows_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bitfinex_btcusd_1h.csv"
    path.write_text("Date,Symbol,Open,High,Low,Close,VolumeFrom,VolumeTo\n"
                    "2019-07-01 02:00,BTCUSD,100,110,95,105,10,1050\n"
                    "2019-07-01 01:00,BTCUSD,100,110,95,104,10,1040\n"
                    "2019-07-01 01:00,BTCUSD,101,111,96,106,10,1060\n"
                    "2019-07-01 00:00,BTCUSD,100,110,95,103,10,1030\n")
    with pytest.raises(CorruptData, match=r"1 conflicting duplicate row\(s\) in bitfinex_btcusd_1h.csv") as info:
        load_series(csv_request(path))
    assert "line 4 gives other values for the bucket of line 3" in str(info.value)


def test_an_identical_repeated_row_in_a_csv_is_collapsed(tmp_path: Path) -> None:
    path = tmp_path / "bitfinex_btcusd_1h.csv"
    path.write_text("Date,Symbol,Open,High,Low,Close,VolumeFrom,VolumeTo\n"
                    "2019-07-01 02:00,BTCUSD,100,110,95,105,10,1050\n"
                    "2019-07-01 01:00,BTCUSD,100,110,95,104,10,1040\n"
                    "2019-07-01 01:00,BTCUSD,100,110,95,104,10,1040\n"
                    "2019-07-01 00:00,BTCUSD,100,110,95,103,10,1030\n")
    series, report = load_series(csv_request(path))
    assert series.close.tolist() == [103.0, 104.0, 105.0] and report.gaps == []


def test_a_range_without_candles_is_refused() -> None:
    request = csv_request(DEMO / "bitfinex_btcusd_1h.csv", start_ms=ms("2021-01-01 00:00"))
    with pytest.raises(DataError, match="no candles for ") as info:
        load_series(request)
    assert not isinstance(info.value, CorruptData)
    assert str(info.value).endswith(f"from {DEMO / 'bitfinex_btcusd_1h.csv'} in the range 2021-01-01 00:00 .. the end")
    empty = csv_request(DEMO / "bitfinex_btcusd_1h.csv", start_ms=ms("2018-01-01 00:00"), end_ms=ms("2018-01-01 00:00"))
    with pytest.raises(DataError, match=re.escape("2018-01-01 00:00 .. 2018-01-01 00:00")):
        load_series(empty)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a file"):
        load_series(csv_request(tmp_path / "nothing.csv"))


def test_other_sources_need_the_settings_and_an_instrument() -> None:
    with pytest.raises(DataError, match="needs the settings of the stack"):
        load_series(DataRequest("table", "bitfinex", "BTC/USD", "1h"))
