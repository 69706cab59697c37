"""Better than luck? The expected best-of-N Sharpe, the deflated Sharpe ratio, permuted price paths, the Monte Carlo
p-values and parameter stability, on series whose answer is known."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest

from agents.bars import BarSeries
from tests.strategy_helpers import random_series
from training.significance import (
    Stability,
    bootstrap_pvalue,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    neighbours,
    per_bar_sharpe,
    permutation_pvalue,
    permuted_series,
    stability,
)

HOUR = 3_600_000


def series_from_log_returns(moves: np.ndarray, start: float = 100.0) -> BarSeries:
    """Hourly bars whose closes follow `moves`; each bar opens at the previous close, wicks 0.1 % beyond its body."""
    close = start * np.exp(np.concatenate(([0.0], np.cumsum(moves))))
    open_ = np.concatenate(([start], close[:-1]))
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    ts = 1_600_002_000_000 // HOUR * HOUR + np.arange(len(close), dtype=np.int64) * HOUR
    return BarSeries("test", "BTC/USD", "1h", ts, open_, high, low, close, np.ones(len(close)))


def lag1_autocorrelation(series: BarSeries) -> float:
    r = np.diff(np.log(series.close))
    return float(np.corrcoef(r[:-1], r[1:])[0, 1])


# ----------------------------------------------------------------------------------------- expected_max_sharpe


def test_expected_max_sharpe_is_zero_without_a_choice() -> None:
    assert expected_max_sharpe(1.0, 1) == 0.0
    assert expected_max_sharpe(1.0, 0) == 0.0
    assert expected_max_sharpe(0.0, 100) == 0.0


def test_expected_max_sharpe_grows_with_the_number_of_trials() -> None:
    values = [expected_max_sharpe(0.01, n) for n in (2, 3, 5, 10, 100, 1000, 10_000)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert values[0] > 0


def test_expected_max_sharpe_scales_with_the_spread_of_the_trials() -> None:
    assert expected_max_sharpe(0.04, 50) == pytest.approx(2 * expected_max_sharpe(0.01, 50))


def test_two_trials() -> None:
    # (1 - g) * z(1/2) vanishes; left: g * z(1 - 1/(2e)) = 0.5772 * 0.9006
    assert expected_max_sharpe(1.0, 2) == pytest.approx(0.5772 * 0.9006, abs=1e-3)


@pytest.mark.parametrize("trials", [10, 100, 1000])
def test_expected_max_sharpe_approximates_the_best_of_n_standard_normals(trials: int) -> None:
    rng = np.random.default_rng(trials)
    simulated = float(rng.standard_normal((2000, trials)).max(axis=1).mean())
    assert expected_max_sharpe(1.0, trials) == pytest.approx(simulated, rel=0.05)


# --------------------------------------------------------------------------------------- deflated_sharpe_ratio


def test_deflated_sharpe_with_a_single_trial_is_the_probabilistic_sharpe() -> None:
    # returns alternate 1.1 % and -0.9 %: mean 0.1 %, population sigma 1 %, no skew, kurtosis 1;
    # Sharpe = 0.001 / (0.01 * sqrt(100 / 99)); z = Sharpe * sqrt(99) = 0.1 * 9.9 = 0.99
    returns = np.tile([0.011, -0.009], 50)
    expected = NormalDist().cdf(0.99)
    assert deflated_sharpe_ratio(returns, [0.1]) == pytest.approx(expected, rel=1e-9)
    assert deflated_sharpe_ratio(returns, []) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.8389, abs=1e-4)


def test_more_trials_deflate_the_same_returns_more() -> None:
    returns = np.random.default_rng(5).normal(0.0005, 0.01, 1000)
    few = deflated_sharpe_ratio(returns, [-0.01, 0.01] * 5)
    many = deflated_sharpe_ratio(returns, [-0.01, 0.01] * 500)
    alone = deflated_sharpe_ratio(returns, [])
    assert few is not None and many is not None and alone is not None
    assert 0.0 <= many < few < alone <= 1.0


def test_strong_returns_with_few_trials_are_near_certain() -> None:
    returns = np.random.default_rng(8).normal(0.002, 0.01, 1000)
    dsr = deflated_sharpe_ratio(returns, [0.05, 0.0, -0.03, 0.02])
    assert dsr is not None and dsr > 0.99


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_noise_after_many_trials_is_not_significant(seed: int) -> None:
    rng = np.random.default_rng(seed)
    trials = [per_bar_sharpe(rng.normal(0.0, 0.01, 500)) for _ in range(200)]
    returns = rng.normal(0.0, 0.01, 500)
    dsr = deflated_sharpe_ratio(returns, [s for s in trials if s is not None])
    assert dsr is not None and 0.0 <= dsr < 0.5


def test_deflated_sharpe_stays_a_probability() -> None:
    rng = np.random.default_rng(13)
    for _ in range(50):
        returns = rng.standard_t(3, 300) * 0.01 + rng.normal(0.0, 0.002)
        trials = list(rng.normal(0.0, 0.05, int(rng.integers(1, 100))))
        dsr = deflated_sharpe_ratio(returns, trials)
        assert dsr is None or 0.0 <= dsr <= 1.0


def test_deflated_sharpe_ignores_undefined_trial_sharpes() -> None:
    returns = np.random.default_rng(21).normal(0.0005, 0.01, 500)
    clean = [0.01, -0.02, 0.03]
    assert deflated_sharpe_ratio(returns, [*clean, math.nan, math.inf]) == deflated_sharpe_ratio(returns, clean)


def test_deflated_sharpe_is_undefined_without_enough_spread() -> None:
    assert deflated_sharpe_ratio(np.array([0.01, 0.02]), []) is None
    assert deflated_sharpe_ratio(np.full(100, 0.25), []) is None


def test_per_bar_sharpe() -> None:
    assert per_bar_sharpe(np.array([0.01, 0.03])) == pytest.approx(0.02 / math.sqrt(2 * 0.01**2))
    assert per_bar_sharpe(np.array([0.01])) is None
    assert per_bar_sharpe(np.full(10, 0.25)) is None  # exactly no spread


# ---------------------------------------------------------------------------------------------- permuted_series


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permuted_series_keeps_the_start_and_the_moves(seed: int) -> None:
    series = random_series(800, seed)
    permuted = permuted_series(series, np.random.default_rng(seed + 100))
    assert len(permuted) == len(series)
    assert permuted.close[0] == pytest.approx(series.close[0], rel=1e-12)
    real = np.sort(np.diff(np.log(series.close)))
    shuffled = np.sort(np.diff(np.log(permuted.close)))
    np.testing.assert_allclose(shuffled, real, rtol=0, atol=1e-12)
    assert not np.allclose(permuted.close, series.close)  # the order did change
    # same times, volumes and instrument
    assert np.array_equal(permuted.ts, series.ts) and np.array_equal(permuted.volume, series.volume)
    assert (permuted.symbol, permuted.timeframe) == (series.symbol, series.timeframe)


def test_permuted_bars_are_consistent_and_keep_their_shape() -> None:
    series = random_series(1000, 9)
    permuted = permuted_series(series, np.random.default_rng(1))
    tolerance = 1e-9 * permuted.close
    assert np.all(permuted.low <= np.minimum(permuted.open, permuted.close) + tolerance)
    assert np.all(permuted.high >= np.maximum(permuted.open, permuted.close) - tolerance)
    assert np.all(permuted.low > 0)
    # each bar's open, high and low keep their ratio to its close
    for column in ("open", "high", "low"):
        np.testing.assert_allclose(getattr(permuted, column) / permuted.close,
                                   getattr(series, column) / series.close, rtol=1e-12)


def test_permuted_series_is_reproducible_from_the_seed() -> None:
    series = random_series(300, 4)
    a = permuted_series(series, np.random.default_rng(77))
    b = permuted_series(series, np.random.default_rng(77))
    assert np.array_equal(a.close, b.close) and np.array_equal(a.high, b.high)


# ------------------------------------------------------------------------------------------- permutation_pvalue


def trending_series(seed: int, n: int = 600) -> BarSeries:
    """Log returns with strong momentum (AR(1), phi 0.8): the real order has memory a shuffle destroys."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 0.01, n)
    moves = np.empty(n)
    moves[0] = shocks[0]
    for i in range(1, n):
        moves[i] = 0.8 * moves[i - 1] + shocks[i]
    return series_from_log_returns(moves)


