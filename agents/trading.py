"""The paper-trading agents: thin Faust adapters over `agents.market` and `agents.paper` (docs/paper-trading.md).

`trade_paper` reads `market.ticks` and the candle topics, in one agent per instrument partition. A tick message
goes to its instrument's candle builder; the candles that closed are published to `market.candles.<tf>` and, in
the same batch, each runs simulator, strategy and risk for the configurations of its instrument and timeframe, so
the path from the tick that closes a bar to the fill passes through the broker once. The sub-accounts work every
closed bar of the batch first (the orders placed at the previous close, the brackets), and those fills go to the
broker before any strategy of the batch decides. A candle on the candle topics (an import, a backfill, a replay
of candles, or this agent's own) is traded the same way unless the configurations have applied its bar already.
Each stage's decisions (signals, orders, fills, trades, snapshots) go to their own topic; `track_portfolio`, which
runs with the sinks, sums the configurations' snapshots per account.

State is kept per key in Tables: per instrument its candle builder, and its configurations' strategy and
simulator states in one record (so they change together); per account the aggregates. Outputs are confirmed by
the broker, then the states' changelog records, then the input is acknowledged (the agent's next batch does not
wait for the changelog records, its input's acknowledgement does); states record the last tick batch
or bar applied, so a redelivered input is recognised and skipped. A crash can leave either of an instrument's two
records ahead of the other. A builder behind its trading state closes the same candles again (the same ids) for
strategies that have applied them and skip them. A builder ahead of it does not close them again, but they are on
the candle topics (outputs are confirmed before any state), and a candle this agent built comes back to it there:
it trades the copy unless the trading state has applied that bar, which is what usually happened as it built it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar

import faust
import psycopg
from faust.types.tuples import Message

from agents.bars import Bar
from agents.batches import message_batches
from agents.candles import BUILT_FROM_TICKS
from agents.deadletter import decode_error_code, letter_for_message, send_dead_letters
from agents.execution.risk import AccountView, RiskLimits
from agents.market import TickStep, market_step
from agents.output import Output, OutputProducer, States, confirm_batch, output_producer
from agents.paper import (
    ConfigError,
    TradingConfig,
    WorkedBar,
    account_snapshot,
    account_view,
    bar_of,
    finish_bar,
    fresh_strategy_state,
    has_applied,
    is_flat,
    place_orders,
    start_bar,
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
    Fill,
    LogEvent,
    PortfolioSnapshot,
    Trade,
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
    TICKS,
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


Step = Callable[[R, list[dict[str, Any]], Message], Awaitable[list[Output]]]
Started = tuple[TradingConfig, dict[str, Any] | None, WorkedBar | None]
"""A configuration of a closed candle, its strategy state before the candle and its sub-account's worked bar."""
Close = tuple[str, Message, Candle]
"""A closed candle to trade: its instrument key and the message it came from."""


async def run_stage(messages: list[Message], record_type: type[R], tables: Sequence[faust.Table], step: Step[R],
                    outputs_to: OutputProducer, dlq: faust.TopicT, stats: WorkerStats, name: str,
                    finish: Callable[[], list[Output]] | None = None) -> list[asyncio.Future[Any]]:
    """Decode, step each message against its key's state in every table, publish (the steps' outputs, then what
    `finish` adds once the batch is stepped), then save the states (see module docstring). Returns the futures the
    batch's acknowledgement waits for.

    A message that does not decode is skipped here; every topic's sink dead-letters it, so it gets one letter.
    """
    outputs: list[Output] = []
    letters: list[DeadLetter] = []
    states: dict[str, tuple[int, list[dict[str, Any]]]] = {}
    for message in messages:
        key = message.key.decode(errors="replace") if message.key else ""
        try:
            record = decode(record_type, message.value)
        except InvalidEvent as exc:  # the topic's sink dead-letters it: one letter per bad message
            logger.warning("%s: %s[%d]@%d skipped: %s", name, message.topic, message.partition, message.offset, exc)
            continue
        state = [dict(part) for part in states[key][1]] if key in states else [
            dict(table.get(key) or {}) for table in tables]
        try:
            outputs += await step(record, state, message)
        except Exception as exc:  # a bug costs one dead letter, not the stream
            logger.exception("%s: processing %s[%d]@%d failed", name, message.topic, message.partition,
                             message.offset)
            letters.append(letter_for_message(message, PROCESSING_ERROR, repr(exc)))
            continue
        states[key] = (message.partition, state)
    if finish is not None:
        outputs += finish()
    if letters:
        await send_dead_letters(dlq, letters, stats)
    published = await outputs_to.publish(outputs)
    changes = [(table, {key: (partition, parts[index]) for key, (partition, parts) in states.items()})
               for index, table in enumerate(tables)]
    saved = await confirm_batch(outputs_to, published, changes)
    stats.paper[name] += len(messages)
    return saved


