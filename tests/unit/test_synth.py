"""Synthetic data: deterministic, realistic magnitudes, regimes, seasonality, and ticks that rebuild the candles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streams.codecs import decode, encode
from streams.records import Candle, TickBatch
from tradepulse.marketdata.synth import REGIMES, generate_candles, generate_columns, generate_ticks

START = 1_704_067_200_000  # 2024-01-01 00:00 UTC
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def tick_frame(batches: list[TickBatch]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": np.repeat([b.symbol for b in batches], [len(b.times) for b in batches]),
            "time": np.concatenate([b.times for b in batches]),
            "price": np.concatenate([b.prices for b in batches]),
            "amount": np.concatenate([b.amounts for b in batches]),
        }
    )


def test_same_seed_gives_identical_output_and_another_seed_does_not() -> None:
    def run(seed: int) -> list[bytes]:
        return [encode(b) for b in generate_ticks(SYMBOLS, START, 90, seed, 30)] + [
            encode(c) for c in generate_candles(SYMBOLS, START, 90, seed, 30)
        ]

    first = run(11)
    assert first == run(11)
    assert first != run(12)


def test_adding_a_symbol_or_minutes_does_not_change_what_was_there() -> None:
    alone = [c.asdict() for c in generate_candles(["ETH/USDT"], START, 60, 5)]
    together = [c.asdict() for c in generate_candles(SYMBOLS, START, 120, 5) if c.symbol == "ETH/USDT"]
    assert together[:60] == alone


def test_prices_positive_and_magnitudes_realistic() -> None:
    candles = pd.DataFrame(c.asdict() for c in generate_candles([*SYMBOLS, "PEPE/USD"], START, 7 * 1440, 3, 8))
    assert (candles[["open", "high", "low", "close"]] > 0).all().all()
    assert (candles.volume > 0).all()
    centres = {"BTC/USDT": 60_000, "ETH/USDT": 3_000, "SOL/USDT": 150}
    for symbol, centre in centres.items():
        closes = candles[candles.symbol == symbol].close
        assert centre / 2 < closes.min() <= closes.max() < centre * 2, symbol
    assert len(candles) == 4 * 7 * 1440  # a candle every minute for every symbol
    assert (candles.high >= candles[["open", "close", "low"]].max(axis=1)).all()
    assert (candles.low <= candles[["open", "close"]].min(axis=1)).all()
    for candle in generate_candles(SYMBOLS, START, 3, 3):
        assert decode(Candle, encode(candle)) == candle


def test_regimes_volume_and_intraday_seasonality() -> None:
    candles = pd.DataFrame(c.asdict() for c in generate_candles(["BTC/USDT"], START, 20 * 1440, 21, 10))
    returns = np.log(candles.close).diff().dropna()
    vol_4h = returns.groupby(np.arange(len(returns)) // 240).std()
    assert vol_4h.max() / vol_4h.min() > 2.5  # calm and volatile regimes alternate
    daily_moves = candles.close.groupby(np.arange(len(candles)) // 1440).agg(lambda c: c.iloc[-1] / c.iloc[0] - 1)
    assert daily_moves.max() > 0.02 and daily_moves.min() < -0.02  # trends both ways
    assert np.corrcoef(candles.volume[1:], returns.abs())[0, 1] > 0.3
    hour = (candles.ts // 3_600_000) % 24
    assert candles.trades[hour.between(14, 16)].mean() > 1.3 * candles.trades[hour.between(1, 4)].mean()
    assert candles.volume[hour.between(14, 16)].mean() > 1.3 * candles.volume[hour.between(1, 4)].mean()
    assert 8 < candles.trades.mean() < 12


def test_ticks_rebuild_the_candles() -> None:
    batches = list(generate_ticks(SYMBOLS, START, 120, 9, 40))
    ticks = tick_frame(batches)
    ticks["ts"] = ticks.time - ticks.time % 60_000
    built = ticks.groupby(["symbol", "ts"]).agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
        volume=("amount", "sum"), trades=("price", "size"),
    )
    candles = pd.DataFrame(c.asdict() for c in generate_candles(SYMBOLS, START, 120, 9, 40))
    expected = candles.set_index(["symbol", "ts"])[built.columns].sort_index()
    pd.testing.assert_frame_equal(built.sort_index(), expected, check_exact=False, rtol=1e-12)


def test_batches_are_cut_by_window_and_size_in_event_time_order() -> None:
    batches = list(generate_ticks(SYMBOLS, START, 60, 4, 600, batch_ms=10_000, max_batch=50))
    assert max(len(b.times) for b in batches) == 50
    assert all(b.times[0] // 10_000 == b.times[-1] // 10_000 for b in batches)
    assert all(b.ts == b.times[-1] and b.times == sorted(b.times) for b in batches)
    assert len({b.event_id for b in batches}) == len(batches)
    windows = [b.times[0] // 10_000 for b in batches]
    assert windows == sorted(windows)
    for symbol in SYMBOLS:
        times = [t for b in batches if b.symbol == symbol for t in b.times]
        assert times == sorted(times)
    assert {b.source for b in batches} == {"synth"} and {b.exchange for b in batches} == {"synthetic"}


def test_every_regime_is_visited_for_hours_at_a_time() -> None:
    chunks = list(generate_columns(["BTC/USDT"], START, 10 * 1440, 2, 1))
    regimes = np.concatenate([chunk[0].regimes for chunk in chunks])
    assert len(regimes) == 10 * 1440
    assert set(regimes.tolist()) == set(range(len(REGIMES)))
    switches = np.count_nonzero(np.diff(regimes))
    assert 10 <= switches <= 120  # regimes last hours, not minutes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbols": []}, "at least one symbol"),
        ({"symbols": ["BTC/USDT", "BTC/USDT"]}, "distinct"),
        ({"start_ms": START + 1}, "aligned"),
        ({"ticks_per_minute": 0}, "positive"),
        ({"batch_ms": 7_000}, "must divide"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    args = {"symbols": SYMBOLS, "start_ms": START, "minutes": 10, "seed": 1, "ticks_per_minute": 5} | kwargs
    with pytest.raises(ValueError, match=message):
        list(generate_ticks(**args))
