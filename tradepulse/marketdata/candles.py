"""Checking candle values, shared by the importer, the backfill and the synthetic generator."""

from __future__ import annotations


class CandleValueError(ValueError):
    """A candle that breaks an OHLCV invariant; the message says which."""


def check_ohlcv(open_: float, high: float, low: float, close: float, volume: float) -> None:
    """The invariants every stored candle satisfies (the same the codec enforces on the topic)."""
    if min(open_, high, low, close) <= 0:
        raise CandleValueError(f"non-positive price (open {open_}, high {high}, low {low}, close {close})")
    if volume < 0:
        raise CandleValueError(f"negative volume {volume}")
    if high < max(open_, close, low):
        raise CandleValueError(
            f"inconsistent OHLC: high {high} is below max(open, close, low) {max(open_, close, low)}"
        )
    if low > min(open_, close):
        raise CandleValueError(f"inconsistent OHLC: low {low} is above min(open, close) {min(open_, close)}")
