"""Where a restarted replay continues (`tradepulse.marketdata.feeds.resume_points`, `resumed`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from streams.records import Candle, make_candle
from tradepulse.marketdata.feeds import resume_points, resumed

HOUR = 3_600_000
T0 = 1_700_000_000_000 // HOUR * HOUR


def test_each_symbol_continues_with_the_candle_after_its_newest_published_tick() -> None:
    newest = {"BTC/USD": T0 + 5 * HOUR + 3 * HOUR // 4, "ETH/USD": T0 + 2 * HOUR}
    starts = resume_points(newest, "1h", {"BTC/USD": T0, "ETH/USD": T0, "LTC/USD": T0})
    assert starts == {"BTC/USD": T0 + 6 * HOUR, "ETH/USD": T0 + 3 * HOUR, "LTC/USD": T0}


def test_ticks_published_before_the_replay_range_do_not_move_its_start_back() -> None:
    assert resume_points({"BTC/USD": T0 - 10 * HOUR}, "1h", {"BTC/USD": T0}) == {"BTC/USD": T0}


def test_resumed_drops_only_the_candles_before_each_symbols_start() -> None:
    candles = [make_candle("bitfinex", symbol, "1h", T0 + i * HOUR, (1.0, 1.0, 1.0, 1.0, 1.0),
                           source="replay")
               for i in range(4) for symbol in ("BTC/USD", "ETH/USD")]

    async def source() -> AsyncIterator[Candle]:
        for candle in candles:
            yield candle

    async def collect() -> list[tuple[str, int]]:
        return [(c.symbol, c.ts) async for c in resumed(source(), {"BTC/USD": T0 + 2 * HOUR})]

    assert asyncio.run(collect()) == [("ETH/USD", T0), ("ETH/USD", T0 + HOUR), ("BTC/USD", T0 + 2 * HOUR),
                                      ("ETH/USD", T0 + 2 * HOUR), ("BTC/USD", T0 + 3 * HOUR),
                                      ("ETH/USD", T0 + 3 * HOUR)]
