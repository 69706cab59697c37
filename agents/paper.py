"""The paper-trading stages as plain functions over records and JSON state (see docs/paper-trading.md).

The Faust agents in `agents.trading` only move records between topics and tables; everything they decide is
decided here (`step_bar` chains the simulator, strategy and risk stages on one candle, in two halves the agent
calls apart: `start_bar` and `finish_bar`), with the same strategy, higher-timeframe, sizing and simulator code
backtests use, so it can be tested without a broker. Every function is deterministic: the same inputs give the
same records with the same ids.
"""

from __future__ import annotations

import functools
import logging
import traceback
from dataclasses import dataclass, field, fields
from typing import Any

from agents.bars import Bar, HigherTimeframes
from agents.execution.risk import AccountView, OpenPosition, RiskConfig, RiskLimits, entry_refusal, position_size
from agents.execution.simulator import Events, ExecutionConfig, ExecutionSimulator
from agents.strategies import strategy_class
from agents.strategies.base import Intent, ParamError, Strategy, exit_
from streams.keys import TIMEFRAMES, instrument_key, stable_id
from streams.records import SCHEMA_VERSION, Candle, ConfigChange, Fill, Order, PortfolioSnapshot, Signal, Trade

logger = logging.getLogger(__name__)

ACTIONS = ("activate", "update", "deactivate")
ON_DEACTIVATE = ("close", "keep")


class ConfigError(ValueError):
    """A configuration that cannot run; the message says why."""


@dataclass(frozen=True)
class TradingConfig:
    """A configuration as the agents run it: validated once, when its change arrives."""

    configuration_id: str
    action: str
    strategy: str
    params: dict[str, Any]
    exchange: str
    symbol: str
    timeframe: str
    account_id: str
    allocation: float
    execution: ExecutionConfig
    risk: RiskConfig
    on_deactivate: str

    @property
    def active(self) -> bool:
        return self.action != "deactivate"

    @property
    def instrument(self) -> str:
        return instrument_key(self.exchange, self.symbol)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Changes when anything that decides trades changes: then the strategy is started afresh. Computed once
        (the configuration is frozen): every bar of every configuration compares it."""
        return stable_id("config", self.strategy, sorted(self.params.items()), self.timeframe)

    def new_strategy(self) -> Strategy:
        return strategy_class(self.strategy)(self.params)


def _settings(kind: type, values: dict[str, Any] | None, what: str) -> Any:
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(values or {}) - known)
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return kind(**(values or {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {what} settings: {exc}") from exc


def trading_config(change: ConfigChange) -> TradingConfig:
    """Validate a configuration change: strategy, parameters, instrument, timeframe and settings."""
    if change.action not in ACTIONS:
        raise ConfigError(f"unknown action {change.action!r}; expected one of {', '.join(ACTIONS)}")
    if change.on_deactivate not in ON_DEACTIVATE:
        raise ConfigError(f"on_deactivate must be close or keep, got {change.on_deactivate!r}")
    if change.timeframe not in TIMEFRAMES:
        raise ConfigError(f"unknown timeframe {change.timeframe!r}")
    if len(change.symbols) != 1:
        raise ConfigError(f"a configuration trades exactly one symbol, got {change.symbols!r}")
    if not change.allocation > 0:
        raise ConfigError(f"the allocation must be positive, got {change.allocation}")
    try:
        cls = strategy_class(change.strategy)
        params = cls.validate_params(change.params)
        wanted = cls(params).higher_timeframes()
        if wanted:
            HigherTimeframes(change.timeframe, wanted)
    except ParamError as exc:
        raise ConfigError(str(exc)) from exc
    except ValueError as exc:
        raise ConfigError(f"{change.strategy} cannot trade {change.timeframe} bars: {exc}") from exc
    return TradingConfig(
        change.configuration_id, change.action, change.strategy, params, change.exchange, change.symbols[0],
        change.timeframe, change.account_id, float(change.allocation),
        _settings(ExecutionConfig, change.execution, "execution"), _settings(RiskConfig, change.risk, "risk"),
        change.on_deactivate,
    )


def _event(kind: str, *parts: object, ts: int) -> dict[str, Any]:
    return {"event_id": stable_id(kind, *parts), "ts": ts, "schema_version": SCHEMA_VERSION}


def bar_of(record: Candle | Signal | Order) -> Bar:
    ts = record.ts if isinstance(record, Candle) else record.bar_ts
    return Bar(ts, record.open, record.high, record.low, record.close, record.volume)


def intent_dict(intent: Intent) -> dict[str, Any]:
    return {"action": intent.action, "side": intent.side, "order_type": intent.order_type, "price": intent.price,
            "stop_loss": intent.stop_loss, "take_profit": intent.take_profit, "valid_bars": intent.valid_bars,
            "reason": intent.reason}


def intent_of(values: dict[str, Any]) -> Intent:
    return Intent(values["action"], values["side"], values.get("order_type", "market"), values.get("price"),
                  values.get("stop_loss"), values.get("take_profit"), int(values.get("valid_bars", 1)),
                  values.get("reason", ""))


# ---------------------------------------------------------------------------------------------- the strategy


@dataclass
class StrategyStep:
    """What the strategy did with one candle for one configuration."""

    signal: Signal | None
    state: dict[str, Any] | None
    """The configuration's new state (None: forget it)."""
    error: str | None = None
    """A traceback when the strategy raised: the configuration is in error, the others go on."""


