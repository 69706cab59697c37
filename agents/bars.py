"""Closed candles as the pure strategy and execution code sees them: one `Bar`, or a series as numpy columns.

These types carry no Faust and no I/O, so the same strategy code runs in the agents (one `Bar` at a time, built
from a `Candle` record) and in training replays (a `BarSeries` built from a topic, the store or a CSV file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.state import Stateful
from streams.keys import TIMEFRAMES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed candle; `ts` is the open time of its bucket in epoch milliseconds (UTC)."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class BarSeries:
    """Candles of one instrument and timeframe, oldest first, as columns: what backtests and fast paths read."""

    exchange: str
    symbol: str
    timeframe: str
    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        if self.timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {self.timeframe!r}")
        n = len(self.ts)
        if any(len(column) != n for column in (self.open, self.high, self.low, self.close, self.volume)):
            raise ValueError("every column of a bar series must have the same length")
        if n > 1 and not bool((np.diff(self.ts) > 0).all()):
            raise ValueError("bar times must be strictly increasing")

    @classmethod
    def from_bars(cls, exchange: str, symbol: str, timeframe: str, bars: Iterable[Bar]) -> BarSeries:
        rows = list(bars)
        return cls(
            exchange, symbol, timeframe,
            np.array([b.ts for b in rows], dtype=np.int64),
            np.array([b.open for b in rows], dtype=np.float64),
            np.array([b.high for b in rows], dtype=np.float64),
            np.array([b.low for b in rows], dtype=np.float64),
            np.array([b.close for b in rows], dtype=np.float64),
            np.array([b.volume for b in rows], dtype=np.float64),
        )

    @property
    def span_ms(self) -> int:
        return TIMEFRAMES[self.timeframe]

    def __len__(self) -> int:
        return len(self.ts)

    def bar(self, index: int) -> Bar:
        return Bar(
            int(self.ts[index]), float(self.open[index]), float(self.high[index]), float(self.low[index]),
            float(self.close[index]), float(self.volume[index]),
        )

    def bars(self) -> Iterator[Bar]:
        """The bars in order, as the event path receives them."""
        columns = (self.ts.tolist(), self.open.tolist(), self.high.tolist(), self.low.tolist(),
                   self.close.tolist(), self.volume.tolist())
        for ts, o, h, low, c, v in zip(*columns, strict=True):
            yield Bar(ts, o, h, low, c, v)

    def slice(self, start: int, stop: int) -> BarSeries:
        """Bars `start <= i < stop` (views, no copy)."""
        return BarSeries(
            self.exchange, self.symbol, self.timeframe, self.ts[start:stop], self.open[start:stop],
            self.high[start:stop], self.low[start:stop], self.close[start:stop], self.volume[start:stop],
        )

    def between(self, start_ms: int | None, end_ms: int | None) -> BarSeries:
        """Bars with `start_ms <= ts < end_ms` (either bound optional)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.ts, start_ms, side="left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.ts, end_ms, side="left"))
        return self.slice(lo, hi)

    def with_prices(self, open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray) -> BarSeries:
        """The same times and volumes with other prices (used by permutation tests)."""
        return BarSeries(self.exchange, self.symbol, self.timeframe, self.ts, open_, high, low, close, self.volume)

    def content_hash(self) -> str:
        """A hash of the instrument, timeframe and every value: two series hash alike only if they are identical."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.exchange}|{self.symbol}|{self.timeframe}|".encode())
        for column in (self.ts, self.open, self.high, self.low, self.close, self.volume):
            digest.update(np.ascontiguousarray(column).tobytes())
        return digest.hexdigest()



class HigherTimeframes(Stateful):
    """Rolls closed base bars up into closed bars of higher timeframes, for strategies with higher-timeframe logic.

    A higher bar `[s, s + span)` closes with the base bar that ends at `s + span`, or, when that bar is missing,
    when the first base bar of a later bucket arrives. `update` returns the higher bars a base bar closes, oldest
    first, so they can be delivered before the base bar itself: a strategy never sees an unfinished higher bar.
    The bucket the very first base bar falls in is not emitted unless that bar opens it: its earlier part was
    never seen, so its high, low and open would be wrong.
    """

    def __init__(self, base_timeframe: str, timeframes: Iterable[str]) -> None:
        base = TIMEFRAMES[base_timeframe]
        self.base_ms = base
        self.spans: list[list[Any]] = []
        for tf in sorted(set(timeframes), key=TIMEFRAMES.__getitem__):
            span = TIMEFRAMES[tf]
            if span <= base or span % base:
                raise ValueError(f"higher timeframe {tf} is not a multiple of the base timeframe {base_timeframe}")
            self.spans.append([tf, span])
        self.open: dict[str, list[float] | None] = {tf: None for tf, _ in self.spans}
        self.started = False
        self.partial: list[str] = []
        """Timeframes whose open bucket began before the first base bar: dropped when they close."""

    def update(self, bar: Bar) -> list[tuple[str, Bar]]:
        closed: list[tuple[str, Bar]] = []
        completed: list[tuple[str, Bar]] = []
        first = not self.started
        self.started = True
        for tf, span in self.spans:
            bucket = bar.ts - bar.ts % span
            current = self.open[tf]
            if current is not None and int(current[0]) != bucket:
                self._emit(tf, current, closed)
                current = None
            if current is None:
                if first and bar.ts != bucket:
                    self.partial.append(tf)
                current = [bucket, bar.open, bar.high, bar.low, bar.close, bar.volume]
            else:
                current[2] = max(current[2], bar.high)
                current[3] = min(current[3], bar.low)
                current[4] = bar.close
                current[5] += bar.volume
            if bar.ts + self.base_ms >= bucket + span:
                self._emit(tf, current, completed)
                current = None
            self.open[tf] = current
        return closed + completed

    def _emit(self, tf: str, values: list[float], out: list[tuple[str, Bar]]) -> None:
        if tf in self.partial:
            self.partial.remove(tf)
            return
        out.append((tf, _higher_bar(values)))


def _higher_bar(values: list[float]) -> Bar:
    ts, o, h, low, c, v = values
    return Bar(int(ts), o, h, low, c, v)


def higher_bars(series: BarSeries, timeframe: str) -> tuple[BarSeries, IntArray]:
    """The closed `timeframe` bars `HigherTimeframes` delivers over `series`, and for each the index of the base
    bar before whose `on_bar` it is delivered: what a vectorised strategy may know of the higher timeframe."""
    builder = HigherTimeframes(series.timeframe, [timeframe])
    bars: list[Bar] = []
    delivered: list[int] = []
    for i, bar in enumerate(series.bars()):
        for _, higher in builder.update(bar):
            bars.append(higher)
            delivered.append(i)
    return BarSeries.from_bars(series.exchange, series.symbol, timeframe, bars), np.array(delivered, dtype=np.int64)
