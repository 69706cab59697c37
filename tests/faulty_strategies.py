"""A strategy that fails on purpose, loaded by workers through TRADEPULSE_STRATEGY_MODULES in tests."""

from __future__ import annotations

from agents.bars import Bar
from agents.strategies.base import FloatParam, Intent, Strategy, enter


class FailsAbovePrice(Strategy):
    """Enters long on every bar, and raises once the close goes above `limit`: a bug in a user's strategy."""

    name = "fails_above_price"
    parameters = {"limit": FloatParam(120.0, 1.0, 1e9)}

    def setup(self) -> None:
        self.bars = 0

    def on_bar(self, bar: Bar) -> list[Intent]:
        self.bars += 1
        if bar.close > self.params["limit"]:
            raise RuntimeError(f"close {bar.close} above {self.params['limit']}")
        return [enter("long")]
