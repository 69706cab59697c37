"""Shared by the candle tests and the pipeline benchmark: deterministic ticks and the pandas reference candles."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from streams.records import TIMEFRAMES, Candle, TickBatch

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

    def without(self, start_ms: int, end_ms: int) -> Ticks:
        """The same ticks with a silent stretch: nothing traded in `[start_ms, end_ms)`."""
        keep = (self.times < start_ms) | (self.times >= end_ms)
        return Ticks(self.exchange, self.symbol, self.times[keep], self.prices[keep], self.amounts[keep])


def ticks_by_instrument(batches: Iterable[TickBatch]) -> list[Ticks]:
    """Tick batches (of any instruments, in publishing order) as one column set per instrument."""
    grouped: dict[tuple[str, str], list[TickBatch]] = {}
    for batch in batches:
        grouped.setdefault((batch.exchange, batch.symbol), []).append(batch)
    return [
        Ticks(
            exchange, symbol,
            np.concatenate([np.asarray(b.times, dtype=np.int64) for b in group]),
            np.concatenate([np.asarray(b.prices, dtype=np.float64) for b in group]),
            np.concatenate([np.asarray(b.amounts, dtype=np.float64) for b in group]),
        )
        for (exchange, symbol), group in grouped.items()
    ]


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
