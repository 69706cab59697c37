"""Backfill through a real ccxt binance class pointed at the fake exchange, into the real topic and table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from streams.records import Candle
from streams.replay import read_records
from streams.topics import candle_topic
from tests.fake_exchange import DROP, FakeBinance
from tests.pipeline_helpers import settings_env
from tradepulse.commands.data import app
from tradepulse.marketdata.backfill import BackfillResult, backfill
from tradepulse.marketdata.exchanges import Backoff, ExchangeRequestError, create_exchange
from tradepulse.marketdata.importer import format_ts
from tradepulse.marketdata.synth import generate_candles
from tradepulse.marketdata.writer import CandleWriter
from tradepulse.settings import Settings, get_settings

MINUTE = 60_000
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
PAGE_LIMIT = 100
HISTORY = 450
FUTURE = 5
"""Minutes of history the fake holds before the current minute, and candles after it (still open or not yet
started) that a backfill must never store."""

Row = tuple[int, float, float, float, float, float]


@pytest.fixture
def fake() -> Iterator[tuple[FakeBinance, int]]:
    """The fake exchange and the open time of its first candle."""
    now = int(time.time() * 1000)
    first = now - now % MINUTE - HISTORY * MINUTE
    server = FakeBinance(page_limit=PAGE_LIMIT)
    for symbol in SYMBOLS:
        candles = generate_candles([symbol], first, HISTORY + 1 + FUTURE, seed=3, ticks_per_minute=4)
        server.add_market(symbol, [(c.ts, c.open, c.high, c.low, c.close, c.volume) for c in candles])
    with server:
        yield server, first


def stored(settings: Settings) -> dict[str, list[Row]]:
    with psycopg.connect(settings.database.url) as conn:
        rows = conn.execute(
            "SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint, open, high, low, close, volume"
            " FROM market_data WHERE exchange = 'binance' AND timeframe = '1m' ORDER BY symbol, ts"
        ).fetchall()
    out: dict[str, list[Row]] = {}
    for symbol, ts, o, h, lo, c, v in rows:
        out.setdefault(symbol, []).append((int(ts), o, h, lo, c, v))
    return out


def published(settings: Settings) -> list[Candle]:
    return [record for _, _, record in asyncio.run(read_records(settings, candle_topic("1m"), Candle))]


def closed(server: FakeBinance, symbol: str, by: int) -> list[Row]:
    return [row for row in server.candles[symbol.replace("/", "")] if row[0] + MINUTE <= by]


def assert_complete(settings: Settings, server: FakeBinance, started: int, finished: int) -> None:
    """Every candle closed before the run started is stored as the fake has it; nothing closed after it ended."""
    table = stored(settings)
    assert set(table) == set(SYMBOLS)
    for symbol in SYMBOLS:
        must = closed(server, symbol, started)
        may = closed(server, symbol, finished)
        assert table[symbol][: len(must)] == must
        assert table[symbol] == may[: len(table[symbol])]
        assert len(must) >= HISTORY - 1
    assert len(published(settings)) == sum(len(rows) for rows in table.values())


def run_backfill(settings: Settings, url: str, since: int, *, backoff: Backoff | None = None) -> list[BackfillResult]:
    async def main() -> list[BackfillResult]:
        client = create_exchange("binance", api_url=url)
        try:
            async with CandleWriter(settings) as writer:
                return await backfill(client, writer, SYMBOLS, "1m", since=since, until=int(time.time() * 1000),
                                      page_size=1_000, backoff=backoff or Backoff(base_s=0.05, attempts=5))
        finally:
            await client.close()

    return asyncio.run(main())


def test_cli_backfill_equals_the_fake_and_a_rerun_fetches_nothing(
    settings: Settings, fake: tuple[FakeBinance, int]
) -> None:
    server, first = fake
    get_settings.cache_clear()
    runner = CliRunner(env=settings_env(settings))
    args = ["backfill", "--exchange", "binance", "--symbols", ",".join(SYMBOLS), "--timeframe", "1m",
            "--since", format_ts(first).replace(" ", "T"), "--api-url", server.url]
    try:
        started = int(time.time() * 1000)
        result = runner.invoke(app, args, catch_exceptions=False, terminal_width=200)
        finished = int(time.time() * 1000)
        assert result.exit_code == 0, result.output
        assert_complete(settings, server, started, finished)
        pages = server.count("/api/v3/klines")
        assert pages >= 2 * -(-HISTORY // PAGE_LIMIT)  # the fake's page limit forced pagination

        again = runner.invoke(app, args, catch_exceptions=False, terminal_width=200)
    finally:
        get_settings.cache_clear()
    assert again.exit_code == 0, again.output
    assert "(resumed)" in again.output
    # at most the one candle that closed in between is fetched, nothing is written twice
    assert server.count("/api/v3/klines") - pages <= 2
    assert_complete(settings, server, started, int(time.time() * 1000))


def test_rate_limits_server_errors_and_dropped_connections_are_retried(
    settings: Settings, fake: tuple[FakeBinance, int]
) -> None:
    server, first = fake
    server.fail(429, times=2)
    server.fail(503, times=1, after=1)
    server.fail(DROP, times=3, after=2)
    started = int(time.time() * 1000)
    results = run_backfill(settings, server.url, first)
    assert_complete(settings, server, started, int(time.time() * 1000))
    assert [r.symbol for r in results] == SYMBOLS
    assert all(r.pages >= -(-HISTORY // PAGE_LIMIT) for r in results)
    assert server.pending_faults == 0


def test_interrupted_run_resumes_where_it_stopped(settings: Settings, fake: tuple[FakeBinance, int]) -> None:
    server, first = fake
    server.fail(503, times=10, after=2)  # the exchange goes away after two pages
    with pytest.raises(ExchangeRequestError, match="still failing after 3 attempts"):
        run_backfill(settings, server.url, first, backoff=Backoff(base_s=0.01, attempts=3))
    partial = stored(settings)
    assert list(partial) == ["BTC/USDT"] and len(partial["BTC/USDT"]) == 2 * PAGE_LIMIT

    server.clear_faults()
    started = int(time.time() * 1000)
    results = run_backfill(settings, server.url, first)
    assert results[0].resumed_from == first + 2 * PAGE_LIMIT * MINUTE
    assert results[1].resumed_from is None
    assert_complete(settings, server, started, int(time.time() * 1000))


def test_refusals_are_clear_errors_and_not_retried(settings: Settings, fake: tuple[FakeBinance, int]) -> None:
    server, first = fake
    get_settings.cache_clear()
    runner = CliRunner(env=settings_env(settings))
    common = ["--timeframe", "1m", "--since", format_ts(first).replace(" ", "T"), "--api-url", server.url]
    try:
        unknown = runner.invoke(app, ["backfill", "--exchange", "binance", "--symbols", "XYZ/USDT", *common])
        no_exchange = runner.invoke(app, ["backfill", "--exchange", "nosuchx", "--symbols", "BTC/USDT", *common])
    finally:
        get_settings.cache_clear()
    assert unknown.exit_code == 1 and "binance does not list XYZ/USDT" in unknown.output
    assert no_exchange.exit_code == 1 and "unknown exchange 'nosuchx'" in no_exchange.output
    assert server.count("/api/v3/klines") == 0

    server.fail(400)
    with pytest.raises(ExchangeRequestError, match="refused by the exchange"):
        run_backfill(settings, server.url, first)
    assert server.count("/api/v3/klines") == 1
    assert stored(settings) == {}
