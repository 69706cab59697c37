"""The faust-free part of the log's contract: timeframes, instrument keys and stable event ids.

Pure strategy, indicator and execution code imports these from here, so it never pulls in Faust.
"""

from __future__ import annotations

import hashlib

TIMEFRAMES: dict[str, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
"""Candle timeframes and their length in milliseconds; buckets align to the Unix epoch (UTC midnight for 1d)."""


def stable_id(kind: str, *parts: object) -> str:
    """A deterministic event id: the same inputs give the same id on every retry and replay."""
    text = "|".join([kind, *(str(part) for part in parts)])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def instrument_key(exchange: str, symbol: str) -> str:
    """The partitioning key of market, signal, order and fill topics: `kraken:BTC/USDT`."""
    return f"{exchange}:{symbol}"