def _signal(config: TradingConfig, bar: Bar, intents: list[Intent], status: str) -> Signal:
    span = TIMEFRAMES[config.timeframe]
    return Signal(
        **_event("signal", config.configuration_id, bar.ts, ts=bar.ts + span), configuration_id=config.configuration_id,
        account_id=config.account_id, exchange=config.exchange, symbol=config.symbol, timeframe=config.timeframe,
        bar_ts=bar.ts, open=bar.open, high=bar.high, low=bar.low, close=bar.close, volume=bar.volume,
        intents=[intent_dict(i) for i in intents], status=status,
    )


def fresh_strategy_state(config: TradingConfig, history: list[Bar]) -> dict[str, Any]:
    """A new strategy warmed up on `history` (closed bars before the first live one; never traded)."""
    strategy = config.new_strategy()
    wanted = strategy.higher_timeframes()
    higher = HigherTimeframes(config.timeframe, wanted) if wanted else None
    for bar in history:
        _advance(strategy, higher, bar)
    return {"fingerprint": config.fingerprint, "strategy": strategy.to_state(),
            "higher": higher.to_state() if higher is not None else None,
            "last_bar": history[-1].ts if history else None, "phase": "running", "error": None}


def _advance(strategy: Strategy, higher: HigherTimeframes | None, bar: Bar) -> list[Intent]:
    if higher is not None:
        for timeframe, higher_bar in higher.update(bar):
            strategy.on_higher_bar(timeframe, higher_bar)
    return list(strategy.on_bar(bar))


def has_applied(config: TradingConfig, state: dict[str, Any] | None, ts: int) -> bool:
    """Whether `step_signal` would leave this state as it is for a candle at `ts`: applied up to it, or nothing
    left to do for a deactivated configuration."""
    if state is None or state["fingerprint"] != config.fingerprint:
        return not config.active and state is None
    return state["last_bar"] is not None and ts <= state["last_bar"]