def register_trading_agents(app: faust.App, settings: Settings, stats: WorkerStats, db: DatabaseWriter) -> None:
    """Declare the views, trade_paper and track_portfolio on `app`."""
    prefix, app_id, paper = settings.kafka.topic_prefix, settings.worker.app_id, settings.paper
    limits = RiskLimits(paper.max_open_positions, paper.max_positions_per_symbol, paper.max_exposure,
                        paper.daily_loss_limit)
    control = Control()
    dlq = app.topic(topic_name(prefix, DLQ))
    outputs_to = output_producer(app, settings)
    ticks_topic, grace_ms = topic_name(prefix, TICKS), settings.worker.late_tick_grace_ms
    market = app.topic(ticks_topic, *(topic_name(prefix, candle_topic(tf)) for tf in TIMEFRAMES))
    # No key/value types: Faust then stores JSON and restores the plain dicts `CandleBuilder.from_state` takes.
    builders = app.Table("candle-builders", partitions=settings.kafka.partitions,
                         help="CandleBuilder state per instrument (see agents.candles).")
    trading = app.Table("paper-trading", partitions=settings.kafka.partitions,
                        help="Per instrument: each configuration's strategy and simulator (sub-account) states, in "
                             "one record so that they change together.")

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

    # ------------------------------------------------------------------------------------------- trade_paper

    async def warm_history(config: TradingConfig, before_ts: int) -> list[Bar]:
        strategy = config.new_strategy()
        spans = [TIMEFRAMES[tf] for tf in strategy.higher_timeframes()]
        base = TIMEFRAMES[config.timeframe]
        needed = strategy.warmup_bars() + 2 * max(spans, default=0) // base + 10
        rows = await db.run(lambda conn: fetch_candles(conn, config.exchange, config.symbol, config.timeframe,
                                                       0, before_ts, limit=needed), "warm-up candles")
        return [bar_of(c) for c in rows]

    def trading_state(pending: dict[str, tuple[int, dict[str, Any]]], key: str) -> dict[str, Any]:
        """A copy of the instrument's trading state as the batch left it so far, to step or to drop."""
        state = pending[key][1] if key in pending else trading.get(key) or {}
        return {"strategies": dict(state.get("strategies", {})), "simulators": dict(state.get("simulators", {}))}

    def configs_of(candle: Candle) -> list[TradingConfig]:
        return control.by_instrument.get((instrument_key(candle.exchange, candle.symbol), candle.timeframe), [])

    async def start_close(candle: Candle, state: dict[str, Any]) -> list[Started]:
        """Each configuration's strategy state (a new one warmed up from the store) and its sub-account after
        working the bar. Reads `state`, changes nothing: a failure here costs the candle, not a half-traded bar."""
        started = []
        for config in configs_of(candle):
            config_id = config.configuration_id
            current = state["strategies"].get(config_id)
            if current is None and config.active:
                current = fresh_strategy_state(config, await warm_history(config, candle.ts))
            started.append((config, current, start_bar(config, current, state["simulators"].get(config_id), candle)))
        return started

    async def finish_close(candle: Candle, state: dict[str, Any], key: str, started: list[Started]) -> list[Output]:
        """The strategies decide on the candle and their orders go to the worked sub-accounts (`state` updated)."""
        sub_accounts, strategy_states = state["simulators"], state["strategies"]
        outputs: list[Output] = []
        accounts: dict[str, AccountView | None] = {}
        for config, current, worked in started:
            config_id = config.configuration_id
            if config.account_id not in accounts:  # the same for every configuration of the account on this bar
                day = control.day_start.get(config.account_id)
                accounts[config.account_id] = account_view(control.account_snapshots.get(config.account_id),
                                                           day[1] if day else None)
            step = finish_bar(config, current, sub_accounts.get(config_id), worked, candle, limits,
                              accounts[config.account_id], control.halt_reason(config))
            if step.strategy_state is None:
                strategy_states.pop(config_id, None)
                control.status_updates.append((config_id, "stopped", ""))
            else:
                strategy_states[config_id] = step.strategy_state
            if step.fills.state is not None:
                sub_accounts[config_id] = step.fills.state
            if step.signal is not None:
                outputs.append((SIGNALS, key, step.signal))
            if step.order is not None:
                outputs.append((ORDERS, key, step.order))
                for refusal in step.order.refused:
                    outputs.append(await log("WARNING", f"order refused: {refusal['reason']}", config_id,
                                             {"signal_id": refusal["signal_id"], "intent": refusal["intent"]},
                                             candle.ts))
            outputs += fill_outputs(key, step.fills.fills, step.fills.trades)
            if step.fills.snapshot is not None:
                outputs.append((PORTFOLIO, config.account_id, step.fills.snapshot))
            if step.error is not None:
                control.status_updates.append((config_id, "error", step.error.strip().splitlines()[-1]))
                outputs.append(await log("ERROR", f"strategy {config.strategy} failed; configuration stopped",
                                         config_id, {"traceback": step.error}, candle.ts))
        return outputs

    def keep_worked_bars(candle: Candle, state: dict[str, Any], started: list[Started]) -> None:
        """After `finish_close` failed: the sub-accounts as they worked the bar, which their published fills
        tell; no orders placed, strategies as they were. Worked again from the states, which gives the same."""
        for config, current, _ in started:
            config_id = config.configuration_id
            worked = start_bar(config, current, state["simulators"].get(config_id), candle)
            if worked is not None:
                kept = place_orders(config, state["simulators"].get(config_id), worked, None,
                                    candle.ts + TIMEFRAMES[candle.timeframe])
                if kept.state is not None:
                    state["simulators"][config_id] = kept.state

    async def trade_closes(closes: list[Close], trading_states: States, letters: list[DeadLetter],
                           early: list[Output]) -> tuple[list[asyncio.Future[Any]], list[Output]]:
        """Closed candles of which no two are of one instrument and timeframe: every sub-account works its bar
        first, and their fills and trades go to the broker, with `early`, before any strategy runs (orders placed
        at the previous close fill on this bar whatever it decides); then the strategies, risk and orders. Returns
        the early records' futures and the rest of the outputs."""
        started: list[tuple[str, Message, Candle, list[Started]]] = []
        fills: list[Output] = []
        for key, message, candle in closes:
            state = trading_state(trading_states, key)
            if candle.source == BUILT_FROM_TICKS and all(
                    has_applied(config, state["strategies"].get(config.configuration_id), candle.ts)
                    for config in configs_of(candle)):
                continue  # the copy of a candle traded as this agent built it
            try:
                worked = await start_close(candle, state)
            except Exception as exc:  # a bug or a store that stays down costs one dead letter, not the stream
                failed_close(key, message, candle, exc, letters)
                continue
            fills += [output for _, _, bar in worked if bar is not None
                      for output in fill_outputs(key, bar.fills, bar.trades)]
            started.append((key, message, candle, worked))
        published = await outputs_to.publish_now([*early, *fills])
        outputs: list[Output] = []
        for key, message, candle, worked in started:
            state = trading_state(trading_states, key)
            try:
                outputs += await finish_close(candle, state, key, worked)
            except Exception as exc:  # a bug costs one dead letter, not the stream
                failed_close(key, message, candle, exc, letters)
                state = trading_state(trading_states, key)
                keep_worked_bars(candle, state, worked)
            trading_states[key] = (message.partition, state)
        return published, outputs

    def failed_close(key: str, message: Message, candle: Candle, exc: Exception, letters: list[DeadLetter]) -> None:
        logger.exception("trade_paper: trading %s %s@%d from %s[%d]@%d failed", key, candle.timeframe, candle.ts,
                         message.topic, message.partition, message.offset)
        letters.append(letter_for_message(message, PROCESSING_ERROR, repr(exc)))

    def market_outputs(step: TickStep) -> list[Output]:
        for candle in step.candles:
            stats.candles[candle.timeframe] += 1
        return [(candle_topic(c.timeframe), step.instrument or "", c) for c in step.candles]

    async def trade_market_batch(messages: list[Message]) -> list[asyncio.Future[Any]]:
        """One batch of ticks and candles, as in the module docstring: outputs confirmed, then the states. Returns
        the futures the batch's acknowledgement waits for."""
        outputs: list[Output] = []
        letters: list[DeadLetter] = []
        builder_states: States = {}
        trading_states: States = {}
        closes: list[Close] = []
        accepted = 0
        for message in messages:
            key = message.key.decode(errors="replace") if message.key else ""
            if message.topic == ticks_topic:
                stats.messages += 1
                tick = market_step(message, builder_states[key][1] if key in builder_states else builders.get(key),
                                   grace_ms)
                if tick.skipped:
                    stats.redelivered_batches += 1
                    continue
                letters += tick.letters
                if tick.state is None or tick.instrument is None:
                    continue
                builder_states[tick.instrument] = (message.partition, tick.state)
                accepted += tick.accepted_ticks
                outputs += market_outputs(tick)
                closed = tick.candles
            else:
                try:
                    candle = decode(Candle, message.value)
                except InvalidEvent as exc:  # the topic's sink dead-letters it: one letter per bad message
                    logger.warning("trade_paper: %s[%d]@%d skipped: %s", message.topic, message.partition,
                                   message.offset, exc)
                    continue
                closed = [candle]
            closes += [(key, message, candle) for candle in closed if configs_of(candle)]
        published: list[asyncio.Future[Any]] = []
        for round_closes in close_rounds(closes):
            sent, later = await trade_closes(round_closes, trading_states, letters, outputs)
            published += sent
            outputs = later
        if letters:
            await send_dead_letters(dlq, letters, stats)
        published += await outputs_to.publish(outputs)
        saved = await confirm_batch(outputs_to, published, [(trading, trading_states), (builders, builder_states)])
        stats.ticks += accepted
        stats.paper["trade_paper"] += len(messages)
        return saved

    @app.agent(market, name=f"{app_id}.trade_paper")
    async def trade_paper(stream: faust.StreamT[bytes]) -> None:
        async for messages in message_batches(stream, settings.worker.tick_batch_messages,
                                              settings.worker.batch_wait_s):
            messages.acknowledge_after(await trade_market_batch(messages))
            await _flush_status(control, db)

    @app.timer(interval=1.0, name=f"{app_id}.paper_housekeeping")
    async def housekeeping() -> None:
        if control.rejected_changes:
            letters, control.rejected_changes = control.rejected_changes, []
            await send_dead_letters(dlq, letters, stats)
        for config in control.configs.values():  # deactivated and flat by now, whatever bar comes next
            if not config.active and is_flat(control.config_snapshots.get(config.configuration_id)):
                control.status_updates.append((config.configuration_id, "stopped", ""))
        await _flush_status(control, db)

    del trade_paper, housekeeping


