"""Record schemas of every topic.

Each record carries `schema_version`, an `event_id` that is stable across retries (a hash of the inputs that
define the event) and an event time `ts` in epoch milliseconds UTC. Records serialise to plain JSON objects
(no Faust metadata) so consumers in any language can read them from the documented schema alone.
"""

from __future__ import annotations

from typing import Any

import faust

from streams.keys import TIMEFRAMES as TIMEFRAMES
from streams.keys import instrument_key as instrument_key
from streams.keys import stable_id

SCHEMA_VERSION = 1


class Event(faust.Record, abstract=True, include_metadata=False, serializer="json"):
    """Fields every record shares."""

    event_id: str
    ts: int
    schema_version: int


class TickBatch(Event):
    """The trades of one instrument over a short interval, columnar (one message carries many ticks)."""

    exchange: str
    symbol: str
    times: list[int]
    prices: list[float]
    amounts: list[float]
    source: str = "feed"


class Candle(Event):
    """A closed OHLCV candle; `ts` is the open time of its bucket."""

    exchange: str
    symbol: str
    timeframe: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int = 0
    source: str = "ticks"


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


class Signal(Event):
    """A strategy intent for one configuration: enter or exit, with its protective levels."""

    configuration_id: str
    exchange: str
    symbol: str
    timeframe: str
    intent: str
    side: str
    price: float
    stop_loss: float | None = None
    take_profit: float | None = None
    reason: str = ""


class Order(Event):
    """A risk-sized order; `event_id` is the order id."""

    configuration_id: str
    account_id: str
    exchange: str
    symbol: str
    side: str
    order_type: str
    quantity: float
    price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    signal_id: str | None = None
    mode: str = "paper"


class Fill(Event):
    """An execution of (part of) an order; `event_id` is the fill id."""

    order_id: str
    configuration_id: str
    account_id: str
    exchange: str
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float
    fee_currency: str = ""
    mode: str = "paper"


class PortfolioSnapshot(Event):
    """Cash, positions and equity of one account (and configuration) at an event time."""

    account_id: str
    configuration_id: str | None
    cash: float
    equity: float
    realized_pnl: float
    unrealized_pnl: float
    positions: dict[str, float]


class ConfigChange(Event):
    """Activation, deactivation or parameter change of a trained configuration (compacted by id)."""

    configuration_id: str
    action: str
    strategy: str
    params: dict[str, Any]
    exchange: str
    symbols: list[str]
    timeframe: str
    account_id: str
    on_deactivate: str = "close"


class Command(Event):
    """An operator command: kill switch, flatten, resume."""

    action: str
    scope: str
    target: str = ""
    issued_by: str = ""


class LogEvent(Event):
    """A structured operational log event."""

    level: str
    message: str
    logger: str
    configuration_id: str | None = None
    trade_id: str | None = None
    metadata: dict[str, Any] | None = None


class DeadLetter(Event):
    """Rejected input, kept whole with the reason it was rejected."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    payload: str


class TrainingProgress(Event):
    """Progress of a long training job, for the dashboard."""

    job_id: str
    stage: str
    done: int
    total: int
    message: str = ""
