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


class BarStep(Event, abstract=True):
    """One configuration at the close of one bar, carrying the bar: paper-trading stages forward it so every bar
    reaches the next stage in order. `ts` is the bar's close time, `bar_ts` its open time."""

    configuration_id: str
    account_id: str
    exchange: str
    symbol: str
    timeframe: str
    bar_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class Signal(BarStep):
    """One configuration's decisions at the close of one bar: the intents the strategy returned, often none (the
    record exists for every bar).

    An intent is `{action: enter|exit, side: long|short, order_type: market|limit|stop, price, stop_loss,
    take_profit, valid_bars, reason}` (prices null when not set).
    """

    intents: list[dict[str, Any]]
    status: str = "running"
    """running, or stopping (deactivated: no new entries) for the last records of a deactivated configuration."""


class Order(BarStep):
    """The orders one configuration places at the close of one bar; `event_id` identifies the batch. An order is
    `{order_id, signal_id, action, side, order_type, quantity, price, stop_loss, take_profit, valid_bars}`;
    `quantity` is indicative (sized at the signal's close): the paper fill sizes again at its own price with the
    same rule. `refused` lists intents the risk checks turned down, with the reason.
    """

    orders: list[dict[str, Any]]
    refused: list[dict[str, Any]]
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
    liquidity: str = "taker"
    reason: str = ""
    mode: str = "paper"


class Trade(Event):
    """A closed round trip; `event_id` is the trade id, `ts` its exit time, `pnl` net of both fees."""

    configuration_id: str
    account_id: str
    exchange: str
    symbol: str
    side: str
    quantity: float
    entry_ts: int
    entry_price: float
    exit_price: float
    pnl: float
    fees: float
    exit_reason: str
    entry_order_id: str
    exit_order_id: str
    mode: str = "paper"


class PortfolioSnapshot(Event):
    """Cash, positions and equity of one configuration's sub-account, or of a whole account when
    `configuration_id` is null, at an event time. `positions` maps `exchange:symbol` to a signed quantity;
    `holdings` details each open position `{exchange, symbol, quantity, avg_entry_price, stop_loss, take_profit,
    opened_ts}`."""

    account_id: str
    configuration_id: str | None
    cash: float
    equity: float
    realized_pnl: float
    unrealized_pnl: float
    positions: dict[str, float]
    holdings: list[dict[str, Any]] | None = None
    mode: str = "paper"


class ConfigChange(Event):
    """The state of one trained configuration (compacted by its id): `action` activate, update or deactivate.

    `execution` and `risk` are the simulator and sizing settings (`agents.execution`), `allocation` the cash of its
    sub-account, `on_deactivate` close (flatten at market) or keep (leave the brackets working).
    """

    configuration_id: str
    action: str
    strategy: str
    params: dict[str, Any]
    exchange: str
    symbols: list[str]
    timeframe: str
    account_id: str
    allocation: float = 10_000.0
    execution: dict[str, Any] | None = None
    risk: dict[str, Any] | None = None
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
