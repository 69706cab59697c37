"""Event-time OHLCV candles from ticks: the pure core of the market half of `trade_paper`.

A `CandleBuilder` follows one instrument. It takes tick batches as they arrive on `market.ticks` and returns the
candles that closed because of them: 1-minute candles and their rollups (5m, 15m, 1h, 4h, 1d), buckets aligned to
the Unix epoch (UTC). Time is the ticks' own event time, never the wall clock.

Closing rule. The instrument's watermark is the greatest tick time seen. A bucket `[start, start + span)` of any
timeframe closes, and is emitted exactly once, when `watermark >= start + span + grace_ms`. Rollups are folded from
the closed 1-minute candles, so a rollup closes together with its last minute. Minutes without ticks produce no
candle (as `resample(...).ohlc()` followed by `dropna()`).

Batches are the unit of arrival. Every tick of a batch whose minute is still open is folded in, whatever its order
inside the batch; a tick whose minute was already closed before the batch arrived is *late*: it is returned as
rejected (the agent dead-letters it) and does not change any candle. Open is the price of the earliest tick of a
bucket and close that of the latest; ticks with equal times count in arrival order.

Exactly-once over an at-least-once log. The state (`to_state`) records the Kafka offset of the last batch applied.
The agent writes that state to its changelog only after the candles a batch closed were delivered, and Kafka
offsets are committed after the changelog. A crash can therefore only make Kafka redeliver batches the restored
state already contains; `apply` recognises them by offset and skips them instead of counting their ticks twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.records import TIMEFRAMES, Candle, make_candle

MINUTE_MS = TIMEFRAMES["1m"]
ROLLUPS: tuple[str, ...] = tuple(tf for tf in TIMEFRAMES if tf != "1m")
"""Timeframes folded from closed 1-minute candles."""

STATE_VERSION = 1
BUILT_FROM_TICKS = "ticks"
"""The `source` of the candles a builder emits."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(slots=True)
class _Bar:
    """An open bucket; `first_ms`/`last_ms` decide which tick sets open and close."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    first_ms: int
    last_ms: int

    def merge(self, other: _Bar) -> None:
        """Fold in a bar that arrived later (so it wins ties on close, loses them on open)."""
        if other.first_ms < self.first_ms:
            self.open, self.first_ms = other.open, other.first_ms
        if other.last_ms >= self.last_ms:
            self.close, self.last_ms = other.close, other.last_ms
        self.high = max(self.high, other.high)
        self.low = min(self.low, other.low)
        self.volume += other.volume
        self.trades += other.trades

    def to_list(self) -> list[float | int]:
        return [self.open, self.high, self.low, self.close, self.volume, self.trades, self.first_ms, self.last_ms]

    @classmethod
    def from_list(cls, values: list[Any]) -> _Bar:
        o, h, low, c, v, n, first, last = values
        return cls(float(o), float(h), float(low), float(c), float(v), int(n), int(first), int(last))


@dataclass(frozen=True, slots=True)
class LateTicks:
    """Ticks rejected because their minute had already closed when their batch arrived."""

    times: IntArray
    prices: FloatArray
    amounts: FloatArray
    watermark: int
    grace_ms: int

    @property
    def reason(self) -> str:
        lag = self.watermark - int(self.times.min())
        return (
            f"late tick: {len(self.times)} tick(s) for already closed minutes, up to {lag} ms behind the "
            f"watermark {self.watermark} (grace {self.grace_ms} ms)"
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch produced: closed candles (1m first, then each rollup, oldest first) and rejected ticks."""

    candles: list[Candle] = field(default_factory=list)
    late: LateTicks | None = None
    skipped: bool = False
    """True when the batch's offset was already applied (a redelivery after a crash): nothing was changed."""


