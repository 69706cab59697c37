"""Is a result better than luck? The deflated Sharpe ratio, Monte Carlo p-values and parameter stability.

- `deflated_sharpe_ratio` (Bailey & López de Prado, 2014): the probability that the true Sharpe ratio is above
  zero after accounting for how many configurations were tried (the best of N noisy trials has a positive expected
  Sharpe even with no edge) and for the non-normality of the returns.
- `permutation_pvalue`: the strategy re-run, with the same parameters, on price paths whose bar returns are the
  real ones in a random order. That keeps the distribution of returns (volatility, fat tails) and destroys the
  order a strategy could exploit; the p-value is the share of paths doing at least as well as the real one.
- `bootstrap_pvalue`: resampled trade returns, centred on zero, against the real mean trade return.
- `stability`: how the objective holds up one grid step away from the chosen parameters in each direction.

All randomness comes from an explicit seed, so a configuration's evidence can be reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from agents.bars import BarSeries, FloatArray
from training.metrics import dispersion

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def expected_max_sharpe(sharpe_variance: float, trials: int) -> float:
    """The Sharpe ratio the best of `trials` skill-less configurations is expected to reach (per bar)."""
    if trials < 2 or sharpe_variance <= 0:
        return 0.0
    return math.sqrt(sharpe_variance) * (
        (1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / trials) + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (trials * math.e))
    )


def deflated_sharpe_ratio(returns: FloatArray, trial_sharpes: Sequence[float]) -> float | None:
    """P(true Sharpe > 0) given the best-of-N selection; `trial_sharpes` are every trial's per-bar Sharpe ratio."""
    r = np.asarray(returns, dtype=np.float64)
    std = dispersion(r)
    if len(r) < 3 or std is None:
        return None
    sharpe = float(r.mean()) / std
    centred = r - r.mean()
    sigma = float(np.sqrt(np.mean(centred**2)))
    skew = float(np.mean(centred**3) / sigma**3)
    kurtosis = float(np.mean(centred**4) / sigma**4)
    finite = [s for s in trial_sharpes if s is not None and math.isfinite(s)]
    benchmark = expected_max_sharpe(float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0, len(finite))
    denominator = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if denominator <= 0:
        return None
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(len(r) - 1) / math.sqrt(denominator))


def per_bar_sharpe(returns: FloatArray) -> float | None:
    r = np.asarray(returns, dtype=np.float64)
    std = dispersion(r)
    return None if std is None else float(r.mean()) / std


def permuted_series(series: BarSeries, rng: np.random.Generator) -> BarSeries:
    """`series` with its bar-to-bar moves shuffled: same first price, same return distribution, new order.

    Each bar keeps its own shape (open, high and low relative to its close), and the close-to-close log returns are
    permuted, so every path is a plausible market with the same volatility and no memory.
    """
    close = series.close
    log_close = np.log(close)
    moves = np.diff(log_close)
    path = np.exp(np.concatenate(([log_close[0]], log_close[0] + np.cumsum(rng.permutation(moves)))))
    scale = path / close
    return series.with_prices(series.open * scale, series.high * scale, series.low * scale, path)


def permutation_pvalue(
    evaluate: Callable[[BarSeries], float | None], series: BarSeries, actual: float, permutations: int, seed: int
) -> float:
    """Share of permuted paths on which `evaluate` scores at least `actual` (with the usual +1 correction)."""
    rng = np.random.default_rng(seed)
    at_least = 0
    for _ in range(permutations):
        score = evaluate(permuted_series(series, rng))
        if score is not None and score >= actual:
            at_least += 1
    return (at_least + 1) / (permutations + 1)


def bootstrap_pvalue(trade_returns: FloatArray, samples: int, seed: int) -> float | None:
    """P(mean trade return this high | no edge), by resampling the trades' returns shifted to a zero mean."""
    r = np.asarray(trade_returns, dtype=np.float64)
    if len(r) < 2:
        return None
    rng = np.random.default_rng(seed)
    centred = r - r.mean()
    means = centred[rng.integers(0, len(r), size=(samples, len(r)))].mean(axis=1)
    return float((np.count_nonzero(means >= r.mean()) + 1) / (samples + 1))


@dataclass(frozen=True)
class Stability:
    """Neighbours one grid step away: how many there were, how many kept at least half the objective."""

    neighbours: int
    holding: int
    median_ratio: float | None

    @property
    def score(self) -> float | None:
        return self.holding / self.neighbours if self.neighbours else None


def neighbours(params: Mapping[str, Any], grids: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Parameter sets one grid step from `params` in one parameter (values off the grid snap to the nearest)."""
    out: list[dict[str, Any]] = []
    for name, grid in grids.items():
        values = list(grid)
        if len(values) < 2 or isinstance(values[0], str):
            continue
        here = min(range(len(values)), key=lambda i: abs(values[i] - params[name]))
        for step in (-1, 1):
            if 0 <= here + step < len(values):
                out.append({**params, name: values[here + step]})
    return out


def stability(objective: float, neighbour_objectives: Sequence[float | None]) -> Stability:
    """Count the neighbours that keep at least half of a positive objective (invalid ones count as failing)."""
    scores = [s for s in neighbour_objectives if s is not None and math.isfinite(s)]
    if objective <= 0:
        return Stability(len(neighbour_objectives), 0, None)
    holding = sum(1 for s in scores if s >= 0.5 * objective)
    ratios = [s / objective for s in scores]
    return Stability(len(neighbour_objectives), holding, float(np.median(ratios)) if ratios else None)
