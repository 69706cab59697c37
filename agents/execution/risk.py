"""Position sizing: how much an entry buys, from the account and the entry's stop distance.

Pure arithmetic, called by the execution simulator at the moment an entry fills (with the fill price), in
backtests and in paper trading alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from agents.state import Stateful

Sizing = Literal["all_in", "fixed_fraction", "risk_per_trade"]
SIZINGS: tuple[str, ...] = ("all_in", "fixed_fraction", "risk_per_trade")


@dataclass(frozen=True)
class RiskConfig(Stateful):
    """Sizing rule and limits.

    - `all_in`: all available cash (after the entry fee).
    - `fixed_fraction`: `fraction` of equity per entry.
    - `risk_per_trade`: lose `fraction` of equity if the stop-loss is hit (needs a stop-loss).
    Every rule is capped at `max_position_fraction` of equity and at the cash there is (no leverage), then rounded
    down to `lot_size`; an order below `min_notional` is refused.
    """

    sizing: Sizing = "all_in"
    fraction: float = 1.0
    max_position_fraction: float = 1.0
    lot_size: float = 1e-8
    min_notional: float = 0.0

    def __post_init__(self) -> None:
        if self.sizing not in SIZINGS:
            raise ValueError(f"unknown sizing {self.sizing!r}; expected one of {', '.join(SIZINGS)}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"sizing fraction must be in (0, 1], got {self.fraction}")
        if not 0 < self.max_position_fraction <= 1:
            raise ValueError(f"max_position_fraction must be in (0, 1], got {self.max_position_fraction}")
        if not self.lot_size > 0:
            raise ValueError(f"lot_size must be positive, got {self.lot_size}")
        if self.min_notional < 0:
            raise ValueError(f"min_notional must be >= 0, got {self.min_notional}")


@dataclass(frozen=True, slots=True)
class Size:
    """A sized entry: the quantity, or zero with the reason it was refused."""

    quantity: float
    refusal: str = ""


def position_size(
    config: RiskConfig, *, cash: float, equity: float, price: float, stop_loss: float | None, fee_rate: float
) -> Size:
    """Quantity to enter at `price`; the fee is paid from the same cash, so it is part of the unit cost."""
    if price <= 0 or cash <= 0 or equity <= 0:
        return Size(0.0, f"nothing to trade with (cash {cash:.8g}, equity {equity:.8g}, price {price:.8g})")
    unit_cost = price * (1 + fee_rate)
    if config.sizing == "all_in":
        wanted = cash / unit_cost
    elif config.sizing == "fixed_fraction":
        wanted = equity * config.fraction / unit_cost
    else:
        if stop_loss is None:
            return Size(0.0, "risk_per_trade sizing needs a stop-loss")
        distance = abs(price - stop_loss)
        if distance == 0:
            return Size(0.0, "the stop-loss is at the entry price")
        wanted = equity * config.fraction / distance
    quantity = min(wanted, equity * config.max_position_fraction / unit_cost, cash / unit_cost)
    units = math.floor(quantity / config.lot_size)
    quantity = units * config.lot_size
    if units <= 0:
        return Size(0.0, f"the size rounds to zero lots of {config.lot_size:g}")
    if quantity * price < config.min_notional:
        return Size(0.0, f"notional {quantity * price:.8g} is below the minimum {config.min_notional:g}")
    return Size(quantity)


@dataclass(frozen=True)
class RiskLimits(Stateful):
    """Account-wide limits on new entries (exits are never blocked).

    - at most `max_open_positions` positions in the account, and `max_positions_per_symbol` on one instrument;
    - the open notional plus the new entry's at most `max_exposure` times the account's equity;
    - no new entry once the account has lost `daily_loss_limit` of the equity it had at the start of the UTC day.
    """

    max_open_positions: int = 20
    max_positions_per_symbol: int = 5
    max_exposure: float = 1.0
    daily_loss_limit: float = 0.05

    def __post_init__(self) -> None:
        if self.max_open_positions < 1 or self.max_positions_per_symbol < 1:
            raise ValueError("position limits must be at least 1")
        if not self.max_exposure > 0:
            raise ValueError(f"max_exposure must be positive, got {self.max_exposure}")
        if not 0 < self.daily_loss_limit <= 1:
            raise ValueError(f"daily_loss_limit must be in (0, 1], got {self.daily_loss_limit}")


@dataclass(frozen=True)
class OpenPosition:
    configuration_id: str
    instrument: str
    notional: float


@dataclass(frozen=True)
class AccountView:
    """What the risk checks know of an account: its latest snapshot."""

    equity: float
    day_start_equity: float
    positions: tuple[OpenPosition, ...] = ()


def entry_refusal(limits: RiskLimits, account: AccountView | None, configuration_id: str, instrument: str,
                  notional: float) -> str | None:
    """Why a new entry must not be placed, or None. Without a snapshot yet, only the entry itself is checked."""
    if account is None:
        return None
    if account.day_start_equity > 0 and account.equity <= account.day_start_equity * (1 - limits.daily_loss_limit):
        loss = 1 - account.equity / account.day_start_equity
        return (f"daily loss limit: the account is down {loss:.2%} today (limit {limits.daily_loss_limit:.2%}); "
                "no new entries until tomorrow (UTC)")
    others = [p for p in account.positions if p.configuration_id != configuration_id]
    if len(others) >= limits.max_open_positions:
        return f"max open positions: the account holds {len(others)} (limit {limits.max_open_positions})"
    on_symbol = sum(1 for p in others if p.instrument == instrument)
    if on_symbol >= limits.max_positions_per_symbol:
        return f"max positions on {instrument}: {on_symbol} open (limit {limits.max_positions_per_symbol})"
    exposure = sum(p.notional for p in others) + notional
    if account.equity > 0 and exposure > limits.max_exposure * account.equity:
        return (f"max exposure: {exposure:,.2f} open with this entry against equity {account.equity:,.2f} "
                f"(limit {limits.max_exposure:g}x)")
    return None
