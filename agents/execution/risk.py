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
