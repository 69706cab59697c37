"""The execution simulator: turns intents into fills, positions and closed trades, bar by bar.

One simulator follows one configuration on one instrument. Backtests, fast paths and the paper-trading agents all
drive this same class, so fees, slippage, order types, brackets and sizing behave identically everywhere.

Per bar, in time order:

1. `process_bar(bar)` — what happens *during* the bar. Orders placed at the previous close are worked first,
   exits before entries: market orders fill at the open; a limit entry fills when the bar trades through its price
   (at that price, or at the open if the bar opens beyond it); a stop entry triggers when the bar reaches its price
   (at that price, or at the open if it gaps through). Unfilled limit/stop entries stay working for `valid_bars`
   bars. Then the open position's OCO bracket (stop-loss + take-profit) is checked against the bar:
   - a bar that opens beyond a level exits at the open (a gap fills at the market, not at the level);
   - when the bar touches only one level, that side fills at its level and the other is cancelled;
   - when it touches both, the order inside the bar is unknown: `intrabar="conservative"` assumes the stop-loss
     came first; `intrabar="lower_timeframe"` walks the lower-timeframe bars given for that bar and takes the level
     touched first, falling back to the stop-loss when both are touched inside the same lower bar;
   - a position opened inside the bar (by a limit or stop entry) is only checked against its stop-loss in that
     bar, as the worst case: the take-profit could only be credited with knowledge of the path.
2. `submit(intents, bar)` — at the bar's close the strategy's intents become orders for the next bar
   (`fill="next_open"`), or market intents fill at once at the close (`fill="close"`).

Costs: every fill pays `fee_rate` of its notional (`maker_fee_rate` for limit fills: limit entries and
take-profits). Market and stop fills also pay `slippage_bps` against the trader; limit fills get their price.

Entries are sized by `agents.execution.risk.position_size` with the fill price. An entry whose stop-loss or
take-profit is already on the wrong side of its fill price (the market gapped past it) is refused rather than
opened and closed at a loss. Every refusal is reported with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from agents.bars import Bar
from agents.execution.risk import RiskConfig, position_size
from agents.state import Stateful
from agents.strategies.base import Intent, OrderType, Side
from streams.keys import stable_id

FillMode = Literal["next_open", "close"]
Intrabar = Literal["conservative", "lower_timeframe"]
Liquidity = Literal["maker", "taker"]
LowerBars = Callable[[], list[Bar]]


@dataclass(frozen=True)
class ExecutionConfig(Stateful):
    """Costs and fill rules of the simulated venue."""

    fee_rate: float = 0.001
    maker_fee_rate: float | None = None
    slippage_bps: float = 0.0
    fill: FillMode = "next_open"
    intrabar: Intrabar = "conservative"
    allow_short: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.fee_rate < 0.1:
            raise ValueError(f"fee rate must be in [0, 0.1), got {self.fee_rate}")
        if self.maker_fee_rate is not None and not -0.01 < self.maker_fee_rate < 0.1:
            raise ValueError(f"maker fee rate must be in (-0.01, 0.1), got {self.maker_fee_rate}")
        if not 0 <= self.slippage_bps < 1000:
            raise ValueError(f"slippage must be in [0, 1000) bps, got {self.slippage_bps}")
        if self.fill not in ("next_open", "close"):
            raise ValueError(f"fill must be next_open or close, got {self.fill!r}")
        if self.intrabar not in ("conservative", "lower_timeframe"):
            raise ValueError(f"intrabar must be conservative or lower_timeframe, got {self.intrabar!r}")

    @property
    def maker_rate(self) -> float:
        return self.fee_rate if self.maker_fee_rate is None else self.maker_fee_rate


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. `side` is buy or sell; `ts` is the bar open for fills during a bar, its close otherwise."""

    fill_id: str
    order_id: str
    ts: int
    side: Literal["buy", "sell"]
    quantity: float
    price: float
    fee: float
    liquidity: Liquidity
    reason: str


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed round trip; `pnl` is net of both fees."""

    trade_id: str
    side: Side
    quantity: float
    entry_ts: int
    entry_price: float
    exit_ts: int
    exit_price: float
    pnl: float
    fees: float
    exit_reason: str
    entry_order_id: str
    exit_order_id: str

    @property
    def return_pct(self) -> float:
        """Net return on the entry notional, in percent."""
        return 100.0 * self.pnl / (self.quantity * self.entry_price)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An intent or order that did not become a position, and why."""

    ts: int
    order_id: str
    reason: str