def step_signal(config: TradingConfig, state: dict[str, Any] | None, candle: Candle, *, flat: bool) -> StrategyStep:
    """One closed candle of the configuration's instrument and timeframe (the caller filters).

    Active: the strategy decides. Deactivated: no new entries; with on_deactivate=close the first bar after
    deactivation asks to exit both sides; bars keep flowing (without intents) until the sub-account is `flat`, so
    the fill stage can still work the position, then the state is dropped.
    """
    bar = bar_of(candle)
    if state is None or state["fingerprint"] != config.fingerprint:
        if not config.active:
            return StrategyStep(None, state if state is not None and not flat else None)
        state = fresh_strategy_state(config, [])
    if state["last_bar"] is not None and bar.ts <= state["last_bar"]:
        return StrategyStep(None, state)  # redelivered: already applied
    state = {**state, "last_bar": bar.ts}
    if not config.active:
        if flat and state["phase"] != "running":
            return StrategyStep(_signal(config, bar, [], "stopped"), None)
        intents = [exit_("long", "deactivated"), exit_("short", "deactivated")] if (
            state["phase"] == "running" and config.on_deactivate == "close") else []
        return StrategyStep(_signal(config, bar, intents, "stopping"), {**state, "phase": "stopping"})
    if state["error"] is not None:
        return StrategyStep(None, state)
    strategy = strategy_class(config.strategy).from_state(state["strategy"])
    higher = HigherTimeframes.from_state(state["higher"]) if state["higher"] is not None else None
    try:
        intents = _advance(strategy, higher, bar)
    except Exception:  # a strategy bug puts only its own configuration in error
        error = traceback.format_exc()
        logger.error("strategy %s of configuration %s failed at %d:\n%s", config.strategy,
                     config.configuration_id, bar.ts, error)
        return StrategyStep(None, {**state, "error": error}, error)
    state = {**state, "phase": "running", "strategy": strategy.to_state(),
             "higher": higher.to_state() if higher is not None else None}
    return StrategyStep(_signal(config, bar, intents, "running"), state)


# ------------------------------------------------------------------------------------------------------ risk


def account_view(snapshot: PortfolioSnapshot | None, day_start_equity: float | None) -> AccountView | None:
    if snapshot is None:
        return None
    positions = tuple(
        OpenPosition(str(h.get("configuration_id", "")), instrument_key(h["exchange"], h["symbol"]),
                     abs(float(h["quantity"])) * float(h.get("mark_price") or h["avg_entry_price"]))
        for h in snapshot.holdings or []
    )
    return AccountView(snapshot.equity, day_start_equity or snapshot.equity, positions)


def step_orders(signal: Signal, config: TradingConfig, limits: RiskLimits, account: AccountView | None,
                sub_account_cash: float | None, halted: str | None) -> Order:
    """Risk-check the signal's intents and turn them into orders (exits always go through)."""
    orders: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    cash = config.allocation if sub_account_cash is None else sub_account_cash
    for index, values in enumerate(signal.intents):
        intent = intent_of(values)
        signal_id = stable_id("signal-intent", signal.event_id, index)
        quantity = 0.0
        if intent.action == "enter":
            price = intent.price if intent.price is not None else signal.close
            size = position_size(config.risk, cash=cash, equity=cash, price=price, stop_loss=intent.stop_loss,
                                 fee_rate=config.execution.fee_rate)
            reason = halted or size.refusal or entry_refusal(limits, account, config.configuration_id,
                                                               config.instrument, size.quantity * price)
            if reason:
                refused.append({"signal_id": signal_id, "reason": reason, "intent": values})
                continue
            quantity = size.quantity
        orders.append({"order_id": stable_id("order", config.configuration_id, signal.bar_ts, index),
                       "signal_id": signal_id, **{k: v for k, v in values.items() if k != "reason"},
                       "quantity": quantity})
    return Order(
        **_event("orders", config.configuration_id, signal.bar_ts, ts=signal.ts),
        configuration_id=config.configuration_id, account_id=config.account_id, exchange=config.exchange,
        symbol=config.symbol, timeframe=config.timeframe, bar_ts=signal.bar_ts, open=signal.open, high=signal.high,
        low=signal.low, close=signal.close, volume=signal.volume, orders=orders, refused=refused,
    )


# ------------------------------------------------------------------------------------------------- simulator


@dataclass
class FillStep:
    fills: list[Fill] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    snapshot: PortfolioSnapshot | None = None
    state: dict[str, Any] | None = None


def new_simulator(config: TradingConfig) -> ExecutionSimulator:
    return ExecutionSimulator(config.execution, config.risk, config.allocation, TIMEFRAMES[config.timeframe],
                              config.configuration_id)


@dataclass
class WorkedBar:
    """A sub-account that has worked a bar (`work_bar`) and has yet to place that bar's orders (`place_orders`)."""

    simulator: ExecutionSimulator | None
    """None: the sub-account had applied this bar already (a redelivery)."""
    bar: Bar
    realized_before: float
    fills: list[Fill] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)


