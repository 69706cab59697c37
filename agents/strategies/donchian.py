"""donchian_breakout: the Donchian channel (turtle) breakout, with a shorter exit channel and an ATR stop."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.bars import Bar, BarSeries
from agents.indicators import ATR, Highest, Lowest, atr, highest, lowest, shifted
from agents.strategies.base import (
    DIRECTION,
    FloatParam,
    Intent,
    IntParam,
    ParamError,
    Signals,
    Strategy,
    enter,
    exit_,
    sides,
)


class DonchianBreakout(Strategy):
    """Enter on a close beyond the channel of the previous bars, exit on a close beyond the shorter exit channel.

    Rules, on each closed bar `t`; the channels are over the PREVIOUS bars, bar `t` itself excluded (a bar cannot
    break out of a range that contains its own high or low):

    - entry high / low = highest high / lowest low of bars `t-entry_period .. t-1`; exit high / low = the same over
      the previous exit_period bars; ATR = Wilder's ATR(atr_period), bar `t` included.
    - Long side (direction long/both): enter long when `close > entry high`, stop-loss `close - atr_stop * ATR`,
      no take-profit; exit long when `close < exit low`.
    - Short side (direction short/both): enter short when `close < entry low`, stop-loss `close + atr_stop * ATR`;
      exit short when `close > exit high`.
    - Strict comparisons: a close equal to a channel edge does nothing.
    - No intent at all until both channels and the ATR have values. An exit is stated on every bar its condition
      holds (ignored when flat). Since exit_period <= entry_period, a long breakout also closes above the exit
      high, so with direction both it exits a short on the same bar (a reversal), and the mirror.

    Why: a close beyond the extreme of the last weeks is the oldest trend-following entry there is; the faster exit
    channel gives back less of the move than waiting for the opposite breakout, and the ATR stop bounds the loss
    of a false breakout in units of current volatility.
    """

    name = "donchian_breakout"
    description = "Donchian channel breakout with a shorter exit channel and an ATR stop-loss."
    parameters = {
        "entry_period": IntParam(20, 2, 500, help="bars of the entry channel", search=(10, 60, 5)),
        "exit_period": IntParam(10, 1, 500, help="bars of the exit channel (at most entry_period)",
                                search=(5, 30, 5)),
        "atr_period": IntParam(14, 2, 200, help="bars of the ATR", search=(7, 28, 7)),
        "atr_stop": FloatParam(2.0, 0.1, 20.0, step=0.5, help="stop-loss distance in ATRs", search=(1.0, 4.0)),
        "direction": DIRECTION,
    }

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        if values["exit_period"] > values["entry_period"]:
            raise ParamError(
                f"exit_period ({values['exit_period']}) must not be longer than entry_period "
                f"({values['entry_period']})"
            )

    def setup(self) -> None:
        entry, exit_period = self.params["entry_period"], self.params["exit_period"]
        self.entry_high = Highest(entry)
        self.entry_low = Lowest(entry)
        self.exit_high = Highest(exit_period)
        self.exit_low = Lowest(exit_period)
        self.atr = ATR(self.params["atr_period"])

    def warmup_bars(self) -> int:
        # the channels of the previous n bars have a value from bar n; the ATR from bar atr_period-1
        return max(int(self.params["entry_period"]), int(self.params["exit_period"]),
                   int(self.params["atr_period"]) - 1)

    def on_bar(self, bar: Bar) -> Sequence[Intent]:
        # the channels as they were before this bar, then this bar joins them
        entry_high, entry_low = self.entry_high.value, self.entry_low.value
        exit_high, exit_low = self.exit_high.value, self.exit_low.value
        self.entry_high.update(bar.high)
        self.entry_low.update(bar.low)
        self.exit_high.update(bar.high)
        self.exit_low.update(bar.low)
        volatility = self.atr.update(bar.high, bar.low, bar.close)
        if math.isnan(entry_high) or math.isnan(exit_high) or math.isnan(volatility):
            return ()
        close = bar.close
        stop_atr = self.params["atr_stop"]
        longs, shorts = sides(self.params["direction"])
        intents: list[Intent] = []
        if longs and close < exit_low:
            intents.append(exit_("long", reason="close below the exit channel"))
        if shorts and close > exit_high:
            intents.append(exit_("short", reason="close above the exit channel"))
        if longs and close > entry_high:
            intents.append(enter("long", stop_loss=close - stop_atr * volatility,
                                 reason="close above the entry channel"))
        if shorts and close < entry_low:
            intents.append(enter("short", stop_loss=close + stop_atr * volatility,
                                 reason="close below the entry channel"))
        return intents

    def signals(self, series: BarSeries) -> Signals:
        close = series.close
        entry, exit_period = self.params["entry_period"], self.params["exit_period"]
        entry_high = shifted(highest(series.high, entry))
        entry_low = shifted(lowest(series.low, entry))
        exit_high = shifted(highest(series.high, exit_period))
        exit_low = shifted(lowest(series.low, exit_period))
        volatility = atr(series.high, series.low, close, self.params["atr_period"])
        ready = ~np.isnan(entry_high) & ~np.isnan(exit_high) & ~np.isnan(volatility)
        stop_atr = self.params["atr_stop"]
        direction = self.params["direction"]
        out = Signals.empty(len(series))
        if direction != "short":
            breakout = ready & (close > entry_high)
            out.enter_long[:] = breakout
            out.exit_long[:] = ready & (close < exit_low)
            out.stop_loss[breakout] = (close - stop_atr * volatility)[breakout]
        if direction != "long":
            breakout = ready & (close < entry_low)
            out.enter_short[:] = breakout
            out.exit_short[:] = ready & (close > exit_high)
            out.stop_loss[breakout] = (close + stop_atr * volatility)[breakout]
        return out
