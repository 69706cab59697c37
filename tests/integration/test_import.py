"""`tradepulse data import` against the real broker and database: counts in topic and table, idempotent re-import."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

from streams.records import Candle, stable_id
from streams.replay import read_records
from streams.topics import candle_topic
from tests.pipeline_helpers import settings_env
from tradepulse.commands.data import app
from tradepulse.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
DATA = next(p for p in (ROOT.parent / "shared" / "data", ROOT / "data" / "demo") if p.is_dir())
FIXTURES = ROOT / "tests" / "data"


@pytest.fixture
def cli(settings: Settings) -> Iterator[CliRunner]:
    """A runner whose commands see the test's isolated settings."""
    get_settings.cache_clear()
    yield CliRunner(env=settings_env(settings))
    get_settings.cache_clear()


def run(cli: CliRunner, *args: str) -> Result:
    result = cli.invoke(app, list(args), catch_exceptions=False, terminal_width=200)
    return result


def table_counts(settings: Settings) -> dict[tuple[str, str, str], int]:
    with psycopg.connect(settings.database.url) as conn:
        rows = conn.execute(
            "SELECT exchange, symbol, timeframe, count(*) FROM market_data GROUP BY 1, 2, 3"
        ).fetchall()
    return {(e, s, tf): n for e, s, tf, n in rows}


def topic(settings: Settings, timeframe: str) -> list[Candle]:
    return [record for _, _, record in asyncio.run(read_records(settings, candle_topic(timeframe), Candle))]


def test_1h_file_lands_in_topic_and_table_once(settings: Settings, cli: CliRunner) -> None:
    result = run(cli, "import", str(DATA / "bitfinex_btcusd_1h.csv"))
    assert result.exit_code == 0, result.output
    assert "written to topic and table: 17,583" in result.output

    assert table_counts(settings) == {("bitfinex", "BTC/USD", "1h"): 17_583}
    published = topic(settings, "1h")
    assert len(published) == 17_583
    assert len({c.event_id for c in published}) == 17_583
    first = min(published, key=lambda c: c.ts)
    assert (first.ts, first.open, first.close, first.volume, first.source) == (
        1_498_906_800_000, 2505.56, 2509.17, 114.6, "import"
    )
    assert first.event_id == stable_id("candle", "bitfinex", "BTC/USD", "1h", first.ts)
    with psycopg.connect(settings.database.url) as conn:
        stored = conn.execute(
            "SELECT open, high, low, close, volume, source FROM market_data"
            " WHERE ts = to_timestamp(1562202000)"
        ).fetchone()
    assert stored == (11849.99, 11880.0, 11790.01, 11849.69, 303.61, "import")

    again = run(cli, "import", str(DATA / "bitfinex_btcusd_1h.csv"))
    assert again.exit_code == 0, again.output
    assert "written to topic and table: 0; already stored unchanged: 17,583" in again.output
    assert table_counts(settings) == {("bitfinex", "BTC/USD", "1h"): 17_583}
    assert len(topic(settings, "1h")) == 17_583


def test_every_shared_file(settings: Settings, cli: CliRunner) -> None:
    files = sorted(str(p) for p in DATA.glob("*.csv"))
    result = run(cli, "import", *files)
    assert result.exit_code == 0, result.output
    assert table_counts(settings) == {
        ("bitfinex", "BTC/USD", "1h"): 17_583,
        ("bitfinex", "BTC/USD", "1d"): 1_862,  # the 1d file's days are a subset of the wide file's
        ("bitfinex", "ETH/USD", "1d"): 1_319,
        ("bitstamp", "BTC/USD", "1d"): 1_865,
        ("bitstamp", "ETH/USD", "1d"): 788,
        ("bitstamp", "LTC/USD", "1d"): 925,
    }
    # the single-symbol 1d file repeats the wide file's days: only 2019-07-04 differs (a partial day) and is
    # published again as a correction; the other 1,664 are recognised as stored
    assert "written to topic and table: 1; already stored unchanged: 1,664" in result.output
    daily = topic(settings, "1d")
    assert len(daily) == 1_862 + 1_319 + 1 + 1_865 + 788 + 925
    assert {(c.exchange, c.symbol) for c in daily} == {
        ("bitfinex", "BTC/USD"), ("bitfinex", "ETH/USD"), ("bitstamp", "BTC/USD"), ("bitstamp", "ETH/USD"),
        ("bitstamp", "LTC/USD"),
    }
    assert "2019-03-20 00:00 │ 2019-03-31 00:00 │ 12" in result.output


def test_bad_rows_are_reported_and_the_rest_imported(settings: Settings, cli: CliRunner) -> None:
    result = run(cli, "import", str(FIXTURES / "bitfinex_btcusd_bad_1h.csv"))
    assert result.exit_code == 0, result.output
    for line in ("4", "5", "8", "10", "11", "13", "14", "15"):
        assert f"│ {line:<4} │" in result.output
    assert "expected 8 columns, got 5" in result.output
    assert table_counts(settings) == {("bitfinex", "BTC/USD", "1h"): 6}
    assert len(topic(settings, "1h")) == 6

    strict = run(cli, "import", "--strict", str(FIXTURES / "bitfinex_btcusd_bad_1h.csv"))
    assert strict.exit_code == 1


def test_unusable_file_is_a_clear_error(settings: Settings, cli: CliRunner) -> None:
    result = run(cli, "import", str(FIXTURES / "candles_iso.csv"))
    assert result.exit_code == 1
    assert "cannot tell the exchange of candles_iso.csv; pass --exchange" in result.output
    assert table_counts(settings) == {}

    given = run(cli, "import", "--exchange", "kraken", "--symbol", "ETH/USD", str(FIXTURES / "candles_iso.csv"))
    assert given.exit_code == 0, given.output
    assert table_counts(settings) == {("kraken", "ETH/USD", "4h"): 4}
