"""sma_cross: the reference strategy, a long-only crossover of two simple moving averages of the close."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from agents.bars import Bar, BarSeries
from agents.indicators import SMA, shifted, sma
from agents.strategies.base import Intent, IntParam, ParamError, Signals, Strategy, enter, exit_


class SmaCross(Strategy):
    """Enter long when the fast SMA crosses above the slow one, exit when it crosses back below.

    A cross needs strict inequalities on both bars: `fast[t-1] < slow[t-1] and fast[t] > slow[t]` (and the
    mirror for the exit), the definition backtesting.py's `crossover` uses, so the reference comparison is exact.
    """

    name = "sma_cross"
    description = "Long-only fast/slow simple-moving-average crossover (the reference strategy)."
    parameters = {
        "fast": IntParam(10, 2, 400, help="bars of the fast SMA", search=(5, 50, 5)),
        "slow": IntParam(30, 3, 1000, help="bars of the slow SMA", search=(20, 200, 10)),
    }

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        if values["fast"] >= values["slow"]:
            raise ParamError(f"fast ({values['fast']}) must be shorter than slow ({values['slow']})")

    def setup(self) -> None:
        self.fast = SMA(self.params["fast"])
        self.slow = SMA(self.params["slow"])
        self.prev_fast = math.nan
        self.prev_slow = math.nan

    def warmup_bars(self) -> int:
        return int(self.params["slow"])

    def on_bar(self, bar: Bar) -> Sequence[Intent]:
        fast = self.fast.update(bar.close)
        slow = self.slow.update(bar.close)
        prev_fast, prev_slow = self.prev_fast, self.prev_slow
        self.prev_fast, self.prev_slow = fast, slow
        if prev_fast < prev_slow and fast > slow:
            return (enter("long", reason="fast SMA crossed above slow"),)
        if prev_fast > prev_slow and fast < slow:
            return (exit_("long", reason="fast SMA crossed below slow"),)
        return ()

    def signals(self, series: BarSeries) -> Signals:
        fast = sma(series.close, self.params["fast"])
        slow = sma(series.close, self.params["slow"])
        prev_fast, prev_slow = shifted(fast), shifted(slow)
        out = Signals.empty(len(series))
        out.enter_long[:] = (prev_fast < prev_slow) & (fast > slow)
        out.exit_long[:] = (prev_fast > prev_slow) & (fast < slow)
        return out
