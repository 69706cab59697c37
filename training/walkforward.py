"""Walk-forward analysis: optimise on a train window, trade the chosen parameters on the window that follows.

Windows cover the data handed in (the holdout is kept out by the caller). `rolling` windows slide a train window
of fixed length; `anchored` ones all start at the first bar and grow. Each test window is traded with the
parameters chosen on its own train window only, after feeding the strategy the bars just before the window so its
indicators are warm (those bars are never traded). The test windows' equity curves, chained, form the stitched
out-of-sample curve: what trading the whole procedure would have given.

Walk-forward efficiency (Pardo) is the out-of-sample annualised return over the in-sample one, averaged over the
windows: near 1 means the optimised results carried over; near 0 or below, they were fitted to noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from agents.bars import BarSeries, FloatArray
from training.backtest import BacktestResult, run_backtest
from training.metrics import YEAR_MS, TradeTable, annualised, compute_metrics
from training.optimize import Evaluation, SearchSpec, optimise, ranked_trials

logger = logging.getLogger(__name__)

Mode = Literal["rolling", "anchored"]


@dataclass(frozen=True)
class WalkForwardSpec:
    windows: int = 4
    mode: Mode = "rolling"
    train_fraction: float = 0.7
    """Share of each rolling window (train + test) used for training."""
    trials: int = 30

    def __post_init__(self) -> None:
        if self.windows < 1:
            raise ValueError("walk-forward needs at least one window")
        if self.mode not in ("rolling", "anchored"):
            raise ValueError(f"walk-forward mode must be rolling or anchored, got {self.mode!r}")
        if not 0.2 <= self.train_fraction <= 0.9:
            raise ValueError("train_fraction must be in [0.2, 0.9]")


@dataclass(frozen=True)
class Window:
    train: tuple[int, int]
    test: tuple[int, int]


def windows(n: int, spec: WalkForwardSpec) -> list[Window]:
    """Bar index ranges `[start, stop)` of each train and test window."""
    if spec.mode == "rolling":
        # windows of (train + test) bars step by `test` bars: k tests of length t and one train of length r
        # with r = t * f / (1 - f) must fit: r + k t = n
        ratio = round(spec.train_fraction / (1 - spec.train_fraction), 9)  # 0.8 -> 4, not 4.000000000000001
        test = int(n / (ratio + spec.windows))
        train = n - spec.windows * test
        return [Window((k * test, k * test + train), (k * test + train, (k + 1) * test + train))
                for k in range(spec.windows)]
    first_train = int(n * spec.train_fraction / (spec.train_fraction + (1 - spec.train_fraction) * spec.windows))
    test = (n - first_train) // spec.windows
    ends = [first_train + (k + 1) * test for k in range(spec.windows - 1)] + [n]  # the last window takes the rest
    return [Window((0, first_train + k * test), (first_train + k * test, end)) for k, end in enumerate(ends)]


@dataclass
class WindowResult:
    window: Window
    params: dict[str, Any] | None
    in_sample: dict[str, Any]
    out_of_sample: dict[str, Any]
    equity: FloatArray = field(repr=False)
    trades: TradeTable = field(repr=False)


@dataclass
class WalkForwardResult:
    mode: str
    windows: list[WindowResult]
    stitched_equity: FloatArray = field(repr=False)
    stitched_ts: np.ndarray = field(repr=False)
    stitched_metrics: dict[str, Any]
    efficiency: float | None
    profitable_windows: int

    def summary(self) -> dict[str, Any]:
        """What is stored with each configuration of the study."""
        return {
            "mode": self.mode,
            "windows": [
                {"train": [int(w.window.train[0]), int(w.window.train[1])],
                 "test": [int(w.window.test[0]), int(w.window.test[1])], "params": w.params,
                 "in_sample": _brief(w.in_sample), "out_of_sample": _brief(w.out_of_sample)}
                for w in self.windows
            ],
            "stitched": _brief(self.stitched_metrics),
            "efficiency": self.efficiency,
            "profitable_windows": self.profitable_windows,
            "window_count": len(self.windows),
        }


_BRIEF = ("total_return_pct", "cagr_pct", "sharpe", "max_drawdown_pct", "trades", "win_rate_pct", "profit_factor")


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {name: metrics.get(name) for name in _BRIEF}


def trade_window(evaluation: Evaluation, params: dict[str, Any], series: BarSeries, start: int,
                 stop: int) -> BacktestResult:
    """Trade `params` on bars `[start, stop)` after warming the strategy up on the bars before `start`."""
    strategy = evaluation.cls(params)
    warm = min(start, strategy.warmup_bars())
    return run_backtest(strategy, series.slice(start - warm, stop), evaluation.spec.config, warmup=warm, path="auto")


def annualised_return(metrics: dict[str, Any], bar_ms: int) -> float | None:
    bars = metrics.get("bars") or 0
    final, initial = metrics.get("final_equity"), metrics.get("initial_equity")
    if not bars or not final or not initial:
        return None
    return annualised(final / initial, bars * bar_ms / YEAR_MS)


def walk_forward(search: SearchSpec, series: BarSeries, spec: WalkForwardSpec) -> WalkForwardResult:
    """Optimise each train window (in memory), trade each test window, stitch and score."""
    results: list[WindowResult] = []
    for index, window in enumerate(windows(len(series), spec)):
        train = series.slice(*window.train)
        local = replace(search, trials=spec.trials, seed=search.seed + index)
        study = optimise(local, train, study_name=f"walk-forward-{index}", storage=None)
        evaluation = Evaluation(local, series)
        best = ranked_trials(study)
        if not best:
            logger.info("walk-forward window %d: no trial qualified; the window stays in cash", index)
            flat = np.full(window.test[1] - window.test[0], search.config.cash)
            nothing = TradeTable.of([])
            results.append(WindowResult(window, None, {}, compute_metrics(flat, nothing, initial=search.config.cash,
                                                                          bar_ms=series.span_ms), flat, nothing))
            continue
        params = best[0].user_attrs["params"]
        in_sample = trade_window(evaluation, params, series, *window.train).metrics
        oos = trade_window(evaluation, params, series, *window.test)
        results.append(WindowResult(window, params, in_sample, oos.metrics, oos.equity, oos.table))
    stitched, trades = _stitch(results, search.config.cash)
    first_test = results[0].window.test[0]
    ts = series.ts[first_test:first_test + len(stitched)]
    efficiencies = []
    for r in results:
        ins, outs = annualised_return(r.in_sample, series.span_ms), annualised_return(r.out_of_sample, series.span_ms)
        if ins is not None and outs is not None and ins > 0:
            efficiencies.append(outs / ins)
    stitched_metrics = compute_metrics(stitched, trades, initial=search.config.cash, bar_ms=series.span_ms)
    return WalkForwardResult(
        mode=spec.mode, windows=results, stitched_equity=stitched, stitched_ts=ts, stitched_metrics=stitched_metrics,
        efficiency=float(np.mean(efficiencies)) if efficiencies else None,
        profitable_windows=sum(1 for r in results if (r.out_of_sample.get("total_return_pct") or 0) > 0),
    )


def _stitch(results: list[WindowResult], initial: float) -> tuple[FloatArray, TradeTable]:
    """Chain the windows' equity curves (each rescaled to start where the previous ended) and their trades."""
    curves: list[FloatArray] = []
    tables: list[TradeTable] = []
    level = initial
    for result in results:
        if len(result.equity) == 0:
            continue
        scale = level / initial
        curves.append(result.equity * scale)
        t = result.trades
        tables.append(TradeTable(t.entry_ts, t.exit_ts, t.pnl * scale, t.notional * scale, t.fees * scale))
        level = float(curves[-1][-1])
    if not curves:
        return np.zeros(0), TradeTable.of([])
    return np.concatenate(curves), TradeTable(*(np.concatenate([getattr(t, name) for t in tables])
                                                for name in ("entry_ts", "exit_ts", "pnl", "notional", "fees")))
