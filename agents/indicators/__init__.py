"""Technical indicators, each twice: incremental (one value per closed bar, for agents and the event path) and
vectorised (a whole numpy column, for fast paths), computing *the same floating-point operations in the same
order*, so both give bit-identical values and a threshold decision never differs between them.

Conventions: an incremental indicator's `update` returns NaN until it has seen enough bars, then its value; the
vectorised function returns an array of the input's length with NaN over the same warm-up. Definitions:

- SMA(n): `(C[t] - C[t-n]) / n` where `C` is the running total of every value seen (`numpy.cumsum` adds in order,
  so the incremental total is the same float). O(1) per bar.
- EMA(n): seeded with the SMA of the first n values, then `e += a * (x - e)` with `a = 2 / (n + 1)`.
- Wilder's RMA(n), used by ATR and RSI: the same with `a = 1 / n`.
- Rolling standard deviation (population): the SMA as mean, then the squared deviations summed oldest first.
- Rolling highest / lowest: exact by nature.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from agents.bars import FloatArray
from agents.state import Stateful

NAN = math.nan


def _check_period(period: int) -> int:
    if not isinstance(period, int) or isinstance(period, bool) or period < 1:
        raise ValueError(f"an indicator period must be a positive integer, got {period!r}")
    return period


def _nan_array(n: int) -> FloatArray:
    return np.full(n, np.nan, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- moving averages


class SMA(Stateful):
    """Simple moving average over the last `period` values."""

    def __init__(self, period: int) -> None:
        self.period = _check_period(period)
        self.total = 0.0
        self.totals: deque[float] = deque([0.0], maxlen=period + 1)
        self.count = 0
        self.value = NAN

    def update(self, x: float) -> float:
        self.total += x
        self.totals.append(self.total)
        self.count += 1
        if self.count >= self.period:
            self.value = (self.total - self.totals[0]) / self.period
        return self.value


def sma(x: FloatArray, period: int) -> FloatArray:
    _check_period(period)
    out = _nan_array(len(x))
    if len(x) < period:
        return out
    totals = np.cumsum(x)
    out[period - 1] = (totals[period - 1] - 0.0) / period
    out[period:] = (totals[period:] - totals[:-period]) / period
    return out


class _Smoothing(Stateful):
    """An exponential average with weight `alpha`, seeded with the SMA of the first `period` values."""

    def __init__(self, period: int, alpha: float) -> None:
        self.period = _check_period(period)
        self.alpha = alpha
        self.seed = SMA(period)
        self.value = NAN

    def update(self, x: float) -> float:
        if self.seed.count < self.period:
            self.value = self.seed.update(x)
        else:
            self.value = self.value + self.alpha * (x - self.value)
        return self.value


def _smooth(x: FloatArray, period: int, alpha: float) -> FloatArray:
    _check_period(period)
    out = _nan_array(len(x))
    if len(x) < period:
        return out
    value = float(sma(x[:period], period)[-1])
    values = [value]
    for v in x[period:].tolist():
        value = value + alpha * (v - value)
        values.append(value)
    out[period - 1:] = values
    return out


class EMA(_Smoothing):
    """Exponential moving average: weight 2 / (period + 1)."""

    def __init__(self, period: int) -> None:
        super().__init__(_check_period(period), 2.0 / (period + 1))


def ema(x: FloatArray, period: int) -> FloatArray:
    return _smooth(x, _check_period(period), 2.0 / (period + 1))


class RMA(_Smoothing):
    """Wilder's smoothing (the running average ATR and RSI use): weight 1 / period."""

    def __init__(self, period: int) -> None:
        super().__init__(_check_period(period), 1.0 / period)


def rma(x: FloatArray, period: int) -> FloatArray:
    return _smooth(x, _check_period(period), 1.0 / period)


# ----------------------------------------------------------------------------------------------- volatility


class RollingStd(Stateful):
    """Population standard deviation of the last `period` values around their SMA."""

    def __init__(self, period: int) -> None:
        self.period = _check_period(period)
        self.mean = SMA(period)
        self.window: deque[float] = deque(maxlen=period)
        self.value = NAN

    def update(self, x: float) -> float:
        mean = self.mean.update(x)
        self.window.append(x)
        if len(self.window) == self.period:
            acc = 0.0
            for v in self.window:
                d = v - mean
                acc += d * d
            self.value = math.sqrt(acc / self.period)
        return self.value