def register_portfolio_agent(app: faust.App, settings: Settings, stats: WorkerStats) -> None:
    """Declare track_portfolio on `app`: the accounts' snapshots, summed from their configurations' snapshots.

    It is off the tick-to-fill path, so it runs with the sinks (see tradepulse.commands.worker): at a bar close
    every configuration reports, and in the trading worker its Faust deliveries and its own writes took turns on
    the event loop with trade_paper."""
    app_id, prefix = settings.worker.app_id, settings.kafka.topic_prefix
    portfolio, dlq = app.topic(topic_name(prefix, PORTFOLIO)), app.topic(topic_name(prefix, DLQ))
    outputs_to = output_producer(app, settings)
    accounts = app.Table("paper-accounts", partitions=1, help="Per account: its configurations' latest snapshots.")

    due: dict[tuple[str, int], dict[str, Any]] = {}
    """(account, ts) -> the account's configuration snapshots after the batch's last one at that ts."""

    async def portfolio_step(snapshot: PortfolioSnapshot, parts: list[dict[str, Any]],
                             message: Message) -> list[Output]:
        state = parts[0]
        if snapshot.configuration_id is None:
            return []  # an account snapshot: this agent's own output
        last = state.get(snapshot.configuration_id)
        if last is not None and last["ts"] >= snapshot.ts:
            return []
        state[snapshot.configuration_id] = snapshot.asdict()
        due.pop((snapshot.account_id, snapshot.ts), None)  # re-inserted: outputs follow the last one's place
        due[(snapshot.account_id, snapshot.ts)] = dict(state)
        return []

    def account_snapshots() -> list[Output]:
        """One account snapshot per account and ts of the batch, as the last of the batch's configuration
        snapshots at that ts left the account. It has the event id and content that the last of one snapshot per
        configuration snapshot would have; those before it, which the store and the views overwrite, are not
        computed (each sums every configuration of the account)."""
        outputs: list[Output] = [
            (PORTFOLIO, account_id, account_snapshot(
                account_id, {k: PortfolioSnapshot.from_data(v) for k, v in configs.items()}, ts))
            for (account_id, ts), configs in due.items()]
        due.clear()
        return outputs

    @app.agent(portfolio, name=f"{app_id}.track_portfolio")
    async def track_portfolio(stream: faust.StreamT[bytes]) -> None:
        async for messages in message_batches(stream, STAGE_BATCH_MESSAGES, settings.worker.portfolio_batch_wait_s):
            due.clear()  # nothing left over from a batch that failed
            messages.acknowledge_after(await run_stage(messages, PortfolioSnapshot, (accounts,), portfolio_step,
                                                       outputs_to, dlq, stats, "track_portfolio", account_snapshots))

    del track_portfolio


def fill_outputs(key: str, fills: list[Fill], trades: list[Trade]) -> list[Output]:
    """A sub-account's fills and trades as outputs, keyed by instrument like every trading record."""
    return [*((FILLS, key, fill) for fill in fills), *((TRADES, key, trade) for trade in trades)]


def close_rounds(closes: list[Close]) -> list[list[Close]]:
    """`closes` in rounds, each with at most one candle of an instrument and timeframe, in their order: a
    configuration's orders from one bar are worked on its next, so its second candle in a batch waits for the
    first's strategy step (a gap, a replay). At a live bar close there is one round."""
    rounds: list[list[Close]] = []
    taken: dict[tuple[str, str], int] = {}
    for close in closes:
        index = taken.get((close[0], close[2].timeframe), -1) + 1
        taken[(close[0], close[2].timeframe)] = index
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(close)
    return rounds


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
