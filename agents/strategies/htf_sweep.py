"""HTF_SWEEP: a run through the high or low of the last closed higher-timeframe bar that is quickly reclaimed."""

from __future__ import annotations

import math
from collections.abc import Sequence

from agents.bars import Bar, BarSeries, higher_bars
from agents.state import Stateful
from agents.strategies.base import (
    DIRECTION,
    REWARD_RISK,
    ChoiceParam,
    FloatParam,
    Intent,
    IntParam,
    Side,
    Signals,
    Strategy,
    enter,
)


class SweepSetup(Stateful):
    """One side of HTF_SWEEP for the current level: waiting for a sweep, counting the bars since it, or spent.

    `long` watches a level low (swept by a low below it, reclaimed by a close above it); otherwise a level high.
    """

    def __init__(self, long: bool, reclaim_bars: int) -> None:
        self.long = long
        self.reclaim_bars = reclaim_bars
        self.level = math.nan
        self.count = 0  # bars since the sweep, the sweep bar being 1; 0 while no sweep is open
        self.extreme = math.nan  # lowest low (highest high) since the sweep
        self.spent = False

    def reset(self, level: float) -> None:
        """A new higher bar: a fresh level, nothing swept, tradable again."""
        self.level = level
        self.count = 0
        self.extreme = math.nan
        self.spent = False

    def spend(self) -> None:
        self.count = 0
        self.extreme = math.nan
        self.spent = True

    def advance(self, low: float, high: float, close: float) -> float | None:
        """Take one base bar; the extreme since the sweep when this bar reclaims the level (the level is then
        spent), else None."""
        if self.spent or math.isnan(self.level):
            return None
        through = low if self.long else high
        if self.count == 0:
            if not (through < self.level if self.long else through > self.level):
                return None
            self.extreme = through
        else:
            self.extreme = min(self.extreme, through) if self.long else max(self.extreme, through)
        self.count += 1
        if (close > self.level) if self.long else (close < self.level):
            extreme = self.extreme
            self.spend()
            return extreme
        if self.count >= self.reclaim_bars:
            self.spend()  # accepted beyond the level: it is no longer a level to fade
        return None


