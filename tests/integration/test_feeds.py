"""Tick feeds into the real market.ticks: replay of stored candles, synthetic ticks, and live trades from the fake
exchange through real ccxt classes (polling and websocket), with dropped connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agents.candles import CandleBuilder
from streams.producer import LogProducer
from streams.records import Candle, DeadLetter, TickBatch, stable_id
from streams.replay import read_records
from streams.topics import DLQ, TICKS, candle_topic
from tests.fake_exchange import DROP, FakeBinance, Trade
from tests.pipeline_helpers import settings_env
from tradepulse.commands.data import app
from tradepulse.marketdata.exchanges import Backoff, create_exchange
from tradepulse.marketdata.feeds import LiveFeed, TickPublisher
from tradepulse.marketdata.importer import parse_file
from tradepulse.marketdata.synth import generate_ticks
from tradepulse.marketdata.writer import CandleWriter
from tradepulse.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
DATA = next(p for p in (ROOT.parent / "shared" / "data", ROOT / "data" / "demo") if p.is_dir())
HOUR = 3_600_000


@pytest.fixture
def cli(settings: Settings) -> Iterator[CliRunner]:
    get_settings.cache_clear()
    yield CliRunner(env=settings_env(settings))
    get_settings.cache_clear()


def invoke(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, list(args), catch_exceptions=False, terminal_width=200)


def ticks_on_topic(settings: Settings) -> list[TickBatch]:
    return [record for _, _, record in asyncio.run(read_records(settings, TICKS, TickBatch))]


def store(settings: Settings, candles: list[Candle]) -> None:
    async def write() -> None:
        async with CandleWriter(settings) as writer:
            await writer.write(candles)

    asyncio.run(write())


def test_replay_of_stored_candles_rebuilds_them(settings: Settings, cli: CliRunner) -> None:
    candles = parse_file(DATA / "bitfinex_btcusd_1h.csv").candles[:400]
    store(settings, candles)

    result = invoke(cli, "feed", "--source", "replay", "--exchange", "bitfinex", "--symbols", "BTC/USD",
                    "--timeframe", "1h", "--speed", "0")
    assert result.exit_code == 0, result.output
    assert "published 1,600 ticks" in result.output

    batches = ticks_on_topic(settings)
    assert sum(len(b.times) for b in batches) == 4 * 400
    assert {(b.exchange, b.symbol, b.source) for b in batches} == {("bitfinex", "BTC/USD", "replay")}
    builder = CandleBuilder("bitfinex", "BTC/USD", grace_ms=0)
    rebuilt = {}
    for batch in sorted(batches, key=lambda b: b.times[0]):
        rebuilt.update({c.ts: c for c in builder.apply(batch.times, batch.prices, batch.amounts).candles
                        if c.timeframe == "1h"})
    assert len(rebuilt) == 399  # the newest hour never closes: no later tick
    for original in candles[:-1]:
        got = rebuilt[original.ts]
        assert (got.open, got.high, got.low, got.close, got.volume) == (
            original.open, original.high, original.low, original.close, original.volume
        )


def test_replay_is_paced_by_event_time(settings: Settings, cli: CliRunner) -> None:
    store(settings, parse_file(DATA / "bitfinex_btcusd_1h.csv").candles[:4])
    started = time.monotonic()
    result = invoke(cli, "feed", "--source", "replay", "--exchange", "bitfinex", "--symbols", "BTC/USD",
                    "--timeframe", "1h", "--speed", "3600")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    # one batch per candle, published when its last tick is due: 3 h of event time from the first batch to the
    # last, 3 s at 3600x
    assert 2.9 < elapsed < 10


def test_a_stopped_replay_resumes_without_repeating_or_skipping_a_tick(settings: Settings, cli: CliRunner) -> None:
    candles = parse_file(DATA / "bitfinex_btcusd_1h.csv").candles[:60]
    store(settings, candles)
    replay = ("feed", "--source", "replay", "--exchange", "bitfinex", "--symbols", "BTC/USD", "--timeframe", "1h")
    first = invoke(cli, *replay, "--speed", "36000", "--duration", "2")  # 10 candles a second: stopped midway
    assert first.exit_code == 0, first.output
    published = sum(len(b.times) for b in ticks_on_topic(settings))
    assert 0 < published < 4 * len(candles)
    other = list(generate_ticks(["ETH/USD"], candles[0].ts, 30, 3, 2, exchange="bitfinex"))
    asyncio.run(_publish_all(settings, other))  # newer messages of another instrument on the same topic

    resumed = invoke(cli, *replay, "--speed", "0", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming the replay: BTC/USD from" in resumed.output, resumed.output
    times = sorted(t for b in ticks_on_topic(settings) if b.symbol == "BTC/USD" for t in b.times)
    expected = sorted(t for c in candles for t in (c.ts + q * HOUR // 4 for q in range(4)))
    assert times == expected  # every tick once, across both runs

    again = invoke(cli, *replay, "--speed", "0", "--resume")
    assert again.exit_code == 0, again.output
    assert "published 0 ticks" in again.output


async def _publish_all(settings: Settings, batches: list[TickBatch]) -> None:
    async with LogProducer(settings) as producer:
        await producer.send_many(TICKS, [(f"{batch.exchange}:{batch.symbol}", batch) for batch in batches])


def test_replay_with_nothing_stored_is_a_clear_error(settings: Settings, cli: CliRunner) -> None:
    result = invoke(cli, "feed", "--source", "replay", "--exchange", "kraken", "--symbols", "BTC/USD")
    assert result.exit_code == 1
    assert "no stored 1h candles of BTC/USD on kraken to replay" in result.output


def test_synthetic_feed_publishes_the_generator_output(settings: Settings, cli: CliRunner) -> None:
    args = ["--symbols", "BTC/USDT,ETH/USDT", "--seed", "5", "--start", "2024-01-01T00:00", "--days", "0.05",
            "--ticks-per-minute", "30", "--speed", "0", "--batch-ms", "10000"]
    result = invoke(cli, "feed", "--source", "synth", "--exchange", "synth", *args)
    assert result.exit_code == 0, result.output
    expected = list(generate_ticks(["BTC/USDT", "ETH/USDT"], 1_704_067_200_000, 72, 5, 30, exchange="synth",
                                   batch_ms=10_000))
    got = ticks_on_topic(settings)
    assert sorted(got, key=lambda b: b.event_id) == sorted(expected, key=lambda b: b.event_id)


# ----------------------------------------------------------------------------------------------------- live


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance()
    server.add_market("BTC/USDT")
    server.add_market("ETH/USDT")
    with server:
        yield server


def trades(first_id: int, count: int, t0: int) -> list[Trade]:
    return [Trade(first_id + i, t0 + 250 * i, 60_000.0 + i, 0.01 * (i + 1)) for i in range(count)]


async def wait_for(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


class ObservedPublisher(TickPublisher):
    """Publishes like the real one and tells the test about each batch."""

    def __init__(self, producer: LogProducer, observe: Callable[[TickBatch], Awaitable[None]] | None) -> None:
        super().__init__(producer)
        self._observe = observe

    async def __call__(self, batch: TickBatch) -> None:
        await super().__call__(batch)
        if self._observe is not None:
            await self._observe(batch)


async def run_live(
    settings: Settings,
    fake: FakeBinance,
    mode: str,
    scenario: Callable[[LiveFeed], Awaitable[None]],
    observe: Callable[[TickBatch], Awaitable[None]] | None = None,
) -> LiveFeed:
    client = create_exchange("binance", api_url=fake.url, pro=mode == "watch")
    try:
        async with LogProducer(settings) as producer:
            live = LiveFeed(client, ["BTC/USDT", "ETH/USDT"], ObservedPublisher(producer, observe), mode=mode,
                            poll_interval_s=0.05, batch_ms=1_000, backoff=Backoff(base_s=0.05, cap_s=0.5))
            task = asyncio.create_task(live.run())
            try:
                await scenario(live)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await client.close()
    return live


def assert_ticks_are_the_trades(settings: Settings, sent: dict[str, list[Trade]]) -> None:
    batches = ticks_on_topic(settings)
    for symbol, expected in sent.items():
        mine = sorted((b for b in batches if b.symbol == symbol), key=lambda b: b.times[0])
        times = [t for b in mine for t in b.times]
        assert times == [t.ts for t in expected]  # each trade once, event time from the exchange
        assert [p for b in mine for p in b.prices] == [t.price for t in expected]
        assert [a for b in mine for a in b.amounts] == [t.amount for t in expected]
        by_first_time = {t.ts: t for t in expected}
        for batch in mine:
            first = by_first_time[batch.times[0]]
            assert batch.event_id == stable_id("ticks", "binance", symbol, str(first.id), len(batch.times))
            assert batch.source == "ccxt" and batch.ts == batch.times[-1]


def test_polling_feed_survives_dropped_connections_and_rejects_bad_trades(
    settings: Settings, fake: FakeBinance
) -> None:
    t0 = int(time.time() * 1000) - 60_000
    sent = {"BTC/USDT": trades(1, 40, t0), "ETH/USDT": trades(1, 10, t0)}
    bad = Trade(41, t0 + 20_000, 0.0, 1.0)

    async def scenario(live: LiveFeed) -> None:
        fake.add_trades("BTC/USDT", sent["BTC/USDT"][:15])
        fake.add_trades("ETH/USDT", sent["ETH/USDT"])
        await wait_for(lambda: live.stats.ticks >= 25)
        fake.fail(DROP, times=3, path="/api/v3/aggTrades")
        fake.fail(503, times=2, path="/api/v3/aggTrades")
        fake.add_trades("BTC/USDT", [*sent["BTC/USDT"][15:30], bad])
        await wait_for(lambda: live.stats.reconnects >= 2 and live.stats.ticks >= 40)
        fake.add_trades("BTC/USDT", sent["BTC/USDT"][30:])
        await wait_for(lambda: live.stats.ticks >= 50 and fake.pending_faults == 0)

    live = asyncio.run(run_live(settings, fake, "poll", scenario))
    assert not live.watching
    assert live.stats.ticks == 50 and live.stats.rejected == 1
    assert_ticks_are_the_trades(settings, sent)
    letters = [record for _, _, record in asyncio.run(read_records(settings, DLQ, DeadLetter))]
    assert len(letters) == 1 and "non-positive or missing price" in letters[0].reason
    assert letters[0].key == "binance:BTC/USDT"


def test_websocket_feed_reconnects(settings: Settings, fake: FakeBinance) -> None:
    """A websocket stream is a live market: trades keep coming. ccxt.pro hands over trades that arrived while the
    feed was publishing together with the next one, so the test keeps trading until what it checks has arrived."""
    t0 = int(time.time() * 1000) - 60_000
    ids = {"BTC/USDT": 100, "ETH/USDT": 500}
    sent: dict[str, list[Trade]] = {symbol: [] for symbol in ids}

    def received(symbol: str) -> int:
        return sum(1 for b in published if b.symbol == symbol for _ in b.times)

    async def trade_until(count: int) -> None:
        """Trade on both markets until each has `count` trades on the topic."""
        while any(received(symbol) < count for symbol in ids):
            for symbol in ids:
                trade = trades(ids[symbol] + len(sent[symbol]), 1, t0 + 250 * len(sent[symbol]))[0]
                sent[symbol].append(trade)
                await asyncio.to_thread(fake.add_trades, symbol, [trade])
            await asyncio.sleep(0.02)

    published: list[TickBatch] = []

    target: list[int] = []

    async def scenario(live: LiveFeed) -> None:
        await wait_for(lambda: fake.subscriptions >= 2)
        await asyncio.wait_for(trade_until(5), 30)
        await asyncio.to_thread(fake.drop_websockets)
        await wait_for(lambda: live.stats.reconnects >= 1 and fake.subscriptions >= 2)
        target.append(max(len(trades) for trades in sent.values()) + 5)
        await asyncio.wait_for(trade_until(target[0]), 30)

    async def record(batch: TickBatch) -> None:
        published.append(batch)

    live = asyncio.run(run_live(settings, fake, "watch", scenario, observe=record))
    assert live.watching and live.stats.reconnects >= 1
    on_topic = ticks_on_topic(settings)
    assert sorted(b.event_id for b in on_topic) == sorted(b.event_id for b in published)
    for symbol, pushed in sent.items():
        got = sorted((b for b in on_topic if b.symbol == symbol), key=lambda b: b.times[0])
        times = [t for b in got for t in b.times]
        assert times == [t.ts for t in pushed[: len(times)]]  # in order, none twice, none skipped
        assert len(times) >= target[0]  # trades sent after the reconnect arrived too


def test_cli_live_feed_runs_for_a_while_and_reports(settings: Settings, cli: CliRunner, fake: FakeBinance) -> None:
    fake.add_trades("BTC/USDT", trades(1, 7, int(time.time() * 1000) - 5_000))
    result = invoke(cli, "feed", "--source", "ccxt", "--exchange", "binance", "--symbols", "BTC/USDT",
                    "--mode", "poll", "--poll-interval", "0.1", "--duration", "3", "--api-url", fake.url)
    assert result.exit_code == 0, result.output
    assert "published 7 ticks" in result.output
    assert sum(len(b.times) for b in ticks_on_topic(settings)) == 7

    unknown = invoke(cli, "feed", "--source", "ccxt", "--exchange", "binance", "--symbols", "XYZ/USDT",
                     "--mode", "poll", "--duration", "3", "--api-url", fake.url)
    assert unknown.exit_code == 1 and "binance does not list XYZ/USDT" in unknown.output


def test_synth_command_publishes_ticks_and_stores_candles(settings: Settings, cli: CliRunner) -> None:
    args = ["synth", "--symbols", "BTC/USDT,SOL/USDT", "--days", "0.02", "--seed", "9", "--ticks-per-minute", "20"]
    ticks = invoke(cli, *args, "--publish", "ticks")
    assert ticks.exit_code == 0, ticks.output
    expected = list(generate_ticks(["BTC/USDT", "SOL/USDT"], 1_704_067_200_000, 29, 9, 20))
    assert sorted(ticks_on_topic(settings), key=lambda b: b.event_id) == sorted(expected, key=lambda b: b.event_id)

    candles = invoke(cli, *args, "--publish", "candles")
    assert candles.exit_code == 0, candles.output
    assert "wrote 58 1m candles" in candles.output
    again = invoke(cli, *args, "--publish", "candles")
    assert "wrote 0 1m candles to the candle topic and market_data (58 already stored unchanged)" in again.output
    published = [record for _, _, record in asyncio.run(read_records(settings, candle_topic("1m"), Candle))]
    assert len(published) == 58 and {c.source for c in published} == {"synth"}

    missing = invoke(cli, "synth", "--days", "0.01")
    assert missing.exit_code == 2 and "--out FILE and/or --publish" in missing.output
