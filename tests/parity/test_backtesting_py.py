"""Cross-check with an established library: `tradepulse backtest` over the shared 1h BTC file gives the same trades
and final equity as backtesting.py's FractionalBacktest (satoshi units, 0.1% commission, trades finalised).

One difference is deliberate: a position still open after the last bar is closed by backtesting.py at that bar's
*open* (it re-runs its broker on the last bar), by TradePulse at its *close*, the latest price there is. The first
test accounts for exactly that; the second ends the range where the strategy is flat and needs no adjustment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.backtesting_reference import FEE, load_cdd_frame, reference_backtest, run_reference

DATA = Path(__file__).resolve().parents[2] / "data" / "demo" / "bitfinex_btcusd_1h.csv"
"""The shared 1h BTC file, as the project ships it for the demo."""


def reference(frame: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    stats = run_reference(reference_backtest(frame))
    return stats["_trades"], float(stats["Equity Final [$]"])


def load_frame(end: str | None = None) -> pd.DataFrame:
    return load_cdd_frame(DATA, end)


def tradepulse_backtest(*extra: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tradepulse.cli", "backtest", "--csv", str(DATA), "--strategy", "sma_cross",
         "--param", "fast=10", "--param", "slow=30", "--fee", str(FEE), "--cash", "10000", "--sizing", "all_in",
         "--fill", "next_open", "--json", *extra],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_same_trades(ours: list[dict[str, Any]], theirs: pd.DataFrame) -> None:
    """Entry and exit bar, size, prices and net PnL of every trade."""
    assert len(ours) == len(theirs) > 100
    for mine, (_, ref) in zip(ours, theirs.iterrows(), strict=True):
        assert pd.Timestamp(mine["entry_ts"], unit="ms") == ref["EntryTime"]
        assert pd.Timestamp(mine["exit_ts"], unit="ms") == ref["ExitTime"]
        assert mine["quantity"] == pytest.approx(ref["Size"], rel=1e-12)
        assert mine["entry_price"] == pytest.approx(ref["EntryPrice"], rel=1e-12)
        assert mine["exit_price"] == pytest.approx(ref["ExitPrice"], rel=1e-12)
        assert mine["pnl"] == pytest.approx(ref["PnL"], rel=1e-9, abs=1e-7)


def test_the_whole_file_gives_backtesting_py_s_trades_and_final_equity() -> None:
    frame = load_frame()
    theirs, their_equity = reference(frame)
    ours = tradepulse_backtest()
    trades = ours["trade_list"]
    assert len(trades) == len(theirs)
    assert_same_trades(trades[:-1], theirs.iloc[:-1])
    # The last trade is still open after the last bar: closed at its close here, at its open by backtesting.py.
    last_bar = frame.iloc[-1]
    final, ref_final = trades[-1], theirs.iloc[-1]
    assert pd.Timestamp(final["entry_ts"], unit="ms") == ref_final["EntryTime"]
    assert final["quantity"] == pytest.approx(ref_final["Size"], rel=1e-12)
    assert final["exit_reason"] == "end_of_data" and ref_final["ExitTime"] == frame.index[-1]
    assert final["exit_price"] == last_bar["Close"] and ref_final["ExitPrice"] == pytest.approx(last_bar["Open"])
    adjustment = final["quantity"] * (last_bar["Close"] - last_bar["Open"]) * (1 - FEE)
    assert ours["final_equity"] == pytest.approx(their_equity + adjustment, rel=1e-11)


def test_a_range_that_ends_flat_gives_the_same_final_equity_without_adjustment() -> None:
    end = "2019-06-19"
    theirs, their_equity = reference(load_frame(end))
    ours = tradepulse_backtest("--to", end)
    if ours["trade_list"][-1]["exit_reason"] == "end_of_data":
        pytest.fail("pick an end date where the strategy is flat")
    assert_same_trades(ours["trade_list"], theirs)
    assert ours["final_equity"] == pytest.approx(their_equity, rel=1e-11)
    assert ours["trades"] == len(theirs)