class HtfSweep(Strategy):
    """Trade the failure of a run through the last closed higher-timeframe bar's high or low.

    Levels: the high and the low of the last CLOSED `htf` bar (from `on_higher_bar`; the fast path learns the
    same bars, at the same base bars, from `agents.bars.higher_bars`). Rules for the low (long side, direction
    long/both); the high (short side, direction short/both) is the exact mirror:

    - Sweep: a base bar whose low is strictly below the level low (a low equal to the level is no sweep). The
      sweep bar is bar 1 of the reclaim window.
    - Reclaim: within bars 1..reclaim_bars, a bar that CLOSES strictly above the level low (a close on the level
      is no reclaim). The sweep bar itself may reclaim (a wick through the level). The reclaim enters long at
      market with stop-loss `lowest low from the sweep bar through the reclaim bar * (1 - buffer_pct / 100)` and
      take-profit `close + rr * (close - stop-loss)`. Short: stop-loss `highest high * (1 + buffer_pct / 100)`,
      take-profit `close - rr * (stop-loss - close)`.
    - No reclaim by the close of bar reclaim_bars: the setup expires and the level is spent (price was accepted
      beyond it; a later run through the same level starts no new setup).
    - Each level gives at most one setup and so at most one trade: after a reclaim or an expiry it is spent.
    - A new higher bar replaces both levels and clears both setups (open sweeps are dropped, spent levels are
      tradable again). It is delivered before the base bar that closes it, so that base bar is judged against the
      new levels, which contain its own range: it cannot sweep them.
    - The two sides are independent: one bar may sweep both levels (an outside bar), and a sweep of one may be
      open while the other is swept. If both sides reclaim on the same bar (a close between the levels after both
      were swept), the signals contradict each other: neither enters, and both levels are spent.
    - No signal exits: the bracket ends the trade. No intent before the first higher bar has closed.

    Why: stops and breakout orders rest just beyond an obvious higher-timeframe extreme; a run that takes them
    and is rejected straight back into the range is a failed breakout, and the swept extreme (plus a buffer)
    is where that reading is proven wrong.
    """

    name = "HTF_SWEEP"
    description = "Sweep of the last higher-timeframe bar's high or low followed by a close back inside."
    parameters = {
        # no 1h: on the usual 1h base it is no higher timeframe, and optimising over it would waste trials
        "htf": ChoiceParam("4h", ("4h", "1d"), help="the higher timeframe whose last bar gives the levels "
                           "(must be a multiple of the base timeframe)"),
        "reclaim_bars": IntParam(3, 1, 100, help="bars, the sweep bar included, in which the close must reclaim",
                                 search=(1, 6, 1)),
        "buffer_pct": FloatParam(0.1, 0.0, 10.0, step=0.05, help="stop-loss beyond the swept extreme, in percent",
                                 search=(0.0, 0.5)),
        "rr": REWARD_RISK,
        "direction": DIRECTION,
    }

    def setup(self) -> None:
        self.lows = SweepSetup(True, self.params["reclaim_bars"])
        self.highs = SweepSetup(False, self.params["reclaim_bars"])

    def higher_timeframes(self) -> tuple[str, ...]:
        return (self.params["htf"],)

    def warmup_bars(self) -> int:
        # in base bars, which the strategy cannot know: at least the bar that closes the first higher bar (its
        # range contains that bar) comes before a possible sweep
        return 1

    def on_higher_bar(self, timeframe: str, bar: Bar) -> None:
        if timeframe == self.params["htf"]:
            self.lows.reset(bar.low)
            self.highs.reset(bar.high)

    def on_bar(self, bar: Bar) -> Sequence[Intent]:
        entry = self._entry(self.lows, self.highs, bar.low, bar.high, bar.close)
        if entry is None:
            return ()
        side, stop, target = entry
        return (enter(side, stop_loss=stop, take_profit=target, reason=f"{self.params['htf']} level swept and "
                      "reclaimed"),)

    def signals(self, series: BarSeries) -> Signals:
        levels, delivered = higher_bars(series, self.params["htf"])
        level_lows, level_highs, at = levels.low.tolist(), levels.high.tolist(), delivered.tolist()
        lows = SweepSetup(True, self.params["reclaim_bars"])
        highs = SweepSetup(False, self.params["reclaim_bars"])
        out = Signals.empty(len(series))
        j = 0
        columns = (series.low.tolist(), series.high.tolist(), series.close.tolist())
        for i, (low, high, close) in enumerate(zip(*columns, strict=True)):
            while j < len(at) and at[j] == i:
                lows.reset(level_lows[j])
                highs.reset(level_highs[j])
                j += 1
            entry = self._entry(lows, highs, low, high, close)
            if entry is not None:
                side, stop, target = entry
                (out.enter_long if side == "long" else out.enter_short)[i] = True
                out.stop_loss[i] = stop
                out.take_profit[i] = target
        return out

    def _entry(self, lows: SweepSetup, highs: SweepSetup, low: float, high: float,
               close: float) -> tuple[Side, float, float] | None:
        """Advance both setups over one base bar; the entry (side, stop-loss, take-profit) it makes, if any."""
        direction = self.params["direction"]
        swept_low = lows.advance(low, high, close) if direction != "short" else None
        swept_high = highs.advance(low, high, close) if direction != "long" else None
        buffer, rr = self.params["buffer_pct"] / 100.0, self.params["rr"]
        if swept_low is not None and swept_high is not None:
            return None  # both reclaimed at once: contradictory, and both levels are spent
        if swept_low is not None:
            stop = swept_low * (1.0 - buffer)
            return "long", stop, close + rr * (close - stop)
        if swept_high is not None:
            stop = swept_high * (1.0 + buffer)
            return "short", stop, close - rr * (stop - close)
        return None
