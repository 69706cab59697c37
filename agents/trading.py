"""The paper-trading agents: thin Faust adapters over `agents.paper` (see docs/paper-trading.md).

Each stage consumes one instrument-keyed topic and forwards the bar it acted on, so bars stay in order from candle
to fill. Stateful stages (strategies, simulators, account aggregates) keep their state per key in a Table and use
the same delivery discipline as `build_candles`: outputs confirmed by the broker, then the state's changelog
record confirmed, then the input acknowledged; state records the last bar applied per configuration, so a
redelivered input is recognised and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar

import faust
import psycopg
from faust.types.tuples import Message

from agents.bars import Bar
from agents.batches import message_batches
from agents.deadletter import decode_error_code, letter_for_message, send_dead_letters
from agents.execution.risk import RiskLimits
from agents.output import Output, OutputProducer, output_producer
from agents.paper import (
    ConfigError,
    TradingConfig,
    account_snapshot,
    account_view,
    bar_of,
    fresh_strategy_state,
    is_flat,
    step_fills,
    step_orders,
    step_signal,
    trading_config,
)
from agents.sinks import DatabaseWriter
from agents.stats import WorkerStats
from agents.views import TopicView
from streams.codecs import InvalidEvent, decode
from streams.keys import TIMEFRAMES, instrument_key, stable_id
from streams.records import (
    SCHEMA_VERSION,
    Candle,
    Command,
    ConfigChange,
    DeadLetter,
    Event,
    LogEvent,
    Order,
    PortfolioSnapshot,
    Signal,
)
from streams.topics import (
    COMMANDS,
    CONFIGS,
    DLQ,
    FILLS,
    LOGS,
    ORDERS,
    PORTFOLIO,
    SIGNALS,
    TRADES,
    candle_topic,
    topic_name,
)
from tradepulse.settings import Settings
from tradepulse.store import fetch_candles

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Event)
STAGE_BATCH_MESSAGES = 500
PROCESSING_ERROR = "processing_error"
INVALID_CONFIG = "invalid_config"
STAGES = ("emit_signals", "size_orders", "fill_paper", "track_portfolio")


@dataclass
class Control:
    """What every worker knows of configurations, operator commands and portfolios (replicated views)."""

    configs: dict[str, TradingConfig] = field(default_factory=dict)
    by_instrument: dict[tuple[str, str], list[TradingConfig]] = field(default_factory=dict)
    halted: dict[str, str] = field(default_factory=dict)
    """Scope (`all`, an account or a configuration id) -> why new entries are halted."""
    config_snapshots: dict[str, PortfolioSnapshot] = field(default_factory=dict)
    account_snapshots: dict[str, PortfolioSnapshot] = field(default_factory=dict)
    day_start: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Account -> (UTC day, equity of its first snapshot that day)."""
    rejected_changes: list[DeadLetter] = field(default_factory=list)
    status_updates: list[tuple[str, str, str]] = field(default_factory=list)
    recorded_status: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Configuration -> the (status, reason) this worker last wrote, so an unchanged status costs no write."""

    def apply_change(self, change: ConfigChange, message: Any) -> None:
        try:
            config = trading_config(change)
        except ConfigError as exc:
            logger.error("configuration change %s refused: %s", change.configuration_id, exc)
            self.rejected_changes.append(letter_for_message(message, INVALID_CONFIG, str(exc)))
            return
        self.configs[config.configuration_id] = config
        self.by_instrument = {}
        for c in self.configs.values():
            self.by_instrument.setdefault((c.instrument, c.timeframe), []).append(c)
        self.status_updates.append((config.configuration_id, "running" if config.active else "stopping", ""))

    def apply_command(self, command: Command) -> None:
        scope = command.target or "all"
        if command.action == "halt":
            self.halted[scope] = f"trading halted by {command.issued_by or 'the operator'} ({command.scope} {scope})"
        elif command.action == "resume":
            self.halted.pop(scope, None)

    def apply_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        if snapshot.configuration_id is not None:
            self.config_snapshots[snapshot.configuration_id] = snapshot
            return
        self.account_snapshots[snapshot.account_id] = snapshot
        day = datetime.fromtimestamp(snapshot.ts / 1000, tz=UTC).date().isoformat()
        if self.day_start.get(snapshot.account_id, ("", 0.0))[0] != day:
            self.day_start[snapshot.account_id] = (day, snapshot.equity)

    def halt_reason(self, config: TradingConfig) -> str | None:
        for scope in (config.configuration_id, config.account_id, "all"):
            if scope in self.halted:
                return self.halted[scope]
        return None


def _raw(record: Any) -> SimpleNamespace:
    """An aiokafka record in the shape dead letters are built from (timestamp in seconds, as Faust's)."""
    return SimpleNamespace(topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
                           value=record.value, timestamp=record.timestamp / 1000)


async def save_states(table: faust.Table, states: dict[str, tuple[int, Any]]) -> None:
    """Write each key's state once, to the changelog partition of the message it came from, and wait for them."""
    futures = []
    for key, (partition, state) in states.items():
        futures.append(table.send_changelog(partition, key, state))
        table.data[key] = state
    for future in futures:
        await future


Step = Callable[[R, dict[str, Any], Message], Awaitable[list[Output]]]


async def run_stage(messages: list[Message], record_type: type[R], table: faust.Table | None, step: Step[R],
                    outputs_to: OutputProducer, dlq: faust.TopicT, stats: WorkerStats, name: str) -> None:
    """Decode, step each message against its key's state, publish, then save the states (see module docstring).

    A message that does not decode is skipped here; every topic's sink dead-letters it, so it gets one letter.
    """
    outputs: list[Output] = []
    letters: list[DeadLetter] = []
    states: dict[str, tuple[int, Any]] = {}
    for message in messages:
        key = message.key.decode(errors="replace") if message.key else ""
        try:
            record = decode(record_type, message.value)
        except InvalidEvent as exc:  # the topic's sink dead-letters it: one letter per bad message
            logger.warning("%s: %s[%d]@%d skipped: %s", name, message.topic, message.partition, message.offset, exc)
            continue
        state = states[key][1] if key in states else (dict(table.get(key) or {}) if table is not None else {})
        try:
            outputs += await step(record, state, message)
        except Exception as exc:  # a bug costs one dead letter, not the stream
            logger.exception("%s: processing %s[%d]@%d failed", name, message.topic, message.partition,
                             message.offset)
            letters.append(letter_for_message(message, PROCESSING_ERROR, repr(exc)))
            continue
        states[key] = (message.partition, state)
    if letters:
        await send_dead_letters(dlq, letters, stats)
    await outputs_to.deliver(outputs)
    if table is not None and states:
        await save_states(table, states)
    stats.paper[name] += len(messages)


def register_trading_agents(app: faust.App, settings: Settings, stats: WorkerStats, db: DatabaseWriter) -> None:
    """Declare the views, emit_signals, size_orders, fill_paper and track_portfolio on `app`."""
    prefix, app_id, paper = settings.kafka.topic_prefix, settings.worker.app_id, settings.paper
    limits = RiskLimits(paper.max_open_positions, paper.max_positions_per_symbol, paper.max_exposure,
                        paper.daily_loss_limit)
    control = Control()
    topic = {name: app.topic(topic_name(prefix, name)) for name in (SIGNALS, ORDERS, PORTFOLIO, DLQ)}
    outputs_to = {stage: output_producer(app, settings) for stage in STAGES}
    candles = app.topic(*(topic_name(prefix, candle_topic(tf)) for tf in TIMEFRAMES))
    strategies = app.Table("paper-strategies", partitions=settings.kafka.partitions,
                           help="Per instrument: each configuration's strategy state.")
    simulators = app.Table("paper-simulators", partitions=settings.kafka.partitions,
                           help="Per instrument: each configuration's simulator (sub-account) state.")
    accounts = app.Table("paper-accounts", partitions=1, help="Per account: its configurations' latest snapshots.")
    def invalid_change(raw: Any, reason: str) -> None:
        control.rejected_changes.append(letter_for_message(_raw(raw), decode_error_code(reason), reason))

    config_view = TopicView(settings, CONFIGS, ConfigChange,
                            lambda change, raw: control.apply_change(change, _raw(raw)), invalid_change)
    command_view = TopicView(settings, COMMANDS, Command, lambda command, _raw_: control.apply_command(command))
    portfolio_view = TopicView(settings, PORTFOLIO, PortfolioSnapshot,
                               lambda snapshot, _raw_: control.apply_snapshot(snapshot))

    views = (config_view, command_view, portfolio_view)
    asyncio.run(_catch_up(views))  # before Faust consumes anything: agents decide with complete views
    for view in views:
        app.task(_follower(view))

    async def log(level: str, text: str, config_id: str | None, meta: dict[str, Any], ts: int) -> Output:
        event = LogEvent(event_id=stable_id("log", config_id, text, ts), ts=ts, schema_version=SCHEMA_VERSION,
                         level=level, message=text, logger=__name__, configuration_id=config_id, metadata=meta)
        return LOGS, __name__, event

    # ------------------------------------------------------------------------------------------ emit_signals

    async def warm_history(config: TradingConfig, before_ts: int) -> list[Bar]:
        strategy = config.new_strategy()
        spans = [TIMEFRAMES[tf] for tf in strategy.higher_timeframes()]
        base = TIMEFRAMES[config.timeframe]
        needed = strategy.warmup_bars() + 2 * max(spans, default=0) // base + 10
        rows = await db.run(lambda conn: fetch_candles(conn, config.exchange, config.symbol, config.timeframe,
                                                       0, before_ts, limit=needed), "warm-up candles")
        return [bar_of(c) for c in rows]

    async def signal_step(candle: Candle, state: dict[str, Any], message: Message) -> list[Output]:
        outputs: list[Output] = []
        configs = control.by_instrument.get((instrument_key(candle.exchange, candle.symbol), candle.timeframe), [])
        for config in configs:
            current = state.get(config.configuration_id)
            if current is None and config.active:
                current = fresh_strategy_state(config, await warm_history(config, candle.ts))
            step = step_signal(config, current, candle,
                               flat=is_flat(control.config_snapshots.get(config.configuration_id)))
            if step.state is None:
                state.pop(config.configuration_id, None)
                control.status_updates.append((config.configuration_id, "stopped", ""))
            else:
                state[config.configuration_id] = step.state
            if step.signal is not None:
                outputs.append((SIGNALS, message.key.decode(), step.signal))
            if step.error is not None:
                control.status_updates.append((config.configuration_id, "error", step.error.strip().splitlines()[-1]))
                outputs.append(await log("ERROR", f"strategy {config.strategy} failed; configuration stopped",
                                         config.configuration_id, {"traceback": step.error}, candle.ts))
        return outputs

    @app.agent(candles, name=f"{app_id}.emit_signals")
    async def emit_signals(stream: faust.StreamT[bytes]) -> None:
        async for messages in message_batches(stream, STAGE_BATCH_MESSAGES, settings.worker.batch_wait_s):
            await run_stage(messages, Candle, strategies, signal_step, outputs_to["emit_signals"], topic[DLQ], stats,
                            "emit_signals")
            await _flush_status(control, db)

    # ------------------------------------------------------------------------------------------- size_orders

    async def order_step(signal: Signal, state: dict[str, Any], message: Message) -> list[Output]:
        config = control.configs.get(signal.configuration_id)
        if config is None:
            return [await log("ERROR", "signal of an unknown configuration dropped", signal.configuration_id, {},
                              signal.ts)]
        snapshot = control.account_snapshots.get(config.account_id)
        day = control.day_start.get(config.account_id)
        sub = control.config_snapshots.get(config.configuration_id)
        batch = step_orders(signal, config, limits, account_view(snapshot, day[1] if day else None),
                            sub.cash if sub is not None else None, control.halt_reason(config))
        outputs: list[Output] = [(ORDERS, message.key.decode(), batch)]
        for refusal in batch.refused:
            outputs.append(await log("WARNING", f"order refused: {refusal['reason']}", config.configuration_id,
                                     {"signal_id": refusal["signal_id"], "intent": refusal["intent"]}, signal.ts))
        return outputs

    @app.agent(topic[SIGNALS], name=f"{app_id}.size_orders")
    async def size_orders(stream: faust.StreamT[bytes]) -> None:
        async for messages in message_batches(stream, STAGE_BATCH_MESSAGES, settings.worker.batch_wait_s):
            await run_stage(messages, Signal, None, order_step, outputs_to["size_orders"], topic[DLQ], stats,
                            "size_orders")

    # -------------------------------------------------------------------------------------------- fill_paper

    async def fill_step(batch: Order, state: dict[str, Any], message: Message) -> list[Output]:
        config = control.configs.get(batch.configuration_id)
        if config is None:
            return []
        step = step_fills(config, state.get(config.configuration_id), batch)
        state[config.configuration_id] = step.state
        key = message.key.decode()
        outputs: list[Output] = [(FILLS, key, f) for f in step.fills]
        outputs += [(TRADES, key, t) for t in step.trades]
        if step.snapshot is not None:
            outputs.append((PORTFOLIO, config.account_id, step.snapshot))
        return outputs

    @app.agent(topic[ORDERS], name=f"{app_id}.fill_paper")
    async def fill_paper(stream: faust.StreamT[bytes]) -> None:
        async for messages in message_batches(stream, STAGE_BATCH_MESSAGES, settings.worker.batch_wait_s):
            await run_stage(messages, Order, simulators, fill_step, outputs_to["fill_paper"], topic[DLQ], stats,
                            "fill_paper")

    # --------------------------------------------------------------------------------------- track_portfolio

    async def portfolio_step(snapshot: PortfolioSnapshot, state: dict[str, Any], message: Message) -> list[Output]:
        if snapshot.configuration_id is None:
            return []  # an account snapshot: this agent's own output
        last = state.get(snapshot.configuration_id)
        if last is not None and last["ts"] >= snapshot.ts:
            return []
        state[snapshot.configuration_id] = snapshot.asdict()
        parts = {k: PortfolioSnapshot.from_data(v) for k, v in state.items()}
        return [(PORTFOLIO, snapshot.account_id, account_snapshot(snapshot.account_id, parts, snapshot.ts))]

    @app.agent(topic[PORTFOLIO], name=f"{app_id}.track_portfolio")
    async def track_portfolio(stream: faust.StreamT[bytes]) -> None:
        async for messages in message_batches(stream, STAGE_BATCH_MESSAGES, settings.worker.batch_wait_s):
            await run_stage(messages, PortfolioSnapshot, accounts, portfolio_step, outputs_to["track_portfolio"],
                            topic[DLQ], stats, "track_portfolio")

    @app.timer(interval=1.0, name=f"{app_id}.paper_housekeeping")
    async def housekeeping() -> None:
        if control.rejected_changes:
            letters, control.rejected_changes = control.rejected_changes, []
            await send_dead_letters(topic[DLQ], letters, stats)
        for config in control.configs.values():  # deactivated and flat by now, whatever bar comes next
            if not config.active and is_flat(control.config_snapshots.get(config.configuration_id)):
                control.status_updates.append((config.configuration_id, "stopped", ""))
        await _flush_status(control, db)

    del emit_signals, size_orders, fill_paper, track_portfolio, housekeeping


def _follower(view: TopicView[Any]) -> Callable[[], Awaitable[None]]:
    async def follow() -> None:
        await view.run()

    return follow


async def _catch_up(views: tuple[TopicView[Any], ...]) -> None:
    await asyncio.gather(*(view.catch_up() for view in views))


async def _flush_status(control: Control, db: DatabaseWriter) -> None:
    """Write the configuration statuses the agents reported since the last flush (last one per configuration)."""
    if not control.status_updates:
        return
    latest = {config_id: (status, reason) for config_id, status, reason in control.status_updates}
    control.status_updates = []
    for config_id, (status, reason) in list(latest.items()):  # a deactivated configuration that holds nothing
        if status == "stopping" and is_flat(control.config_snapshots.get(config_id)):
            latest[config_id] = ("stopped", reason)
    latest = {config_id: update for config_id, update in latest.items()
              if control.recorded_status.get(config_id) != update}
    if not latest:
        return

    def write(conn: psycopg.Connection) -> None:
        for config_id, (status, reason) in latest.items():
            conn.execute("UPDATE trained_configurations SET status = %s, status_reason = %s, status_at = now() "
                         "WHERE id = %s AND (status, status_reason) IS DISTINCT FROM (%s, %s)",
                         (status, reason[:500], config_id, status, reason[:500]))

    try:
        await db.run_once(write)
    except psycopg.Error as exc:
        logger.warning("configuration statuses not recorded yet (database unavailable): %s", exc)
        control.status_updates = [(k, s, r) for k, (s, r) in latest.items()] + control.status_updates
    else:
        control.recorded_status.update(latest)