def work_bar(config: TradingConfig, state: dict[str, Any] | None, bar: Bar) -> WorkedBar:
    """The orders placed at the previous close, then the bracket, against this bar: fills and closed trades that
    no decision on this bar can change, so they can be published before the strategy runs."""
    if state is None:
        state = {"simulator": new_simulator(config).to_state(), "last_bar": None, "realized": 0.0}
    if state["last_bar"] is not None and bar.ts <= state["last_bar"]:
        return WorkedBar(None, bar, state["realized"])
    simulator = ExecutionSimulator.from_state(state["simulator"])
    worked = WorkedBar(simulator, bar, state["realized"])
    _record_events(config, worked, simulator.process_bar(bar))
    return worked


def place_orders(config: TradingConfig, state: dict[str, Any] | None, worked: WorkedBar, batch: Order | None,
                 ts: int) -> FillStep:
    """Place the bar's orders (`batch`, None when the strategy decided nothing) in the worked sub-account and
    snapshot it at `ts`; the FillStep holds what placing filled at once (close mode) and the new state."""
    simulator = worked.simulator
    if simulator is None:
        return FillStep(state=state)
    placed = WorkedBar(simulator, worked.bar, worked.realized_before)
    if batch is not None and batch.orders:
        intents = [intent_of(order) for order in batch.orders]
        _record_events(config, placed, simulator.submit(intents, worked.bar, [o["order_id"] for o in batch.orders]))
    realized = worked.realized_before + sum(t.pnl for t in (*worked.trades, *placed.trades))
    return FillStep(placed.fills, placed.trades, config_snapshot(config, simulator, worked.bar, realized, ts),
                    {"simulator": simulator.to_state(), "last_bar": worked.bar.ts, "realized": realized})


def _record_events(config: TradingConfig, worked: WorkedBar, events: Events) -> None:
    common = {"configuration_id": config.configuration_id, "account_id": config.account_id,
              "exchange": config.exchange, "symbol": config.symbol}
    worked.fills += [Fill(event_id=f.fill_id, ts=f.ts, schema_version=SCHEMA_VERSION, order_id=f.order_id,
                          side=f.side, quantity=f.quantity, price=f.price, fee=f.fee, liquidity=f.liquidity,
                          reason=f.reason, **common)
                     for f in events.fills]
    worked.trades += [Trade(event_id=t.trade_id, ts=t.exit_ts, schema_version=SCHEMA_VERSION, side=t.side,
                            quantity=t.quantity, entry_ts=t.entry_ts, entry_price=t.entry_price,
                            exit_price=t.exit_price, pnl=t.pnl, fees=t.fees, exit_reason=t.exit_reason,
                            entry_order_id=t.entry_order_id, exit_order_id=t.exit_order_id, **common)
                      for t in events.trades]


def config_snapshot(config: TradingConfig, simulator: ExecutionSimulator, bar: Bar, realized: float,
                    ts: int) -> PortfolioSnapshot:
    position = simulator.position
    equity = simulator.equity(bar.close)
    holdings = []
    if position is not None:
        holdings.append({"configuration_id": config.configuration_id, "exchange": config.exchange,
                         "symbol": config.symbol, "quantity": position.signed_quantity,
                         "avg_entry_price": position.entry_price, "mark_price": bar.close,
                         "stop_loss": position.stop_loss, "take_profit": position.take_profit,
                         "opened_ts": position.entry_ts})
    unrealized = 0.0 if position is None else position.signed_quantity * (bar.close - position.entry_price)
    return PortfolioSnapshot(
        **_event("portfolio", config.account_id, config.configuration_id, ts, ts=ts), account_id=config.account_id,
        configuration_id=config.configuration_id, cash=simulator.cash, equity=equity, realized_pnl=realized,
        unrealized_pnl=unrealized,
        positions={config.instrument: position.signed_quantity} if position is not None else {},
        holdings=holdings,
    )


def is_flat(snapshot: PortfolioSnapshot | None) -> bool:
    return snapshot is None or not snapshot.positions


# ------------------------------------------------------------------------------------ the three stages on a bar


@dataclass
class BarStep:
    """What strategy, risk and simulator did with one closed candle for one configuration."""

    signal: Signal | None
    order: Order | None
    fills: FillStep
    strategy_state: dict[str, Any] | None
    """The strategy's new state (None: forget it); `fills.state` is the sub-account's (None: none yet)."""
    error: str | None = None


