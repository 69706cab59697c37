"""The established library TradePulse is checked against: backtesting.py's FractionalBacktest running the long-only
sma_cross rules (used by the cross-check test and the backtest benchmark)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd
from backtesting import Strategy
from backtesting.lib import FractionalBacktest, crossover

os.environ.setdefault("TQDM_DISABLE", "1")  # one progress bar per run otherwise

FEE = 0.001


class LongOnlySmaCross(Strategy):
    fast = 10
    slow = 30

    def init(self) -> None:
        close = pd.Series(self.data.Close)
        self.fast_sma = self.I(lambda: close.rolling(self.fast).mean().to_numpy())
        self.slow_sma = self.I(lambda: close.rolling(self.slow).mean().to_numpy())

    def next(self) -> None:
        if crossover(self.fast_sma, self.slow_sma):
            if not self.position:
                self.buy()
        elif crossover(self.slow_sma, self.fast_sma):
            self.position.close()


def reference_backtest(frame: pd.DataFrame) -> FractionalBacktest:
    """Satoshi units, 0.1% commission, trades still open at the end closed."""
    return FractionalBacktest(frame, LongOnlySmaCross, cash=10_000, commission=FEE, fractional_unit=1e-8,
                              finalize_trades=True)


def run_reference(backtest: FractionalBacktest, fast: int = 10, slow: int = 30) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return backtest.run(fast=fast, slow=slow)


def load_cdd_frame(path: Path, end: str | None = None) -> pd.DataFrame:
    """A CryptoDataDownload hourly file as backtesting.py's OHLCV frame, oldest first, optionally cut at `end`."""
    frame = pd.read_csv(path)
    frame.index = pd.to_datetime(frame["Date"], format="%Y-%m-%d %H:%M")
    frame = frame.sort_index().rename(columns={"VolumeFrom": "Volume"})[["Open", "High", "Low", "Close", "Volume"]]
    return frame[frame.index < pd.Timestamp(end)] if end else frame
