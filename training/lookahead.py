"""Look-ahead checks for vectorised fast paths.

The event path cannot look ahead: a strategy receives one closed bar at a time and holds no reference to any
series. A vectorised `signals()` receives the whole series, so a bug (a negative shift, a centred window, a
normalisation over the full column) could use the future. `check_no_lookahead` catches that the only way that is
sure: the decisions for the first k bars must not change when the bars after k are removed or replaced.
"""

from __future__ import annotations

import logging

import numpy as np

from agents.bars import BarSeries
from agents.strategies.base import Strategy

logger = logging.getLogger(__name__)

CUTS = 5


class LookAheadError(AssertionError):
    """A strategy's signals for past bars depend on later bars."""


FIELDS = ("enter_long", "exit_long", "enter_short", "exit_short", "stop_loss", "take_profit")


def _first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    same = a == b
    if a.dtype.kind == "f":
        same |= np.isnan(a) & np.isnan(b)
    differing = np.flatnonzero(~same)
    return int(differing[0]) if len(differing) else None


def check_no_lookahead(strategy: Strategy, series: BarSeries, cuts: int = CUTS) -> None:
    """Raise `LookAheadError` if the signals on any prefix of `series` differ from the full run's."""
    whole = strategy.signals(series)
    if whole is None:
        return
    cls, params = type(strategy), strategy.params
    for cut in np.linspace(len(series) // (cuts + 1), len(series) - 1, cuts).astype(int).tolist():
        prefix = cls(params).signals(series.slice(0, cut))
        assert prefix is not None
        for name in FIELDS:
            first = _first_difference(getattr(whole, name)[:cut], getattr(prefix, name))
            if first is not None:
                raise LookAheadError(
                    f"{strategy.name} {params}: {name} at bar {first} ({int(series.ts[first])}) changes when the "
                    f"bars from {cut} on are removed: its vectorised signals look ahead"
                )