def test_the_real_order_of_a_trending_series_is_significant() -> None:
    series = trending_series(3)
    actual = lag1_autocorrelation(series)
    assert actual > 0.6
    p = permutation_pvalue(lag1_autocorrelation, series, actual, permutations=99, seed=1)
    assert p == pytest.approx(1 / 100)  # no shuffle comes close: only the +1 correction is left


def test_pure_noise_gives_spread_out_large_pvalues() -> None:
    pvalues = []
    for seed in range(20):
        series = series_from_log_returns(np.random.default_rng(seed).normal(0.0, 0.01, 400))
        pvalues.append(permutation_pvalue(lag1_autocorrelation, series, lag1_autocorrelation(series),
                                          permutations=49, seed=seed))
    assert all(1 / 50 <= p <= 1.0 for p in pvalues)
    assert 0.3 < float(np.mean(pvalues)) < 0.7  # about uniform on (0, 1]
    assert sum(p <= 0.05 for p in pvalues) <= 3
    assert max(pvalues) - min(pvalues) > 0.5


def test_permutation_pvalue_is_deterministic_for_a_seed() -> None:
    series = series_from_log_returns(np.random.default_rng(42).normal(0.0, 0.01, 300))
    actual = lag1_autocorrelation(series)
    first = permutation_pvalue(lag1_autocorrelation, series, actual, permutations=60, seed=5)
    assert permutation_pvalue(lag1_autocorrelation, series, actual, permutations=60, seed=5) == first
    assert first * 61 == pytest.approx(round(first * 61))  # a count over permutations + 1


