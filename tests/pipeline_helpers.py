"""Shared by the candle tests and the pipeline benchmark: deterministic ticks and the pandas reference candles."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from streams.records import SCHEMA_VERSION, TIMEFRAMES, Candle, TickBatch, stable_id

PANDAS_RULES = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "1D"}
CANDLE_COLUMNS = ["open", "high", "low", "close", "volume", "trades"]


@dataclass(frozen=True)
class Ticks:
    """The trades of one instrument in arrival order."""

    exchange: str
    symbol: str
    times: np.ndarray
    prices: np.ndarray
    amounts: np.ndarray

    def batches(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, len(self.times), size):
            end = start + size
            yield self.times[start:end], self.prices[start:end], self.amounts[start:end]

    def tick_batches(self, size: int) -> list[TickBatch]:
        """The ticks as `market.ticks` records; ids are stable so a re-run produces the same events."""
        return [
            TickBatch(
                event_id=stable_id("ticks", self.exchange, self.symbol, int(t[0]), i),
                ts=int(t.max()),
                schema_version=SCHEMA_VERSION,
                exchange=self.exchange,
                symbol=self.symbol,
                times=t.tolist(),
                prices=p.tolist(),
                amounts=a.tolist(),
                source="test",
            )
            for i, (t, p, a) in enumerate(self.batches(size))
        ]


def make_ticks(
    symbol: str,
    *,
    seed: int,
    start_ms: int,
    hours: float,
    mean_gap_ms: float = 1_000.0,
    exchange: str = "kraken",
    quiet_minutes: int = 3,
) -> Ticks:
    """A random walk of trades with exponential gaps and a few silent stretches (minutes without any candle)."""
    rng = np.random.default_rng(seed)
    span = int(hours * 3_600_000)
    gaps = rng.exponential(mean_gap_ms, size=int(span / mean_gap_ms * 1.2) + 10).astype(np.int64) + 1
    times = start_ms + np.cumsum(gaps)
    for _ in range(quiet_minutes):
        silence_at = start_ms + int(rng.uniform(0.1, 0.9) * span)
        times = np.where(times > silence_at, times + 3 * 60_000, times)
    times = times[times < start_ms + span]
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0005, size=len(times))))
    prices = np.round(prices, 4)
    amounts = np.round(rng.lognormal(-1.0, 1.0, size=len(times)), 6)
    return Ticks(exchange, symbol, times, prices, amounts)


def reference_candles(ticks: Ticks, *, grace_ms: int) -> pd.DataFrame:
    """What the candle builder must emit for `ticks`, computed independently with pandas.

    Resample every timeframe from the ticks themselves (not from 1m candles), drop empty buckets and keep only the
    buckets that closed: bucket end + grace <= the greatest tick time.
    """
    frame = pd.DataFrame(
        {"price": ticks.prices, "amount": ticks.amounts},
        index=pd.to_datetime(ticks.times, unit="ms"),  # naive UTC: day buckets start at midnight UTC
    ).sort_index(kind="stable")
    watermark = int(ticks.times.max())
    parts = []
    for tf, rule in PANDAS_RULES.items():
        resampled = frame.resample(rule, origin="epoch")
        ohlc = resampled["price"].ohlc()
        ohlc["volume"] = resampled["amount"].sum()
        ohlc["trades"] = resampled["price"].count()
        ohlc = ohlc.dropna(subset=["open"])
        ts = (ohlc.index - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)
        ohlc = ohlc.assign(ts=np.asarray(ts, dtype=np.int64)).reset_index(drop=True)
        ohlc = ohlc[ohlc["ts"] + TIMEFRAMES[tf] + grace_ms <= watermark]
        parts.append(ohlc.assign(exchange=ticks.exchange, symbol=ticks.symbol, timeframe=tf))
    return _index(pd.concat(parts, ignore_index=True))


def candles_frame(candles: Iterable[Candle]) -> pd.DataFrame:
    """Candles as a frame indexed like `reference_candles`."""
    rows = [
        {
            "exchange": c.exchange, "symbol": c.symbol, "timeframe": c.timeframe, "ts": c.ts,
            "open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume, "trades": c.trades,
        }
        for c in candles
    ]
    return _index(pd.DataFrame(rows, columns=["exchange", "symbol", "timeframe", "ts", *CANDLE_COLUMNS]))


def _index(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"ts": "int64", "trades": "int64"})
    return frame.set_index(["exchange", "symbol", "timeframe", "ts"])[CANDLE_COLUMNS].sort_index()


def assert_same_candles(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Exact prices and counts; volumes equal up to float summation order."""
    assert len(expected) > 0
    assert list(actual.index) == list(expected.index), _index_diff(actual, expected)
    exact = ["open", "high", "low", "close", "trades"]
    pd.testing.assert_frame_equal(actual[exact], expected[exact], check_exact=True)
    np.testing.assert_allclose(actual["volume"].to_numpy(), expected["volume"].to_numpy(), rtol=1e-9)


def _index_diff(actual: pd.DataFrame, expected: pd.DataFrame) -> str:
    missing = expected.index.difference(actual.index)
    extra = actual.index.difference(expected.index)
    return f"missing {len(missing)} {list(missing[:5])}, unexpected {len(extra)} {list(extra[:5])}"