def takes_bar(config: TradingConfig, strategy_state: dict[str, Any] | None, ts: int) -> bool:
    """Whether `step_signal` decides on a candle at `ts` (a signal, unless the strategy raises on it). Only then
    does the configuration's sub-account work the bar."""
    if strategy_state is None or strategy_state["fingerprint"] != config.fingerprint:
        return config.active
    if strategy_state["last_bar"] is not None and ts <= strategy_state["last_bar"]:
        return False
    return not config.active or strategy_state["error"] is None


def start_bar(config: TradingConfig, strategy_state: dict[str, Any] | None, simulator_state: dict[str, Any] | None,
              candle: Candle) -> WorkedBar | None:
    """The first half of `step_bar`: the sub-account works the bar (None when the strategy does not take it). Its
    fills and trades depend on nothing the strategy decides on this bar, so they can go out before it runs."""
    if not takes_bar(config, strategy_state, candle.ts):
        return None
    return work_bar(config, simulator_state, bar_of(candle))


def finish_bar(config: TradingConfig, strategy_state: dict[str, Any] | None,
               simulator_state: dict[str, Any] | None, worked: WorkedBar | None, candle: Candle, limits: RiskLimits,
               account: AccountView | None, halted: str | None) -> BarStep:
    """The second half of `step_bar`: the strategy decides on the candle, risk turns its intents into orders sized
    from the sub-account's cash, and the worked sub-account places them. `fills` holds only what placing filled.

    Flatness and cash come from the sub-account's own state as it was before this bar, not from a portfolio
    view that lags it, so the result depends only on the inputs (the account-wide `account` view aside)."""
    simulator = simulator_state["simulator"] if simulator_state is not None else None
    flat = simulator is None or simulator["position"] is None
    strategy = step_signal(config, strategy_state, candle, flat=flat)
    if worked is None:
        return BarStep(None, None, FillStep(state=simulator_state), strategy.state, strategy.error)
    order = None if strategy.signal is None else step_orders(
        strategy.signal, config, limits, account, simulator["cash"] if simulator else None, halted)
    fills = place_orders(config, simulator_state, worked, order, candle.ts + TIMEFRAMES[config.timeframe])
    return BarStep(strategy.signal, order, fills, strategy.state, strategy.error)


def step_bar(config: TradingConfig, strategy_state: dict[str, Any] | None, simulator_state: dict[str, Any] | None,
             candle: Candle, limits: RiskLimits, account: AccountView | None, halted: str | None) -> BarStep:
    """One closed candle for one configuration, in the bar order of a backtest: the sub-account works the orders
    placed at the previous close and its bracket against the bar, the strategy decides on the bar, and its orders
    are placed for the next one. A strategy that raises places nothing; the bar it raised on is still worked."""
    worked = start_bar(config, strategy_state, simulator_state, candle)
    step = finish_bar(config, strategy_state, simulator_state, worked, candle, limits, account, halted)
    if worked is not None:
        step.fills = FillStep([*worked.fills, *step.fills.fills], [*worked.trades, *step.fills.trades],
                              step.fills.snapshot, step.fills.state)
    return step


# ------------------------------------------------------------------------------------------- track_portfolio


def account_snapshot(account_id: str, configs: dict[str, PortfolioSnapshot], ts: int) -> PortfolioSnapshot:
    """The account as the sum of its configurations' sub-accounts."""
    parts = [configs[key] for key in sorted(configs)]
    positions: dict[str, float] = {}
    for part in parts:
        for instrument, quantity in part.positions.items():
            positions[instrument] = positions.get(instrument, 0.0) + quantity
    return PortfolioSnapshot(
        **_event("portfolio", account_id, "", ts, ts=ts), account_id=account_id, configuration_id=None,
        cash=sum(p.cash for p in parts), equity=sum(p.equity for p in parts),
        realized_pnl=sum(p.realized_pnl for p in parts), unrealized_pnl=sum(p.unrealized_pnl for p in parts),
        positions={k: v for k, v in positions.items() if v != 0.0},
        holdings=[h for p in parts for h in p.holdings or []],
    )
