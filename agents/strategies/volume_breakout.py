"""VOLUME_BREAKOUT: a close out of the recent range on unusually high volume, traded with a fixed bracket."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from agents.bars import Bar, BarSeries
from agents.indicators import SMA, Highest, Lowest, highest, lowest, shifted, sma
from agents.strategies.base import DIRECTION, REWARD_RISK, FloatParam, Intent, IntParam, Signals, Strategy, enter


class VolumeBreakout(Strategy):
    """Enter on a close beyond the previous bars' range when the bar's volume confirms it; a bracket closes the trade.

    Rules, on each closed bar `t`; range and average volume are over the PREVIOUS bars, bar `t` excluded:

    - range high / low = highest high / lowest low of bars `t-range_period .. t-1`, height = high - low;
      average volume = SMA of the volume of bars `t-volume_period .. t-1`.
    - Volume confirms when `volume[t] > volume_k * average volume` (strict: exactly k times is not enough).
    - Long side (direction long/both): enter long when `close > range high` and the volume confirms; stop-loss
      `range high - stop_frac * height`, take-profit `close + rr * (close - stop-loss)`.
    - Short side (direction short/both): enter short when `close < range low` and the volume confirms; stop-loss
      `range low + stop_frac * height`, take-profit `close - rr * (stop-loss - close)`.
    - A close equal to a range edge does nothing. No signal exits: the stop-loss or the take-profit ends the trade.
    - No intent until the range and the average volume have values.

    The stop: stop_frac 1 puts it at the far side of the range (the breakout is disproved only when the whole range
    fails); the default 0.5 puts it in the middle of the range, because a breakout that falls back halfway into the
    range has failed already, and a full range height would often make the stop (and with it the target at rr
    times the risk) far wider than the move a breakout is traded for. The stop always lies inside or on the range,
    so it is below a long entry's close (above a short's) by at least the breakout distance.
    """

    name = "VOLUME_BREAKOUT"
    description = "Range breakout confirmed by volume, with a stop inside the range and a take-profit at rr x risk."
    parameters = {
        "range_period": IntParam(20, 2, 500, help="bars of the range", search=(10, 50, 5)),
        "volume_period": IntParam(20, 1, 500, help="bars of the average volume", search=(10, 50, 10)),
        "volume_k": FloatParam(1.5, 0.5, 20.0, step=0.25, help="volume must exceed this multiple of its average",
                               search=(1.0, 3.0)),
        "stop_frac": FloatParam(0.5, 0.1, 1.0, step=0.25, help="stop-loss depth into the range, 1 = far side",
                                search=(0.25, 1.0)),
        "rr": REWARD_RISK,
        "direction": DIRECTION,
    }

    def setup(self) -> None:
        period = self.params["range_period"]
        self.range_high = Highest(period)
        self.range_low = Lowest(period)
        self.volume_avg = SMA(self.params["volume_period"])

    def warmup_bars(self) -> int:
        # a window of the previous n bars has a value from bar n
        return max(int(self.params["range_period"]), int(self.params["volume_period"]))

    def on_bar(self, bar: Bar) -> Sequence[Intent]:
        # the range and average as they were before this bar, then this bar joins them
        high, low, average = self.range_high.value, self.range_low.value, self.volume_avg.value
        self.range_high.update(bar.high)
        self.range_low.update(bar.low)
        self.volume_avg.update(bar.volume)
        if math.isnan(high) or math.isnan(average):
            return ()
        if not bar.volume > self.params["volume_k"] * average:
            return ()
        close = bar.close
        frac, rr = self.params["stop_frac"], self.params["rr"]
        direction = self.params["direction"]
        if direction != "short" and close > high:
            stop = high - frac * (high - low)
            return (enter("long", stop_loss=stop, take_profit=close + rr * (close - stop),
                          reason="close above the range on high volume"),)
        if direction != "long" and close < low:
            stop = low + frac * (high - low)
            return (enter("short", stop_loss=stop, take_profit=close - rr * (stop - close),
                          reason="close below the range on high volume"),)
        return ()

    def signals(self, series: BarSeries) -> Signals:
        close = series.close
        period = self.params["range_period"]
        high = shifted(highest(series.high, period))
        low = shifted(lowest(series.low, period))
        average = shifted(sma(series.volume, self.params["volume_period"]))
        confirmed = ~np.isnan(high) & ~np.isnan(average) & (series.volume > self.params["volume_k"] * average)
        frac, rr = self.params["stop_frac"], self.params["rr"]
        direction = self.params["direction"]
        out = Signals.empty(len(series))
        if direction != "short":
            entry = confirmed & (close > high)
            stop = high - frac * (high - low)
            out.enter_long[:] = entry
            out.stop_loss[entry] = stop[entry]
            out.take_profit[entry] = (close + rr * (close - stop))[entry]
        if direction != "long":
            entry = confirmed & (close < low)
            stop = low + frac * (high - low)
            out.enter_short[:] = entry
            out.stop_loss[entry] = stop[entry]
            out.take_profit[entry] = (close - rr * (stop - close))[entry]
        return out
