"""Performance metrics of a backtest or a live record: from the per-bar equity curve and the closed trades.

Pure numpy. Ratios are annualised with the bar length on a 24/7 calendar (365.25 days a year), as crypto markets
trade. A metric that is undefined (no trades, no losing trade, a flat curve) is None rather than a made-up number,
so JSON output and stored metrics never carry NaN or infinity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.bars import FloatArray, IntArray
from agents.execution.simulator import Trade

YEAR_MS = 365.25 * 86_400_000


@dataclass(frozen=True)
class TradeTable:
    """The closed trades as columns: what the metrics need, cheap to get from the fast path."""

    entry_ts: IntArray
    exit_ts: IntArray
    pnl: FloatArray
    notional: FloatArray
    fees: FloatArray

    @classmethod
    def of(cls, trades: Sequence[Trade]) -> TradeTable:
        return cls(
            np.array([t.entry_ts for t in trades], dtype=np.int64),
            np.array([t.exit_ts for t in trades], dtype=np.int64),
            np.array([t.pnl for t in trades], dtype=np.float64),
            np.array([t.quantity * t.entry_price for t in trades], dtype=np.float64),
            np.array([t.fees for t in trades], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.pnl)

    @property
    def return_pct(self) -> FloatArray:
        """Net return of each trade on its entry notional, in percent (as `Trade.return_pct`)."""
        return 100.0 * self.pnl / self.notional


@dataclass(frozen=True)
class Drawdown:
    max_pct: float
    max_duration_bars: int


def bar_returns(equity: FloatArray, initial: float) -> FloatArray:
    """Simple returns per bar, the first one against the starting cash."""
    if len(equity) == 0:
        return np.zeros(0)
    previous = np.concatenate(([initial], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(previous > 0, equity / previous - 1.0, 0.0)
    return returns


def drawdown(equity: FloatArray, initial: float) -> Drawdown:
    """Deepest fall from a running peak (percent) and the longest stretch below a previous peak (bars)."""
    if len(equity) == 0:
        return Drawdown(0.0, 0)
    peaks = np.maximum.accumulate(np.concatenate(([initial], equity)))[1:]
    depth = 1.0 - equity / peaks
    edges = np.diff(np.concatenate(([0], (depth > 0).astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    longest = int((ends - starts).max()) if len(starts) else 0
    return Drawdown(float(depth.max()) * 100.0, longest)


def annualised(growth: float, years: float) -> float | None:
    """Compound annual growth, None when undefined or beyond a float (a big gain over a few bars)."""
    if years <= 0 or growth <= 0:
        return None
    exponent = math.log(growth) / years
    return math.expm1(exponent) if exponent < 700 else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def dispersion(returns: FloatArray) -> float | None:
    """Sample standard deviation, or None when the returns are constant up to rounding (a ratio over it would be
    noise divided by noise)."""
    if len(returns) < 2:
        return None
    std = float(returns.std(ddof=1))
    scale = max(float(np.abs(returns).max()), 1e-300)
    return std if std > 1e-9 * scale else None


def sharpe_ratio(returns: FloatArray, periods_per_year: float) -> float | None:
    std = dispersion(returns)
    return None if std is None else _finite(float(returns.mean()) / std * math.sqrt(periods_per_year))


def sortino_ratio(returns: FloatArray, periods_per_year: float) -> float | None:
    if len(returns) < 2:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside == 0:
        return None
    return _finite(float(returns.mean()) / downside * math.sqrt(periods_per_year))


def compute_metrics(
    equity: FloatArray, trades: TradeTable, *, initial: float, bar_ms: int
) -> dict[str, float | int | None]:
    """Every figure the reports, the optimiser and the lifecycle rules use, keyed by name."""
    bars = len(equity)
    final = float(equity[-1]) if bars else initial
    years = bars * bar_ms / YEAR_MS
    periods_per_year = YEAR_MS / bar_ms
    returns = bar_returns(equity, initial)
    dd = drawdown(equity, initial)
    growth = final / initial
    cagr = annualised(growth, years)
    pnl = trades.pnl
    trade_returns = trades.return_pct
    count = len(trades)
    wins, losses = pnl[pnl > 0], pnl[pnl <= 0]
    gross_loss = float(-losses.sum())
    exposure_ms = int((trades.exit_ts - trades.entry_ts).sum())
    return {
        "bars": bars,
        "initial_equity": initial,
        "final_equity": final,
        "total_return_pct": (growth - 1.0) * 100.0,
        "cagr_pct": None if cagr is None else _finite(cagr * 100.0),
        "sharpe": sharpe_ratio(returns, periods_per_year),
        "sortino": sortino_ratio(returns, periods_per_year),
        "calmar": _finite(cagr / (dd.max_pct / 100.0)) if cagr is not None and dd.max_pct > 0 else None,
        "max_drawdown_pct": dd.max_pct,
        "max_drawdown_duration_bars": dd.max_duration_bars,
        "max_drawdown_duration_days": dd.max_duration_bars * bar_ms / 86_400_000,
        "exposure_pct": 100.0 * exposure_ms / (bars * bar_ms) if bars else 0.0,
        "trades": count,
        "win_rate_pct": 100.0 * len(wins) / count if count else None,
        "profit_factor": _finite(float(wins.sum()) / gross_loss) if gross_loss > 0 else None,
        "expectancy": float(pnl.mean()) if count else None,
        "avg_trade_pct": float(trade_returns.mean()) if count else None,
        "avg_win_pct": float(trade_returns[pnl > 0].mean()) if len(wins) else None,
        "avg_loss_pct": float(trade_returns[pnl <= 0].mean()) if len(losses) else None,
        "best_trade_pct": float(trade_returns.max()) if count else None,
        "worst_trade_pct": float(trade_returns.min()) if count else None,
        "fees": float(trades.fees.sum()),
    }