@dataclass
class Events:
    """What one call produced."""

    fills: list[Fill] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def extend(self, other: Events) -> None:
        self.fills += other.fills
        self.trades += other.trades
        self.rejections += other.rejections


class Order(Stateful):
    """A working order: an entry (any type) or a market exit."""

    def __init__(self, order_id: str, placed_ts: int, intent: Intent) -> None:
        self.order_id = order_id
        self.placed_ts = placed_ts
        self.action = intent.action
        self.side: Side = intent.side
        self.order_type: OrderType = intent.order_type
        self.price = intent.price
        self.stop_loss = intent.stop_loss
        self.take_profit = intent.take_profit
        self.bars_left = max(1, intent.valid_bars)


class Position(Stateful):
    """The open position with its bracket."""

    def __init__(self, order: Order, ts: int, quantity: float, price: float, fee: float, mid_bar: bool) -> None:
        self.side: Side = order.side
        self.quantity = quantity
        self.entry_price = price
        self.entry_ts = ts
        self.entry_fee = fee
        self.entry_order_id = order.order_id
        self.stop_loss = order.stop_loss
        self.take_profit = order.take_profit
        self.opened_mid_bar = mid_bar

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "long" else -self.quantity


class ExecutionSimulator(Stateful):
    """Cash, one position and working orders of one configuration on one instrument; see the module docstring."""

    def __init__(self, config: ExecutionConfig, risk: RiskConfig, cash: float, bar_ms: int, scope: str) -> None:
        if not cash > 0:
            raise ValueError(f"starting cash must be positive, got {cash}")
        self.config = config
        self.risk = risk
        self.cash = float(cash)
        self.bar_ms = bar_ms
        self.scope = scope
        self.sequence = 0
        self.position: Position | None = None
        self.orders: list[Order] = []

    # ------------------------------------------------------------------------------------------- inspection

    def equity(self, price: float) -> float:
        """Cash plus the position marked at `price`."""
        if self.position is None:
            return self.cash
        return self.cash + self.position.signed_quantity * price

    @property
    def has_work(self) -> bool:
        """True when the next bar can change something even without new intents (orders or a bracket)."""
        return bool(self.orders)

    # --------------------------------------------------------------------------------------------- the bar

    def process_bar(self, bar: Bar, lower: LowerBars | None = None) -> Events:
        """Work the orders placed at the previous close, then the bracket, against `bar` (see module docstring).

        `lower` returns the lower-timeframe bars inside `bar`; it is called only when they decide something.
        """
        events = Events()
        if self.orders:
            self._work_orders(bar, events)
        position = self.position
        if position is not None and (position.stop_loss is not None or position.take_profit is not None):
            self._check_bracket(position, bar, lower, events)
        return events

    def submit(self, intents: list[Intent] | tuple[Intent, ...], bar: Bar,
               order_ids: list[str] | None = None) -> Events:
        """Turn the intents of the bar that just closed into orders (or immediate fills in close mode).

        `order_ids`, one per intent, name the orders (paper trading names them upstream); by default they come from
        this simulator's own sequence.
        """
        events = Events()
        close_ts = bar.ts + self.bar_ms
        for index, intent in enumerate(intents):
            given = order_ids[index] if order_ids is not None else None
            if intent.action == "exit":
                position = self.position
                if position is None or position.side != intent.side or self._exit_pending():
                    continue
                order = Order(given or self._next_id(close_ts), close_ts, intent)
                if self.config.fill == "close":
                    price = self._slipped(bar.close, buying=intent.side == "short")
                    self._close(order.order_id, close_ts, price, "taker", "signal", events)
                else:
                    self.orders.append(order)
                continue
            if (self.position is not None and not self._exit_pending()) or self._entry_pending():
                continue
            if intent.side == "short" and not self.config.allow_short:
                events.rejections.append(Rejection(close_ts, "", "short entries are disabled"))
                continue
            if intent.order_type != "market" and (intent.price is None or not intent.price > 0):
                events.rejections.append(Rejection(close_ts, "", f"a {intent.order_type} entry needs a price"))
                continue
            order = Order(given or self._next_id(close_ts), close_ts, intent)
            if self.config.fill == "close" and intent.order_type == "market" and self.position is None:
                price = self._slipped(bar.close, buying=order.side == "long")
                self._open(order, close_ts, price, "taker", False, events)
            else:
                self.orders.append(order)
        return events

    def close_all(self, bar: Bar, reason: str = "end_of_data") -> Events:
        """Cancel working orders and close the position at the bar's close (end of a backtest, flatten)."""
        events = Events()
        self.orders = []
        if self.position is not None:
            price = self._slipped(bar.close, buying=self.position.side == "short")
            self._close(self._next_id(bar.ts + self.bar_ms), bar.ts + self.bar_ms, price, "taker", reason, events)
        return events

    # ------------------------------------------------------------------------------------------- internals

    def _next_id(self, ts: int) -> str:
        self.sequence += 1
        return stable_id("order", self.scope, ts, self.sequence)

    def _exit_pending(self) -> bool:
        return any(order.action == "exit" for order in self.orders)

    def _entry_pending(self) -> bool:
        return any(order.action == "enter" for order in self.orders)

    def _slipped(self, price: float, *, buying: bool) -> float:
        """`price` moved against the trader by the slippage; `buying` is the direction of this fill."""
        slip = self.config.slippage_bps / 10_000.0
        if slip == 0.0:
            return price
        return price * (1.0 + slip) if buying else price * (1.0 - slip)

    def _work_orders(self, bar: Bar, events: Events) -> None:
        working, self.orders = self.orders, []
        working.sort(key=lambda order: order.action != "exit")
        for order in working:
            if order.action == "exit":
                if self.position is not None and self.position.side == order.side:
                    buying = order.side == "short"
                    self._close(order.order_id, bar.ts, self._slipped(bar.open, buying=buying), "taker", "signal",
                                events)
                continue
            if self.position is not None:
                continue
            fill = self._entry_price(order, bar)
            if fill is None:
                order.bars_left -= 1
                if order.bars_left > 0:
                    self.orders.append(order)
                else:
                    events.rejections.append(Rejection(bar.ts, order.order_id, f"{order.order_type} entry expired"))
                continue
            price, liquidity = fill
            self._open(order, bar.ts, price, liquidity, order.order_type != "market", events)

    def _entry_price(self, order: Order, bar: Bar) -> tuple[float, Liquidity] | None:
        long = order.side == "long"
        if order.order_type == "market":
            return self._slipped(bar.open, buying=long), "taker"
        level = order.price
        assert level is not None
        if order.order_type == "limit":
            if long and bar.low <= level:
                return min(bar.open, level), "maker"
            if not long and bar.high >= level:
                return max(bar.open, level), "maker"
            return None
        if long and bar.high >= level:
            return self._slipped(max(bar.open, level), buying=True), "taker"
        if not long and bar.low <= level:
            return self._slipped(min(bar.open, level), buying=False), "taker"
        return None

    def _open(self, order: Order, ts: int, price: float, liquidity: Liquidity, mid_bar: bool, events: Events) -> None:
        long = order.side == "long"
        sl, tp = order.stop_loss, order.take_profit
        if (sl is not None and (sl >= price if long else sl <= price)) or (
            tp is not None and (tp <= price if long else tp >= price)
        ):
            events.rejections.append(Rejection(
                ts, order.order_id,
                f"bracket on the wrong side of the fill price {price:.8g} (stop-loss {sl}, take-profit {tp})",
            ))
            return
        rate = self.config.maker_rate if liquidity == "maker" else self.config.fee_rate
        size = position_size(self.risk, cash=self.cash, equity=self.equity(price), price=price, stop_loss=sl,
                             fee_rate=rate)
        if size.quantity <= 0:
            events.rejections.append(Rejection(ts, order.order_id, size.refusal))
            return
        quantity = size.quantity
        fee = quantity * price * rate
        if long:
            self.cash -= quantity * price + fee
        else:
            self.cash += quantity * price - fee
        self.position = Position(order, ts, quantity, price, fee, mid_bar)
        events.fills.append(Fill(stable_id("fill", order.order_id), order.order_id, ts, "buy" if long else "sell",
                                 quantity, price, fee, liquidity, "entry"))

    def _close(self, order_id: str, ts: int, price: float, liquidity: Liquidity, reason: str, events: Events) -> None:
        position = self.position
        assert position is not None
        rate = self.config.maker_rate if liquidity == "maker" else self.config.fee_rate
        quantity = position.quantity
        fee = quantity * price * rate
        if position.side == "long":
            self.cash += quantity * price - fee
            gross = quantity * (price - position.entry_price)
        else:
            self.cash -= quantity * price + fee
            gross = quantity * (position.entry_price - price)
        self.position = None
        self.orders = [order for order in self.orders if order.action != "exit"]
        events.fills.append(Fill(stable_id("fill", order_id), order_id, ts,
                                 "sell" if position.side == "long" else "buy", quantity, price, fee, liquidity, reason))
        events.trades.append(Trade(
            stable_id("trade", self.scope, position.entry_order_id), position.side, quantity, position.entry_ts,
            position.entry_price, ts, price, gross - position.entry_fee - fee, position.entry_fee + fee, reason,
            position.entry_order_id, order_id,
        ))

    def _check_bracket(self, position: Position, bar: Bar, lower: LowerBars | None, events: Events) -> None:
        long = position.side == "long"
        sl, tp = position.stop_loss, position.take_profit
        if position.opened_mid_bar:
            position.opened_mid_bar = False
            if sl is not None and (bar.low <= sl if long else bar.high >= sl):
                self._exit_at_level(sl, "stop_loss", bar, events)
            return
        if sl is not None and (bar.open <= sl if long else bar.open >= sl):
            self._close(self._next_id(bar.ts), bar.ts, self._slipped(bar.open, buying=not long),
                        "taker", "stop_loss", events)
            return
        if tp is not None and (bar.open >= tp if long else bar.open <= tp):
            self._close(self._next_id(bar.ts), bar.ts, bar.open, "maker", "take_profit", events)
            return
        first = self._first_touched(position, [bar])
        if first == "both":
            first = "stop_loss"
            if self.config.intrabar == "lower_timeframe" and lower is not None:
                decided = self._first_touched(position, lower())
                if decided == "take_profit":
                    first = decided
        if first == "stop_loss":
            assert sl is not None
            self._exit_at_level(sl, "stop_loss", bar, events)
        elif first == "take_profit":
            assert tp is not None
            self._exit_at_level(tp, "take_profit", bar, events)

    @staticmethod
    def _first_touched(position: Position, bars: list[Bar]) -> str | None:
        """Which level the first bar that touches any level touches: stop_loss, take_profit or both."""
        long = position.side == "long"
        sl, tp = position.stop_loss, position.take_profit
        for bar in bars:
            sl_hit = sl is not None and (bar.low <= sl if long else bar.high >= sl)
            tp_hit = tp is not None and (bar.high >= tp if long else bar.low <= tp)
            if sl_hit and tp_hit:
                return "both"
            if sl_hit:
                return "stop_loss"
            if tp_hit:
                return "take_profit"
        return None

    def _exit_at_level(self, level: float, reason: str, bar: Bar, events: Events) -> None:
        position = self.position
        assert position is not None
        if reason == "stop_loss":
            price = self._slipped(level, buying=position.side == "short")
            self._close(self._next_id(bar.ts), bar.ts, price, "taker", reason, events)
        else:
            self._close(self._next_id(bar.ts), bar.ts, level, "maker", reason, events)