def test_permutation_pvalue_counts_ties_and_skips_undefined_scores() -> None:
    series = random_series(100, 1)
    calls: list[int] = []

    def constant(path: BarSeries) -> float:
        calls.append(len(path))
        return 1.0

    assert permutation_pvalue(constant, series, 1.0, permutations=9, seed=0) == 1.0  # ties count as "at least"
    assert calls == [100] * 9
    assert permutation_pvalue(lambda _: None, series, 1.0, permutations=9, seed=0) == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------- bootstrap_pvalue


def test_bootstrap_pvalue_small_for_clearly_positive_trades() -> None:
    returns = np.random.default_rng(2).normal(1.0, 1.0, 60)
    p = bootstrap_pvalue(returns, samples=2000, seed=3)
    assert p is not None and p < 0.01
    assert p >= 1 / 2001


def test_bootstrap_pvalue_large_for_centred_trades() -> None:
    raw = np.random.default_rng(4).normal(0.0, 1.0, 60)
    p = bootstrap_pvalue(raw - raw.mean(), samples=2000, seed=3)
    assert p is not None and 0.3 < p < 0.7


def test_bootstrap_pvalue_large_for_losing_trades() -> None:
    p = bootstrap_pvalue(np.random.default_rng(6).normal(-1.0, 1.0, 40), samples=1000, seed=1)
    assert p is not None and p > 0.9


def test_bootstrap_pvalue_needs_two_trades() -> None:
    assert bootstrap_pvalue(np.array([]), samples=100, seed=0) is None
    assert bootstrap_pvalue(np.array([3.0]), samples=100, seed=0) is None
    assert bootstrap_pvalue(np.array([3.0, 1.0]), samples=100, seed=0) is not None


def test_bootstrap_pvalue_is_deterministic_for_a_seed() -> None:
    returns = np.random.default_rng(9).normal(0.2, 1.0, 30)
    assert bootstrap_pvalue(returns, 500, 11) == bootstrap_pvalue(returns, 500, 11)


# ------------------------------------------------------------------------------------------ neighbours, stability

GRIDS = {"fast": [5, 10, 15, 20], "slow": [20, 30, 40], "kind": ["sma", "ema"], "fixed": [3]}


def test_neighbours_in_the_middle_and_at_the_edges() -> None:
    params = {"fast": 5, "slow": 30, "kind": "sma", "fixed": 3}
    assert neighbours(params, GRIDS) == [
        {"fast": 10, "slow": 30, "kind": "sma", "fixed": 3},  # fast 5 is the lower edge: one side only
        {"fast": 5, "slow": 20, "kind": "sma", "fixed": 3},
        {"fast": 5, "slow": 40, "kind": "sma", "fixed": 3},
    ]  # string choices and one-value grids have no steps
    top = neighbours({"fast": 20, "slow": 40, "kind": "ema", "fixed": 3}, GRIDS)
    assert top == [{"fast": 15, "slow": 40, "kind": "ema", "fixed": 3},
                   {"fast": 20, "slow": 30, "kind": "ema", "fixed": 3}]


def test_neighbours_of_off_grid_values_snap_to_the_nearest() -> None:
    out = neighbours({"fast": 12, "slow": 38}, {"fast": [5, 10, 15, 20], "slow": [20, 30, 40]})
    # 12 is nearest 10 (neighbours 5 and 15), 38 nearest 40 (neighbour 30 only)
    assert out == [{"fast": 5, "slow": 38}, {"fast": 15, "slow": 38}, {"fast": 12, "slow": 30}]


def test_neighbours_of_float_grids() -> None:
    out = neighbours({"k": 0.35}, {"k": [0.1, 0.2, 0.3, 0.4, 0.5]})
    assert [p["k"] for p in out] in ([0.2, 0.4], [0.3, 0.5])  # 0.35 sits between two grid points
    assert neighbours({"k": 0.3}, {"k": [0.1, 0.2, 0.3, 0.4, 0.5]}) == [{"k": 0.2}, {"k": 0.4}]


def test_neighbours_with_nothing_to_vary() -> None:
    assert neighbours({"kind": "sma", "fixed": 3}, {"kind": ["sma", "ema"], "fixed": [3]}) == []


def test_stability_counts_neighbours_keeping_half_the_objective() -> None:
    result = stability(2.0, [1.5, 1.0, 0.9, None, math.nan])
    # 1.5 and 1.0 hold (>= 1.0); 0.9 does not; None and NaN are invalid neighbours that fail
    assert result == Stability(neighbours=5, holding=2, median_ratio=pytest.approx(0.5))
    assert result.score == pytest.approx(0.4)


def test_stability_of_a_non_positive_objective_holds_nothing() -> None:
    for objective in (-1.0, 0.0):
        result = stability(objective, [5.0, 6.0, -2.0])
        assert (result.neighbours, result.holding, result.median_ratio) == (3, 0, None)
        assert result.score == 0.0


def test_stability_without_neighbours_is_undefined() -> None:
    result = stability(1.0, [])
    assert (result.neighbours, result.holding, result.median_ratio, result.score) == (0, 0, None, None)
    only_invalid = stability(1.0, [None, None])
    assert (only_invalid.holding, only_invalid.median_ratio, only_invalid.score) == (0, None, 0.0)
