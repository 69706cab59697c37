"""rsi_bollinger: mean reversion from outside the Bollinger bands, confirmed by an RSI extreme."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.bars import Bar, BarSeries
from agents.indicators import RSI, SMA, RollingStd, rolling_std, rsi, sma
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


class RsiBollinger(Strategy):
    """Fade a close outside the Bollinger bands when the RSI agrees the move is stretched; exit at the mean.

    Rules, on each closed bar (middle band = SMA(bb_period) of the close, std = its population standard deviation,
    lower/upper band = `middle - k * std` / `middle + k * std`, RSI = Wilder's RSI(rsi_period) of the close):

    - Long side (direction long/both): enter long when `close < lower band and RSI < oversold`, stop-loss
      `close * (1 - stop_pct / 100)`, no take-profit; exit long when `close > middle band or RSI > overbought`.
    - Short side (direction short/both): enter short when `close > upper band and RSI > overbought`, stop-loss
      `close * (1 + stop_pct / 100)`; exit short when `close < middle band or RSI < oversold`.
    - Every comparison is strict: a close on a band or an RSI on a threshold does nothing.
    - No intent at all until both the bands and the RSI have values. An exit is stated on every bar its condition
      holds (the execution layer ignores it when flat); with direction both an entry on one side comes with the
      exit of the other (a reversal).

    Why: a close beyond k standard deviations with an RSI extreme is a stretched move that tends to revert to the
    mean, which is where the trade is taken off; the fixed percentage stop caps the loss when it keeps going.
    """

    name = "rsi_bollinger"
    description = "Bollinger-band mean reversion with RSI confirmation, exit at the middle band."
    parameters = {
        "bb_period": IntParam(20, 2, 500, help="bars of the Bollinger middle band and deviation", search=(10, 50, 5)),
        "k": FloatParam(2.0, 0.25, 6.0, step=0.25, help="band width in standard deviations", search=(1.5, 3.0)),
        "rsi_period": IntParam(14, 2, 200, help="bars of the RSI", search=(7, 21, 7)),
        "oversold": FloatParam(30.0, 1.0, 99.0, step=5.0, help="RSI below which a long may enter",
                               search=(20.0, 40.0)),
        "overbought": FloatParam(70.0, 1.0, 99.0, step=5.0, help="RSI above which a short may enter",
                                 search=(60.0, 80.0)),
        "stop_pct": FloatParam(3.0, 0.1, 50.0, step=0.5, help="stop-loss distance in percent of the close",
                               search=(1.0, 5.0)),
        "direction": DIRECTION,
    }

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        if values["oversold"] >= values["overbought"]:
            raise ParamError(
                f"oversold ({values['oversold']}) must be below overbought ({values['overbought']})"
            )

    def setup(self) -> None:
        self.middle = SMA(self.params["bb_period"])
        self.std = RollingStd(self.params["bb_period"])
        self.rsi = RSI(self.params["rsi_period"])

    def warmup_bars(self) -> int:
        # the bands have a value from bar bb_period-1, the RSI (one delta per bar) from bar rsi_period
        return max(int(self.params["bb_period"]) - 1, int(self.params["rsi_period"]))

    def on_bar(self, bar: Bar) -> Sequence[Intent]:
        close = bar.close
        middle = self.middle.update(close)
        std = self.std.update(close)
        strength = self.rsi.update(close)
        if math.isnan(std) or math.isnan(strength):
            return ()
        k = self.params["k"]
        oversold, overbought = self.params["oversold"], self.params["overbought"]
        stop_pct = self.params["stop_pct"]
        longs, shorts = sides(self.params["direction"])
        intents: list[Intent] = []
        if longs and (close > middle or strength > overbought):
            intents.append(exit_("long", reason="back above the middle band or RSI overbought"))
        if shorts and (close < middle or strength < oversold):
            intents.append(exit_("short", reason="back below the middle band or RSI oversold"))
        if longs and close < middle - k * std and strength < oversold:
            intents.append(enter("long", stop_loss=close * (1.0 - stop_pct / 100.0),
                                 reason="close below the lower band with RSI oversold"))
        if shorts and close > middle + k * std and strength > overbought:
            intents.append(enter("short", stop_loss=close * (1.0 + stop_pct / 100.0),
                                 reason="close above the upper band with RSI overbought"))
        return intents

    def signals(self, series: BarSeries) -> Signals:
        close = series.close
        period = self.params["bb_period"]
        middle = sma(close, period)
        std = rolling_std(close, period)
        strength = rsi(close, self.params["rsi_period"])
        ready = ~np.isnan(std) & ~np.isnan(strength)
        k = self.params["k"]
        oversold, overbought = self.params["oversold"], self.params["overbought"]
        stop_pct = self.params["stop_pct"]
        direction = self.params["direction"]
        out = Signals.empty(len(series))
        if direction != "short":
            entry = ready & (close < middle - k * std) & (strength < oversold)
            out.enter_long[:] = entry
            out.exit_long[:] = ready & ((close > middle) | (strength > overbought))
            out.stop_loss[entry] = (close * (1.0 - stop_pct / 100.0))[entry]
        if direction != "long":
            entry = ready & (close > middle + k * std) & (strength > overbought)
            out.enter_short[:] = entry
            out.exit_short[:] = ready & ((close < middle) | (strength < oversold))
            out.stop_loss[entry] = (close * (1.0 + stop_pct / 100.0))[entry]
        return out
