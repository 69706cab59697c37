"""Building and checking candle records, shared by the importer, the backfill and the synthetic generator."""

from __future__ import annotations

from streams.records import SCHEMA_VERSION, Candle, stable_id


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


def make_candle(
    exchange: str,
    symbol: str,
    timeframe: str,
    ts: int,
    ohlcv: tuple[float, float, float, float, float],
    *,
    source: str,
    trades: int = 0,
) -> Candle:
    """A candle whose id depends only on its bucket, so every source of the same bucket upserts the same row."""
    open_, high, low, close, volume = ohlcv
    return Candle(
        event_id=stable_id("candle", exchange, symbol, timeframe, ts),
        ts=ts,
        schema_version=SCHEMA_VERSION,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        trades=trades,
        source=source,
    )