def rolling_std(x: FloatArray, period: int) -> FloatArray:
    _check_period(period)
    out = _nan_array(len(x))
    n = len(x)
    if n < period:
        return out
    mean = sma(x, period)[period - 1:]
    acc = np.zeros(n - period + 1, dtype=np.float64)
    for k in range(period):
        d = x[k:n - period + 1 + k] - mean
        acc += d * d
    out[period - 1:] = np.sqrt(acc / period)
    return out


class ATR(Stateful):
    """Average true range (Wilder). The first bar's true range is its high - low."""

    def __init__(self, period: int) -> None:
        self.smoothing = RMA(period)
        self.prev_close = NAN
        self.value = NAN

    def update(self, high: float, low: float, close: float) -> float:
        if math.isnan(self.prev_close):
            true_range = high - low
        else:
            true_range = max(high - low, abs(high - self.prev_close), abs(low - self.prev_close))
        self.prev_close = close
        self.value = self.smoothing.update(true_range)
        return self.value


def true_range(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    out = high - low
    if len(out) > 1:
        prev = close[:-1]
        out[1:] = np.maximum(np.maximum(out[1:], np.abs(high[1:] - prev)), np.abs(low[1:] - prev))
    return out


def atr(high: FloatArray, low: FloatArray, close: FloatArray, period: int) -> FloatArray:
    return rma(true_range(high, low, close), period)


class RSI(Stateful):
    """Relative strength index (Wilder), 0..100; 100 while there were no losses in the window."""

    def __init__(self, period: int) -> None:
        self.gains = RMA(period)
        self.losses = RMA(period)
        self.prev = NAN
        self.value = NAN

    def update(self, x: float) -> float:
        if not math.isnan(self.prev):
            delta = x - self.prev
            gain = self.gains.update(max(delta, 0.0))
            loss = self.losses.update(max(-delta, 0.0))
            if not math.isnan(gain):
                self.value = 100.0 if loss == 0.0 else 100.0 - 100.0 / (1.0 + gain / loss)
        self.prev = x
        return self.value


def rsi(x: FloatArray, period: int) -> FloatArray:
    _check_period(period)
    out = _nan_array(len(x))
    if len(x) < 2:
        return out
    delta = x[1:] - x[:-1]
    gains = rma(np.maximum(delta, 0.0), period)
    losses = rma(np.maximum(-delta, 0.0), period)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(losses == 0.0, 100.0, 100.0 - 100.0 / (1.0 + gains / losses))
    out[1:] = np.where(np.isnan(gains), np.nan, value)
    return out


# --------------------------------------------------------------------------------------------------- channels


class _Extreme(Stateful):
    """The extreme (`pick`) of the last `period` values."""

    pick: ClassVar[Callable[[Iterable[float]], float]]

    def __init__(self, period: int) -> None:
        self.period = _check_period(period)
        self.window: deque[float] = deque(maxlen=period)
        self.value = NAN

    def update(self, x: float) -> float:
        self.window.append(x)
        if len(self.window) == self.period:
            self.value = type(self).pick(self.window)
        return self.value


class Highest(_Extreme):
    """Highest value of the last `period` values."""

    pick = max


class Lowest(_Extreme):
    """Lowest value of the last `period` values."""

    pick = min


def _rolling(x: FloatArray, period: int, reduce: Callable[..., FloatArray]) -> FloatArray:
    _check_period(period)
    out = _nan_array(len(x))
    if len(x) >= period:
        out[period - 1:] = reduce(sliding_window_view(x, period), axis=1)
    return out


def highest(x: FloatArray, period: int) -> FloatArray:
    return _rolling(x, period, np.max)


def lowest(x: FloatArray, period: int) -> FloatArray:
    return _rolling(x, period, np.min)


def shifted(x: FloatArray, bars: int = 1) -> FloatArray:
    """`x` delayed by `bars` (NaN at the start): the previous bar's value at each bar."""
    out = _nan_array(len(x))
    if bars < len(x):
        out[bars:] = x[:len(x) - bars]
    return out
