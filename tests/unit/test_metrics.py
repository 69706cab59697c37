"""Backtest metrics on hand-built equity curves and trades: every figure checked against a value worked out by hand
(or, for the ratios, a direct numpy computation), undefined figures None, and the result always valid JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agents.execution.simulator import Trade
from training.metrics import TradeTable, annualised, bar_returns, compute_metrics, drawdown

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_700_006_400_000  # a UTC midnight

# initial 1000; running peaks (with the initial cash) 1000 1100 1100 1100 1100 1200 1200 1200 1210
EQUITY = np.array([1000.0, 1100.0, 1050.0, 990.0, 1020.0, 1200.0, 1150.0, 1150.0, 1210.0])


def trade(n: int, quantity: float, entry_price: float, entry_bar: int, exit_bar: int, pnl: float,
          fees: float) -> Trade:
    return Trade(
        trade_id=f"t{n}", side="long", quantity=quantity, entry_ts=T0 + entry_bar * DAY, entry_price=entry_price,
        exit_ts=T0 + exit_bar * DAY, exit_price=entry_price + pnl / quantity, pnl=pnl, fees=fees,
        exit_reason="signal", entry_order_id=f"e{n}", exit_order_id=f"x{n}",
    )


# notional 100, 200, 200, 100; held 2, 1, 3 and 0 days; the break-even trade counts as a loss
TRADES = [
    trade(1, 1.0, 100.0, 1, 3, 50.0, 1.0),
    trade(2, 2.0, 100.0, 4, 5, -20.0, 1.0),
    trade(3, 1.0, 200.0, 5, 8, 30.0, 2.0),
    trade(4, 1.0, 100.0, 8, 8, 0.0, 0.5),
]


def direct_returns(equity: np.ndarray, initial: float) -> np.ndarray:
    previous = np.concatenate(([initial], equity[:-1]))
    return (equity - previous) / previous


def assert_json_clean(metrics: dict[str, float | int | None]) -> None:
    text = json.dumps(metrics, allow_nan=False)
    assert json.loads(text) == metrics


# ------------------------------------------------------------------------------------------------- TradeTable


def test_trade_table_of_matches_the_trade_records() -> None:
    table = TradeTable.of(TRADES)
    assert len(table) == 4
    assert table.entry_ts.dtype == np.int64 and table.exit_ts.dtype == np.int64
    assert table.entry_ts.tolist() == [t.entry_ts for t in TRADES]
    assert table.exit_ts.tolist() == [t.exit_ts for t in TRADES]
    assert table.pnl.tolist() == [50.0, -20.0, 30.0, 0.0]
    assert table.notional.tolist() == [100.0, 200.0, 200.0, 100.0]
    assert table.fees.tolist() == [1.0, 1.0, 2.0, 0.5]
    assert table.return_pct.tolist() == pytest.approx([50.0, -10.0, 15.0, 0.0])
    assert table.return_pct.tolist() == pytest.approx([t.return_pct for t in TRADES])


def test_empty_trade_table() -> None:
    table = TradeTable.of([])
    assert len(table) == 0
    assert table.pnl.dtype == np.float64 and table.entry_ts.dtype == np.int64
    assert table.return_pct.tolist() == []


# ---------------------------------------------------------------------------------------------- compute_metrics


def test_hand_built_curve_and_trades() -> None:
    m = compute_metrics(EQUITY, TradeTable.of(TRADES), initial=1000.0, bar_ms=DAY)
    assert m["bars"] == 9
    assert m["initial_equity"] == 1000.0
    assert m["final_equity"] == 1210.0
    assert m["total_return_pct"] == pytest.approx(21.0)
    # deepest: 990 against the peak of 1100; longest: bars 2, 3 and 4 below 1100 (bars 6 and 7 below 1200 are two)
    assert m["max_drawdown_pct"] == pytest.approx(10.0)
    assert m["max_drawdown_duration_bars"] == 3
    assert m["max_drawdown_duration_days"] == pytest.approx(3.0)
    assert m["trades"] == 4
    assert m["win_rate_pct"] == pytest.approx(50.0)
    assert m["profit_factor"] == pytest.approx(80.0 / 20.0)
    assert m["expectancy"] == pytest.approx(15.0)
    assert m["avg_trade_pct"] == pytest.approx(13.75)
    assert m["avg_win_pct"] == pytest.approx(32.5)
    assert m["avg_loss_pct"] == pytest.approx(-5.0)
    assert m["best_trade_pct"] == pytest.approx(50.0)
    assert m["worst_trade_pct"] == pytest.approx(-10.0)
    assert m["fees"] == pytest.approx(4.5)
    # in the market 2 + 1 + 3 + 0 = 6 of the 9 days
    assert m["exposure_pct"] == pytest.approx(100.0 * 6 / 9)
    assert_json_clean(m)


SMALL_MOVES = 1000.0 * np.exp(np.cumsum(np.random.default_rng(11).normal(0.0001, 0.001, 300)))


@pytest.mark.parametrize(
    ("equity", "bar_ms"),
    [(EQUITY, 60_000), (EQUITY, HOUR), (EQUITY, DAY), (SMALL_MOVES, 60_000), (SMALL_MOVES, HOUR),
     (SMALL_MOVES, DAY)],
    ids=["hand-1m", "hand-1h", "hand-1d", "walk-1m", "walk-1h", "walk-1d"],
)
def test_sharpe_and_sortino_against_numpy(equity: np.ndarray, bar_ms: int) -> None:
    m = compute_metrics(equity, TradeTable.of([]), initial=1000.0, bar_ms=bar_ms)
    r = direct_returns(equity, 1000.0)
    annual = math.sqrt(365.25 * 86_400_000 / bar_ms)
    expected_sharpe = r.mean() / r.std(ddof=1) * annual
    expected_sortino = r.mean() / math.sqrt(np.mean(np.minimum(r, 0.0) ** 2)) * annual
    assert m["sharpe"] == pytest.approx(expected_sharpe, rel=1e-9)
    assert m["sortino"] == pytest.approx(expected_sortino, rel=1e-9)
    assert m["sharpe"] > 0 and m["sortino"] > 0


def test_annualisation_scales_with_the_square_root_of_bars_a_year() -> None:
    daily = compute_metrics(EQUITY, TradeTable.of([]), initial=1000.0, bar_ms=DAY)["sharpe"]
    hourly = compute_metrics(EQUITY, TradeTable.of([]), initial=1000.0, bar_ms=HOUR)["sharpe"]
    assert isinstance(daily, float) and isinstance(hourly, float)
    assert hourly / daily == pytest.approx(math.sqrt(24.0))


def test_bar_returns_start_against_the_initial_cash() -> None:
    r = bar_returns(np.array([1100.0, 990.0, 990.0]), 1000.0)
    assert r.tolist() == pytest.approx([0.1, -0.1, 0.0])
    assert bar_returns(np.zeros(0), 1000.0).tolist() == []


def test_cagr_over_a_known_number_of_years() -> None:
    # 1461 half-day bars are exactly two years of 365.25 days; +21 % in two years is 10 % a year
    equity = np.linspace(1000.0, 1210.0, 1461)
    m = compute_metrics(equity, TradeTable.of([]), initial=1000.0, bar_ms=DAY // 2)
    assert m["cagr_pct"] == pytest.approx(10.0, rel=1e-9)
    assert m["total_return_pct"] == pytest.approx(21.0)
    # a steady rise never falls below a peak
    assert m["max_drawdown_pct"] == 0.0 and m["max_drawdown_duration_bars"] == 0
    assert m["calmar"] is None
    # 1461 daily bars are four years: 1.6 ** 0.25 = 1.12468...
    m = compute_metrics(np.linspace(1000.0, 1600.0, 1461), TradeTable.of([]), initial=1000.0, bar_ms=DAY)
    assert m["cagr_pct"] == pytest.approx(12.4683, abs=1e-4)


def test_calmar_is_cagr_over_the_max_drawdown() -> None:
    # two years (1461 half days): up to 1100, down to 880 (-20 %), up to 1210
    equity = np.concatenate((np.linspace(1000.0, 1100.0, 500), np.linspace(1100.0, 880.0, 500)[1:],
                             np.linspace(880.0, 1210.0, 462)))
    assert len(equity) == 1461
    m = compute_metrics(equity, TradeTable.of([]), initial=1000.0, bar_ms=DAY // 2)
    assert m["max_drawdown_pct"] == pytest.approx(20.0)
    assert m["cagr_pct"] == pytest.approx(10.0, rel=1e-9)
    assert m["calmar"] == pytest.approx(0.10 / 0.20, rel=1e-9)


def test_drawdown_counts_from_the_initial_cash_and_to_the_end() -> None:
    # below the starting cash from the first bar; still under water at the end
    dd = drawdown(np.array([900.0, 950.0, 1000.0, 1050.0, 840.0, 1000.0]), 1000.0)
    assert dd.max_pct == pytest.approx(20.0)  # 840 against 1050
    assert dd.max_duration_bars == 2  # bars 0-1 below 1000, bars 4-5 below 1050
    dd = drawdown(np.array([1000.0, 990.0, 980.0, 970.0]), 1000.0)
    assert (dd.max_pct, dd.max_duration_bars) == (pytest.approx(3.0), 3)
    dd = drawdown(np.zeros(0), 1000.0)
    assert (dd.max_pct, dd.max_duration_bars) == (0.0, 0)


def test_no_trades_leaves_the_trade_metrics_undefined() -> None:
    m = compute_metrics(EQUITY, TradeTable.of([]), initial=1000.0, bar_ms=DAY)
    assert m["trades"] == 0
    for name in ("win_rate_pct", "profit_factor", "expectancy", "avg_trade_pct", "avg_win_pct", "avg_loss_pct",
                 "best_trade_pct", "worst_trade_pct"):
        assert m[name] is None, name
    assert m["exposure_pct"] == 0.0 and m["fees"] == 0.0
    assert m["total_return_pct"] == pytest.approx(21.0)  # the curve still counts
    assert_json_clean(m)


def test_no_losing_trade_leaves_the_profit_factor_undefined() -> None:
    winners = [trade(1, 1.0, 100.0, 0, 2, 10.0, 0.1), trade(2, 1.0, 100.0, 3, 4, 5.0, 0.1)]
    m = compute_metrics(EQUITY, TradeTable.of(winners), initial=1000.0, bar_ms=DAY)
    assert m["profit_factor"] is None
    assert m["avg_loss_pct"] is None
    assert m["win_rate_pct"] == 100.0
    assert m["expectancy"] == pytest.approx(7.5)
    assert_json_clean(m)


def test_only_break_even_losses_leave_the_profit_factor_undefined() -> None:
    trades = [trade(1, 1.0, 100.0, 0, 2, 10.0, 0.1), trade(2, 1.0, 100.0, 3, 4, 0.0, 0.1)]
    m = compute_metrics(EQUITY, TradeTable.of(trades), initial=1000.0, bar_ms=DAY)
    assert m["profit_factor"] is None  # 10 / 0 is not a number to store
    assert m["win_rate_pct"] == 50.0
    assert m["avg_loss_pct"] == 0.0


def test_only_losing_trades_give_a_zero_profit_factor() -> None:
    losers = [trade(1, 1.0, 100.0, 0, 2, -10.0, 0.1), trade(2, 1.0, 100.0, 3, 4, -5.0, 0.1)]
    m = compute_metrics(EQUITY, TradeTable.of(losers), initial=1000.0, bar_ms=DAY)
    assert m["profit_factor"] == 0.0
    assert m["win_rate_pct"] == 0.0
    assert m["avg_win_pct"] is None


def test_flat_curve_leaves_the_ratios_undefined() -> None:
    m = compute_metrics(np.full(50, 1000.0), TradeTable.of([]), initial=1000.0, bar_ms=HOUR)
    assert m["sharpe"] is None and m["sortino"] is None and m["calmar"] is None
    assert m["total_return_pct"] == 0.0 and m["cagr_pct"] == 0.0
    assert m["max_drawdown_pct"] == 0.0 and m["max_drawdown_duration_bars"] == 0
    assert_json_clean(m)


def test_rising_curve_has_no_downside_so_no_sortino() -> None:
    m = compute_metrics(np.array([1010.0, 1030.0, 1031.0, 1060.0]), TradeTable.of([]), initial=1000.0, bar_ms=DAY)
    assert m["sortino"] is None
    assert m["sharpe"] is not None and m["sharpe"] > 0


def test_single_bar_and_empty_curves() -> None:
    one = compute_metrics(np.array([1100.0]), TradeTable.of([]), initial=1000.0, bar_ms=DAY)
    assert one["sharpe"] is None and one["sortino"] is None  # one return has no spread
    assert one["total_return_pct"] == pytest.approx(10.0)
    empty = compute_metrics(np.zeros(0), TradeTable.of([]), initial=1000.0, bar_ms=DAY)
    assert empty["bars"] == 0 and empty["final_equity"] == 1000.0
    assert empty["total_return_pct"] == 0.0
    assert empty["cagr_pct"] is None and empty["sharpe"] is None
    assert empty["exposure_pct"] == 0.0 and empty["max_drawdown_pct"] == 0.0
    assert_json_clean(one)
    assert_json_clean(empty)


def test_ruined_account_is_still_valid_json() -> None:
    m = compute_metrics(np.array([800.0, 300.0, 0.0, 0.0]), TradeTable.of([]), initial=1000.0, bar_ms=DAY)
    assert m["total_return_pct"] == pytest.approx(-100.0)
    assert m["max_drawdown_pct"] == pytest.approx(100.0)
    assert m["max_drawdown_duration_bars"] == 4
    assert m["cagr_pct"] is None and m["calmar"] is None
    assert_json_clean(m)


def test_cagr_of_a_short_curve_with_a_big_gain_is_none_not_an_error() -> None:
    # three one-minute bars, +10 %: annualised that is 1.1 ** 175320 - far beyond a float (once an OverflowError)
    m = compute_metrics(np.array([10_000.0, 10_500.0, 11_000.0]), TradeTable.of([]), initial=10_000.0,
                        bar_ms=60_000)
    assert m["cagr_pct"] is None and m["calmar"] is None
    assert m["total_return_pct"] == pytest.approx(10.0)
    assert m["sharpe"] is not None
    assert_json_clean(m)


def test_annualised() -> None:
    assert annualised(1.21, 2.0) == pytest.approx(0.1)
    assert annualised(0.81, 2.0) == pytest.approx(-0.1)
    assert annualised(1.0, 3.0) == 0.0
    assert annualised(1.1, 1 / 175_320) is None  # beyond a float
    assert annualised(0.0, 1.0) is None and annualised(-0.5, 1.0) is None
    assert annualised(1.5, 0.0) is None


def test_random_curves_are_always_valid_json() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        equity = 1000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 500)))
        m = compute_metrics(equity, TradeTable.of(TRADES), initial=1000.0, bar_ms=HOUR)
        assert_json_clean(m)
        assert m["final_equity"] == pytest.approx(equity[-1])
