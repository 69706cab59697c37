"""ema_trend: a fast/slow exponential-moving-average trend follower with ATR-sized protective levels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.bars import Bar, BarSeries
from agents.indicators import ATR, EMA, atr, ema, shifted
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


class EmaTrend(Strategy):
    """Follow the trend of two EMAs of the close; protect each entry with a stop (and optional target) in ATRs.

    Rules, on each closed bar `t` (EMAs of the close, ATR = Wilder's ATR(atr_period)):

    - Up cross: `fast[t-1] < slow[t-1] and fast[t] > slow[t]` (strict on both bars, as sma_cross: touching or
      equal averages are no cross). Down cross: the mirror.
    - Long side (direction long/both): an up cross enters long with stop-loss `close - atr_stop * ATR` and
      take-profit `close + atr_target * ATR` (no take-profit when atr_target is 0); a down cross exits long.
    - Short side (direction short/both): the mirror image, a down cross enters short with stop-loss
      `close + atr_stop * ATR` and take-profit `close - atr_target * ATR`; an up cross exits short.
    - With direction both, a cross therefore exits one side and enters the other on the same bar (a reversal).
    - No intent at all until the ATR has a value (the first `atr_period` bars), so every entry has its stop.

    Why: the cross of a fast over a slow EMA is the classic trend signal; sizing the stop in ATRs keeps the risk
    per trade proportional to the instrument's current volatility.
    """

    name = "ema_trend"
    description = "Fast/slow EMA crossover trend follower with ATR stop-loss and optional ATR take-profit."
    parameters = {
        "fast": IntParam(12, 2, 400, help="bars of the fast EMA", search=(5, 30, 5)),
        "slow": IntParam(26, 3, 1000, help="bars of the slow EMA", search=(20, 100, 10)),
        "atr_period": IntParam(14, 2, 200, help="bars of the ATR", search=(7, 28, 7)),
        "atr_stop": FloatParam(2.0, 0.1, 20.0, step=0.5, help="stop-loss distance in ATRs", search=(1.0, 4.0)),
        "atr_target": FloatParam(0.0, 0.0, 50.0, step=1.0, help="take-profit distance in ATRs, 0 for none",
                                 search=(0.0, 6.0)),
        "direction": DIRECTION,
    }

    @classmethod
    def check_params(cls, values: Mapping[str, Any]) -> None:
        if values["fast"] >= values["slow"]:
            raise ParamError(f"fast ({values['fast']}) must be shorter than slow ({values['slow']})")

    def setup(self) -> None:
        self.fast = EMA(self.params["fast"])
        self.slow = EMA(self.params["slow"])
        self.atr = ATR(self.params["atr_period"])
        self.prev_fast = math.nan
        self.prev_slow = math.nan

    def warmup_bars(self) -> int:
        # the slow EMA has a value from bar slow-1, a cross needs the bar before too; the ATR from atr_period-1
        return max(int(self.params["slow"]), int(self.params["atr_period"]) - 1)

    def on_bar(self, bar: Bar) -> Sequence[Intent]:
        fast = self.fast.update(bar.close)
        slow = self.slow.update(bar.close)
        volatility = self.atr.update(bar.high, bar.low, bar.close)
        prev_fast, prev_slow = self.prev_fast, self.prev_slow
        self.prev_fast, self.prev_slow = fast, slow
        if math.isnan(volatility):
            return ()
        up = prev_fast < prev_slow and fast > slow
        down = prev_fast > prev_slow and fast < slow
        longs, shorts = sides(self.params["direction"])
        stop_atr, target_atr = self.params["atr_stop"], self.params["atr_target"]
        intents: list[Intent] = []
        if longs and down:
            intents.append(exit_("long", reason="fast EMA crossed below slow"))
        if shorts and up:
            intents.append(exit_("short", reason="fast EMA crossed above slow"))
        if longs and up:
            intents.append(enter(
                "long", stop_loss=bar.close - stop_atr * volatility,
                take_profit=bar.close + target_atr * volatility if target_atr > 0.0 else None,
                reason="fast EMA crossed above slow",
            ))
        if shorts and down:
            intents.append(enter(
                "short", stop_loss=bar.close + stop_atr * volatility,
                take_profit=bar.close - target_atr * volatility if target_atr > 0.0 else None,
                reason="fast EMA crossed below slow",
            ))
        return intents

    def signals(self, series: BarSeries) -> Signals:
        close = series.close
        fast = ema(close, self.params["fast"])
        slow = ema(close, self.params["slow"])
        volatility = atr(series.high, series.low, close, self.params["atr_period"])
        prev_fast, prev_slow = shifted(fast), shifted(slow)
        ready = ~np.isnan(volatility)
        up = ready & (prev_fast < prev_slow) & (fast > slow)
        down = ready & (prev_fast > prev_slow) & (fast < slow)
        longs, shorts = sides(self.params["direction"])
        stop_atr, target_atr = self.params["atr_stop"], self.params["atr_target"]
        out = Signals.empty(len(series))
        if longs:
            out.enter_long[:] = up
            out.exit_long[:] = down
            out.stop_loss[up] = (close - stop_atr * volatility)[up]
            if target_atr > 0.0:
                out.take_profit[up] = (close + target_atr * volatility)[up]
        if shorts:
            out.enter_short[:] = down
            out.exit_short[:] = up
            out.stop_loss[down] = (close + stop_atr * volatility)[down]
            if target_atr > 0.0:
                out.take_profit[down] = (close - target_atr * volatility)[down]
        return out
