"""A trading session: one strategy trading one instrument through the execution simulator, one closed bar at a time.

This is the event path. Backtests loop over a series calling `on_bar`; paper trading calls the same pieces from
the agents. The order inside a bar is fixed: the simulator works the orders and bracket *during* the bar, then the
higher-timeframe bars the bar closes reach the strategy, then the bar itself, and its intents become orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.bars import Bar, HigherTimeframes
from agents.execution.simulator import Events, ExecutionSimulator, LowerBars
from agents.state import Stateful
from agents.strategies.base import Intent, Strategy


@dataclass
class Step:
    """What one bar produced."""

    intents: list[Intent] = field(default_factory=list)
    events: Events = field(default_factory=Events)


class TradingSession(Stateful):
    """Strategy + higher-timeframe roll-up + simulator; `to_state`/`from_state` cover all three."""

    def __init__(self, strategy: Strategy, simulator: ExecutionSimulator, timeframe: str) -> None:
        self.strategy = strategy
        self.simulator = simulator
        wanted = strategy.higher_timeframes()
        self.higher = HigherTimeframes(timeframe, wanted) if wanted else None

    def on_bar(self, bar: Bar, lower: LowerBars | None = None, *, trading: bool = True) -> Step:
        """Advance one closed bar. With `trading=False` (warm-up) the strategy learns but its intents are dropped."""
        events = self.simulator.process_bar(bar, lower)
        if self.higher is not None:
            for timeframe, higher_bar in self.higher.update(bar):
                self.strategy.on_higher_bar(timeframe, higher_bar)
        intents = list(self.strategy.on_bar(bar))
        if trading and intents:
            events.extend(self.simulator.submit(intents, bar))
        return Step(intents, events)
