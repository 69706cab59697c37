"""Topic names, keys, partitions and cleanup policies: the single list every producer and consumer uses."""

from __future__ import annotations

from dataclasses import dataclass

from streams.records import (
    TIMEFRAMES,
    Candle,
    Command,
    ConfigChange,
    DeadLetter,
    Event,
    Fill,
    LogEvent,
    Order,
    PortfolioSnapshot,
    Signal,
    TickBatch,
    Trade,
    TrainingProgress,
)

TICKS = "market.ticks"
SIGNALS = "strategy.signals"
ORDERS = "exec.orders"
FILLS = "exec.fills"
TRADES = "exec.trades"
PORTFOLIO = "portfolio.snapshots"
CONFIGS = "control.configs"
COMMANDS = "control.commands"
LOGS = "ops.logs"
DLQ = "ops.dlq"
TRAINING_PROGRESS = "training.progress"


def topic_name(prefix: str, name: str) -> str:
    """The physical name of a documented topic under a namespace prefix (empty by default)."""
    return f"{prefix}{name}"


def candle_topic(timeframe: str) -> str:
    """`market.candles.<tf>` for a timeframe of `TIMEFRAMES`."""
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")
    return f"market.candles.{timeframe}"


@dataclass(frozen=True)
class TopicSpec:
    """Everything an outside consumer needs to know about one topic."""

    name: str
    record: type[Event]
    key: str
    instrument_partitioned: bool
    cleanup_policy: str = "delete"
    retention_ms: int = -1
    description: str = ""

    def partition_count(self, instrument_partitions: int) -> int:
        """Instrument-keyed topics share one partition count so they stay co-partitioned."""
        return instrument_partitions if self.instrument_partitioned else 1


_INSTRUMENT_KEY = "instrument: `<exchange>:<symbol>`, e.g. `kraken:BTC/USDT`"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(TICKS, TickBatch, _INSTRUMENT_KEY, True, retention_ms=7 * 86_400_000,
              description="Trades of one instrument over a short interval, columnar, one batch per message."),
    *(
        TopicSpec(candle_topic(tf), Candle, _INSTRUMENT_KEY, True,
                  description=f"Closed {tf} candles, emitted once per bucket after it closes. Those with `source` "
                              "`ticks` are built from market.ticks by trade_paper, which trades them as it builds "
                              "them; candles of any other source (imports, backfills) are traded as they arrive.")
        for tf in TIMEFRAMES
    ),
    TopicSpec(SIGNALS, Signal, _INSTRUMENT_KEY, True,
              description="Each active configuration's intents at each closed bar of its timeframe (often none)."),
    TopicSpec(ORDERS, Order, _INSTRUMENT_KEY, True,
              description="Each configuration's risk-checked orders with OCO brackets, one batch per bar."),
    TopicSpec(FILLS, Fill, _INSTRUMENT_KEY, True, description="Paper and live executions."),
    TopicSpec(TRADES, Trade, _INSTRUMENT_KEY, True, description="Closed round trips: entry, exit, net PnL, fees."),
    TopicSpec(PORTFOLIO, PortfolioSnapshot, "account id", False,
              description="Cash, positions and equity per account and configuration."),
    TopicSpec(CONFIGS, ConfigChange, "configuration id", False, cleanup_policy="compact",
              description="Latest state of each configuration; the source of truth for what runs."),
    TopicSpec(COMMANDS, Command, "scope target (configuration or account id, or `all`)", False,
              description="Operator commands: kill switch, flatten, resume."),
    TopicSpec(LOGS, LogEvent, "logger name", False, retention_ms=14 * 86_400_000,
              description="Structured operational events."),
    TopicSpec(DLQ, DeadLetter, "source topic", False, description="Rejected input with the reason."),
    TopicSpec(TRAINING_PROGRESS, TrainingProgress, "job id", False, retention_ms=7 * 86_400_000,
              description="Progress of training jobs."),
)

TOPICS_BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}
