"""The strategy interface: typed parameters that declare their own search space, closed bars in, intents out.

A strategy sees only closed bars, one at a time and in order (`on_bar`), plus the closed bars of the higher
timeframes it asks for (`on_higher_bar`, delivered before the base bar that closes them). It has no access to any
series, clock or future value, so look-ahead is impossible by construction. It keeps its own state (indicators,
levels) in instance attributes, which `to_state`/`from_state` dump and restore so an agent can keep it in a Table.

A strategy states what it wants, regardless of the position: `enter` long or short with protective levels, or
`exit` a side. The execution layer applies intents to the position: an entry while a position or entry order is
open is ignored (no pyramiding), an exit without a matching position is ignored. Returning an exit and an entry
on the same bar reverses the position at the next fill.

A strategy may also offer `signals()`: the same decisions for a whole series at once, computed with the
vectorised indicators. Fast paths use it; `tests/unit/test_strategy_parity.py` proves it equals the event path.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from agents.bars import Bar, BarSeries, BoolArray, FloatArray
from agents.state import Stateful

Side = Literal["long", "short"]
Action = Literal["enter", "exit"]
OrderType = Literal["market", "limit", "stop"]


class ParamError(ValueError):
    """A parameter that is unknown, of the wrong type or out of its range; the message names it."""


@dataclass(frozen=True)
class IntParam:
    """An integer parameter valid in `low..high`; optimisation searches `search` (low, high, step), by default
    the whole valid range by `step`."""

    default: int
    low: int
    high: int
    step: int = 1
    help: str = ""
    search: tuple[int, int, int] | None = None

    @property
    def space(self) -> tuple[int, int, int]:
        return self.search or (self.low, self.high, self.step)

    def validate(self, name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ParamError(f"parameter {name!r} must be an integer, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ParamError(f"parameter {name!r} must be an integer, got {value!r}") from None
        if not number.is_integer():
            raise ParamError(f"parameter {name!r} must be an integer, got {value!r}")
        result = int(number)
        if not self.low <= result <= self.high:
            raise ParamError(f"parameter {name!r} = {result} is outside {self.low}..{self.high}")
        return result

    def grid(self) -> list[int]:
        low, high, step = self.space
        return list(range(low, high + 1, step))


@dataclass(frozen=True)
class FloatParam:
    """A real parameter valid in `low..high`; optimisation searches `search` (low, high) by `step` when given,
    continuously (or on a log scale) if not."""

    default: float
    low: float
    high: float
    step: float | None = None
    log: bool = False
    help: str = ""
    search: tuple[float, float] | None = None

    @property
    def space(self) -> tuple[float, float]:
        return self.search or (self.low, self.high)

    def validate(self, name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ParamError(f"parameter {name!r} must be a number, got {value!r}")
        try:
            result = float(value)
        except ValueError:
            raise ParamError(f"parameter {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(result) or not self.low <= result <= self.high:
            raise ParamError(f"parameter {name!r} = {value} is outside {self.low}..{self.high}")
        return result

    def grid(self) -> list[float]:
        low, high = self.space
        if self.step is None:
            return [low, self.default, high] if low < self.default < high else [low, high]
        count = round((high - low) / self.step)
        return [round(low + i * self.step, 12) for i in range(count + 1)]


@dataclass(frozen=True)
class ChoiceParam:
    """One of a fixed set of values."""

    default: str
    choices: tuple[str, ...]
    help: str = ""

    def validate(self, name: str, value: object) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ParamError(f"parameter {name!r} must be one of {', '.join(self.choices)}, got {value!r}")
        return value

    def grid(self) -> list[str]:
        return list(self.choices)


Param = IntParam | FloatParam | ChoiceParam

DIRECTION = ChoiceParam("long", ("long", "short", "both"), help="which sides to trade")
"""The `direction` parameter of strategies that can trade either side."""
REWARD_RISK = FloatParam(2.0, 0.5, 20.0, step=0.5, help="take-profit distance in multiples of the risk",
                         search=(1.0, 4.0))
"""The `rr` parameter of strategies whose take-profit is a multiple of the stop distance."""


def sides(direction: str) -> tuple[bool, bool]:
    """(trades longs, trades shorts) for a `direction` value."""
    return direction != "short", direction != "long"


@dataclass(frozen=True, slots=True)
class Intent:
    """What a strategy wants after a closed bar. Prices are absolute; `price` is the limit or stop price."""

    action: Action
    side: Side
    order_type: OrderType = "market"
    price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    valid_bars: int = 1
    reason: str = ""


def enter(side: Side, *, stop_loss: float | None = None, take_profit: float | None = None, reason: str = "",
          order_type: OrderType = "market", price: float | None = None, valid_bars: int = 1) -> Intent:
    return Intent("enter", side, order_type, price, stop_loss, take_profit, valid_bars, reason)


def exit_(side: Side, reason: str = "") -> Intent:
    return Intent("exit", side, reason=reason)


@dataclass(frozen=True)
class Signals:
    """The vectorised form of a strategy's intents over a series: market entries and exits per bar.

    `stop_loss`/`take_profit` hold the levels of the entry on that bar (NaN when none). On one bar, exits come
    before an entry, as in the event path.
    """

    enter_long: BoolArray
    exit_long: BoolArray
    enter_short: BoolArray
    exit_short: BoolArray
    stop_loss: FloatArray
    take_profit: FloatArray

    @classmethod
    def empty(cls, n: int) -> Signals:
        no = np.zeros(n, dtype=bool)
        nan = np.full(n, np.nan)
        return cls(no, no.copy(), no.copy(), no.copy(), nan, nan.copy())

    def intents_at(self, i: int) -> list[Intent]:
        """The event-path intents bar `i` stands for."""
        out: list[Intent] = []
        if self.exit_long[i]:
            out.append(exit_("long"))
        if self.exit_short[i]:
            out.append(exit_("short"))
        sides: tuple[tuple[Side, BoolArray], ...] = (("long", self.enter_long), ("short", self.enter_short))
        for side, flags in sides:
            if flags[i]:
                sl, tp = float(self.stop_loss[i]), float(self.take_profit[i])
                out.append(enter(side, stop_loss=None if math.isnan(sl) else sl,
                                 take_profit=None if math.isnan(tp) else tp))
        return out


class Strategy(Stateful):
    """Base of every strategy. Subclasses set `name` and `parameters` and implement `on_bar`."""

    name: ClassVar[str]
    parameters: ClassVar[Mapping[str, Param]]
    description: ClassVar[str] = ""

    def __init__(self, params: Mapping[str, object] | None = None) -> None:
        self.params: dict[str, Any] = self.validate_params(params or {})
        self.setup()

    @classmethod
    def validate_params(cls, raw: Mapping[str, object]) -> dict[str, Any]:
        """Defaults filled in, every value checked against its declaration, then `check_params`."""
        unknown = sorted(set(raw) - set(cls.parameters))
        if unknown:
            raise ParamError(
                f"{cls.name} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are {', '.join(cls.parameters)}"
            )
        values = {
            name: spec.validate(name, raw[name]) if name in raw else spec.default
            for name, spec in cls.parameters.items()
        }
        cls.check_params(values)
        return values

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        """Constraints between parameters (e.g. fast < slow); raise `ParamError`."""

    @abstractmethod
    def setup(self) -> None:
        """Create the indicators and state for `self.params`."""

    def higher_timeframes(self) -> tuple[str, ...]:
        """Higher timeframes whose closed bars this strategy wants through `on_higher_bar`."""
        return ()

    def warmup_bars(self) -> int:
        """Bars the strategy needs before its first possible intent (walk-forward tests feed these first)."""
        return 0

    def on_higher_bar(self, timeframe: str, bar: Bar) -> None:
        """A bar of a higher timeframe closed; it arrives before the base bar that closed it."""

    @abstractmethod
    def on_bar(self, bar: Bar) -> Sequence[Intent]:
        """A base bar closed: return the intents (possibly none)."""

    def signals(self, series: BarSeries) -> Signals | None:
        """The vectorised fast path over a whole series, or None when the strategy has none."""
        return None
