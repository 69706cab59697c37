"""Backtests without services: warm-up, finalisation, refusals, the lower-timeframe rule, plots and the CLI on a
CSV file, and the purity of the code the agents share with training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.bars import Bar, BarSeries
from agents.execution.simulator import ExecutionConfig
from agents.strategies import STRATEGIES, create_strategy
from agents.strategies.base import Intent, Strategy, enter
from tests.strategy_helpers import random_series
from training.backtest import BacktestConfig, BacktestError, run_backtest
from training.plot import PlotError, write_plot

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "data" / "demo" / "bitfinex_btcusd_1h.csv"
HOUR = 3_600_000


class BuysOnceWithBracket(Strategy):
    """Enters long on its first tradable bar with a bracket both sides of which the next bar touches."""

    name = "buys_once"
    parameters = {}

    def setup(self) -> None:
        self.done = False

    def on_bar(self, bar: Bar) -> list[Intent]:
        if self.done:
            return []
        self.done = True
        return [enter("long", stop_loss=95.0, take_profit=105.0)]


def test_warm_up_bars_feed_the_strategy_but_never_trade() -> None:
    series = random_series(2000, 3)
    cold = run_backtest(create_strategy("sma_cross", {"fast": 5, "slow": 20}), series)
    warm = run_backtest(create_strategy("sma_cross", {"fast": 5, "slow": 20}), series, warmup=500)
    assert len(warm.equity) == 1500 and len(cold.equity) == 2000
    assert all(t.entry_ts > series.ts[500] for t in warm.trades)
    assert warm.equity[0] == warm.initial_cash
    assert {t.entry_ts for t in warm.trades} < {t.entry_ts for t in cold.trades}  # same decisions after warm-up


def test_finalize_closes_the_open_position_at_the_last_close_and_can_be_turned_off() -> None:
    config = BacktestConfig(execution=ExecutionConfig(fee_rate=0.0))
    wide_free = BarSeries.from_bars("x", "BTC/USD", "1h", [Bar(0, 100, 101, 99, 100, 1),
                                                           Bar(HOUR, 100, 101, 99, 100, 1),
                                                           Bar(2 * HOUR, 100, 104, 99, 103, 1)])
    closed = run_backtest(BuysOnceWithBracket(), wide_free, config)
    assert [t.exit_reason for t in closed.trades] == ["end_of_data"]
    assert closed.trades[0].exit_price == 103.0 and closed.equity[-1] == closed.initial_cash + closed.trades[0].pnl
    open_ = run_backtest(BuysOnceWithBracket(), wide_free, BacktestConfig(execution=ExecutionConfig(fee_rate=0.0),
                                                                          finalize=False))
    assert not open_.trades and len(open_.fills) == 1


def test_the_same_bar_touching_both_levels_is_decided_by_the_lower_timeframe_when_given() -> None:
    series = BarSeries.from_bars("x", "BTC/USD", "1h", [Bar(0, 100, 101, 99, 100, 1), Bar(HOUR, 100, 106, 94, 100, 1),
                                                        Bar(2 * HOUR, 100, 101, 99, 100, 1)])
    minutes = BarSeries.from_bars("x", "BTC/USD", "1m", [
        Bar(HOUR, 100, 106, 99, 105, 1), Bar(HOUR + 60_000, 105, 105, 94, 95, 1)])
    conservative = run_backtest(BuysOnceWithBracket(), series)
    lower = run_backtest(BuysOnceWithBracket(), series, BacktestConfig(
        execution=ExecutionConfig(intrabar="lower_timeframe")), lower=minutes)
    assert [t.exit_reason for t in conservative.trades] == ["stop_loss"]
    assert [t.exit_reason for t in lower.trades] == ["take_profit"]
    assert lower.path == "event"


def test_too_few_bars_and_an_unusable_timeframe_are_refused() -> None:
    with pytest.raises(BacktestError, match="are too few"):
        run_backtest(create_strategy("sma_cross"), random_series(20, 1))
    with pytest.raises(BacktestError, match="cannot trade 1d bars"):
        run_backtest(create_strategy("HTF_SWEEP", {"htf": "1d"}), random_series(500, 1, "1d"))


def test_a_plot_is_written_as_png_or_html(tmp_path: Path) -> None:
    result = run_backtest(create_strategy("sma_cross", {"fast": 5, "slow": 20}), random_series(800, 2))
    write_plot(result, tmp_path / "chart.png", "sma_cross test")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_plot(result, tmp_path / "chart.html", "sma_cross <test>")
    page = (tmp_path / "chart.html").read_text()
    assert "<svg" in page and "sma_cross &lt;test&gt;" in page and "final_equity" in page
    with pytest.raises(PlotError, match=r"png or \.html"):
        write_plot(result, tmp_path / "chart.pdf", "x")
    with pytest.raises(PlotError, match="cannot write"):
        write_plot(result, tmp_path / "missing" / "chart.html", "x")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradepulse.cli", "backtest", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, env=dict(os.environ))


def test_the_cli_reports_json_and_plots_from_a_csv_file(tmp_path: Path) -> None:
    chart = tmp_path / "equity.html"
    result = cli("--csv", str(CSV), "--strategy", "donchian_breakout", "--param", "entry_period=30", "--json",
                 "--plot", str(chart), "--to", "2018-06-01", "--fast")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    for key in ("final_equity", "total_return_pct", "trades", "win_rate_pct", "max_drawdown_pct", "sharpe", "bars"):
        assert key in summary
    assert summary["params"]["entry_period"] == 30 and summary["path"] == "fast"
    assert summary["trades"] == len(summary["trade_list"]) > 0
    assert chart.exists()
    readable = cli("--csv", str(CSV), "--strategy", "sma_cross", "--to", "2018-06-01")
    assert readable.returncode == 0 and "final_equity" in readable.stdout and "last trades of" in readable.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "sma_cross", "--plot", "chart.pdf"], "use a .png or .html file"),
    (["--strategy", "sma_cross", "--fee", "0.5"], "fee rate must be in"),
    (["--strategy", "sma_cross", "--param", "fast"], "is not NAME=VALUE"),
    (["--strategy", "sma_cross", "--symbol", "ETH/USD"], "has no ETH/USD"),
    (["--strategy", "sma_cross", "--intrabar", "lower_timeframe"], "needs 1m candles from the topic or the table"),
])
def test_bad_cli_input_is_a_clear_error(args: list[str], message: str) -> None:
    result = cli("--csv", str(CSV), *args)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_the_shared_trading_code_imports_no_faust_no_io_client() -> None:
    probe = ("import sys, agents.strategies, agents.execution.session, agents.indicators, training.backtest, "
             "training.fast; print(','.join(m for m in ('faust', 'aiokafka', 'psycopg', 'mode') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_every_strategy_is_deterministic() -> None:
    series = random_series(1500, 9)
    for cls in STRATEGIES.values():
        first = run_backtest(cls(), series, path="event")
        second = run_backtest(cls(), series, path="event")
        assert first.trades == second.trades and np.array_equal(first.equity, second.equity)