class CandleBuilder:
    """Builds the closed candles of one instrument; see the module docstring for the rules."""

    def __init__(self, exchange: str, symbol: str, grace_ms: int) -> None:
        if grace_ms < 0:
            raise ValueError("grace_ms must be >= 0")
        self.exchange = exchange
        self.symbol = symbol
        self.grace_ms = grace_ms
        self.watermark: int | None = None
        self.offset: int | None = None
        self._open: dict[str, dict[int, _Bar]] = {tf: {} for tf in TIMEFRAMES}

    def apply(
        self,
        times: npt.ArrayLike,
        prices: npt.ArrayLike,
        amounts: npt.ArrayLike,
        *,
        offset: int | None = None,
    ) -> BatchResult:
        """Fold one batch of ticks in; returns the candles it closed and the ticks it rejected as late.

        `offset` is the batch's Kafka offset: a batch at or below the last applied offset is skipped.
        """
        if offset is not None and self.offset is not None and offset <= self.offset:
            return BatchResult(skipped=True)
        t = np.asarray(times, dtype=np.int64)
        p = np.asarray(prices, dtype=np.float64)
        a = np.asarray(amounts, dtype=np.float64)
        if not t.shape == p.shape == a.shape or t.ndim != 1:
            raise ValueError("times, prices and amounts must be 1-d arrays of equal length")
        if offset is not None:
            self.offset = offset
        late = None
        if self.watermark is not None and len(t):
            is_late = t < self._frontier(MINUTE_MS)
            if is_late.any():
                late = LateTicks(t[is_late], p[is_late], a[is_late], self.watermark, self.grace_ms)
                keep = ~is_late
                t, p, a = t[keep], p[keep], a[keep]
        if not len(t):
            return BatchResult(late=late)
        self._fold_ticks(t, p, a)
        newest = int(t.max())
        if self.watermark is None or newest > self.watermark:
            self.watermark = newest
        return BatchResult(candles=self._close(), late=late)

    def _frontier(self, span: int) -> int:
        """Start of the oldest bucket of `span` that is still open: every bucket starting before it has closed."""
        assert self.watermark is not None
        return (self.watermark - self.grace_ms) // span * span

    def _fold_ticks(self, t: IntArray, p: FloatArray, a: FloatArray) -> None:
        """Aggregate the batch per minute with numpy, then merge the few per-minute bars into the open ones."""
        if len(t) > 1 and bool((t[1:] < t[:-1]).any()):
            order = np.argsort(t, kind="stable")
            t, p, a = t[order], p[order], a[order]
        buckets = t - t % MINUTE_MS
        starts = np.flatnonzero(np.concatenate(([True], buckets[1:] != buckets[:-1])))
        ends = np.append(starts[1:], len(t)) - 1
        highs = np.maximum.reduceat(p, starts)
        lows = np.minimum.reduceat(p, starts)
        volumes = np.add.reduceat(a, starts)
        minutes = self._open["1m"]
        for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            bar = _Bar(
                float(p[start]), float(highs[i]), float(lows[i]), float(p[end]), float(volumes[i]),
                end - start + 1, int(t[start]), int(t[end]),
            )
            current = minutes.setdefault(int(buckets[start]), bar)
            if current is not bar:
                current.merge(bar)

    def _close(self) -> list[Candle]:
        """Emit every bucket the watermark has closed: minutes first, folding each into the rollups."""
        closed: list[Candle] = []
        minutes = self._open["1m"]
        frontier = self._frontier(MINUTE_MS)
        for start in sorted(b for b in minutes if b < frontier):
            bar = minutes.pop(start)
            closed.append(self._candle("1m", start, bar))
            for tf in ROLLUPS:
                part = _Bar(bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades, start, start)
                current = self._open[tf].setdefault(start - start % TIMEFRAMES[tf], part)
                if current is not part:
                    current.merge(part)
        for tf in ROLLUPS:
            frontier = self._frontier(TIMEFRAMES[tf])
            bars = self._open[tf]
            for start in sorted(b for b in bars if b < frontier):
                closed.append(self._candle(tf, start, bars.pop(start)))
        return closed

    def _candle(self, timeframe: str, start: int, bar: _Bar) -> Candle:
        return make_candle(
            self.exchange, self.symbol, timeframe, start, (bar.open, bar.high, bar.low, bar.close, bar.volume),
            source=BUILT_FROM_TICKS, trades=bar.trades,
        )

    def to_state(self) -> dict[str, Any]:
        """A plain JSON-able dump of everything needed to continue exactly where this builder is."""
        return {
            "version": STATE_VERSION,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "grace_ms": self.grace_ms,
            "watermark": self.watermark,
            "offset": self.offset,
            "open": {
                tf: [[start, *bar.to_list()] for start, bar in sorted(bars.items())]
                for tf, bars in self._open.items()
                if bars
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CandleBuilder:
        """Rebuild a builder from `to_state()` output."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported candle builder state version {state.get('version')!r}")
        builder = cls(state["exchange"], state["symbol"], int(state["grace_ms"]))
        builder.watermark = state["watermark"]
        builder.offset = state["offset"]
        for tf, rows in state["open"].items():
            builder._open[tf] = {int(row[0]): _Bar.from_list(row[1:]) for row in rows}
        return builder
