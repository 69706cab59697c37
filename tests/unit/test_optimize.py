"""Parameter search in memory (no database): the grid, seeded samplers, pruning, ranking and the specs' checks."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial, TrialState

from agents.bars import BarSeries
from agents.strategies import UnknownStrategy, strategy_class
from tests.strategy_helpers import random_series
from training.backtest import BacktestResult
from training.optimize import (
    Evaluation,
    Objective,
    SearchSpec,
    finished,
    grid_size,
    grid_space,
    optimise,
    ranked_trials,
    sampler_for,
    storage_url,
)

FAST = list(range(5, 51, 5))
SLOW = list(range(20, 201, 10))
INVALID = {(f, s) for f in FAST for s in SLOW if f >= s}


@pytest.fixture(scope="module")
def series() -> BarSeries:
    return random_series(2000, 21)


@pytest.fixture(scope="module")
def grid_study(series: BarSeries) -> optuna.Study:
    return optimise(SearchSpec("sma_cross", method="grid", trials=500), series, study_name="grid", storage=None)


def params_of(study: optuna.Study) -> list[tuple[int, int]]:
    return [(t.params["fast"], t.params["slow"]) for t in study.trials]


def run(series: BarSeries, method: str, seed: int = 7, trials: int = 12, **objective: Any) -> optuna.Study:
    spec = SearchSpec("sma_cross", method=method, trials=trials, seed=seed,  # type: ignore[arg-type]
                      objective=Objective(**objective))
    return optimise(spec, series, study_name=f"{method}-{seed}", storage=None)


# ------------------------------------------------------------------------------------------------- the grid


def test_grid_space_and_size_of_sma_cross() -> None:
    cls = strategy_class("sma_cross")
    assert grid_space(cls) == {"fast": FAST, "slow": SLOW}
    assert grid_size(cls) == 10 * 19 == 190
    assert len(INVALID) == 16  # fast 20, 25: 1 each; 30, 35: 2; 40, 45: 3; 50: 4


def test_grid_search_visits_every_point_once(grid_study: optuna.Study) -> None:
    visited = params_of(grid_study)
    assert len(visited) == 190
    assert set(visited) == set(itertools.product(FAST, SLOW))
    assert finished(grid_study) == 190


def test_grid_search_prunes_exactly_the_invalid_points(grid_study: optuna.Study) -> None:
    invalid = [t for t in grid_study.trials if t.user_attrs.get("pruned", "").startswith("invalid parameters")]
    assert {(t.params["fast"], t.params["slow"]) for t in invalid} == INVALID
    assert len(invalid) == 16
    for t in invalid:
        assert t.state == TrialState.PRUNED
        assert f"fast ({t.params['fast']}) must be shorter than slow ({t.params['slow']})" in t.user_attrs["pruned"]
        assert "params" not in t.user_attrs and "metrics" not in t.user_attrs  # never backtested


def test_every_trial_outcome_is_explained(grid_study: optuna.Study) -> None:
    min_trades = Objective().min_trades
    for t in grid_study.trials:
        if t.state == TrialState.COMPLETE:
            assert "pruned" not in t.user_attrs
            metrics = t.user_attrs["metrics"]
            assert metrics["trades"] >= min_trades
            assert t.value == pytest.approx(metrics["sharpe"])
            assert t.user_attrs["params"] == t.params
            continue
        assert t.state == TrialState.PRUNED
        reason = t.user_attrs["pruned"]
        if reason.startswith("invalid parameters"):
            continue
        if reason.startswith("below the median"):
            assert reason in ("below the median of earlier trials at 40% of the data",
                              "below the median of earlier trials at 70% of the data")
        else:
            trades = t.user_attrs["metrics"]["trades"]
            assert reason == f"{trades} trades, fewer than {min_trades}" and trades < min_trades
    assert any(t.state == TrialState.COMPLETE for t in grid_study.trials)


def test_a_grid_smaller_than_asked_stops_at_the_number_asked(series: BarSeries) -> None:
    study = run(series, "grid", trials=20)
    assert len(study.trials) == finished(study) == 20
    assert len(set(params_of(study))) == 20


# -------------------------------------------------------------------------------------------- seeded samplers


@pytest.mark.parametrize("method", ["tpe", "random"])
def test_seeded_searches_are_deterministic(series: BarSeries, method: str) -> None:
    first, second = run(series, method), run(series, method)
    assert params_of(first) == params_of(second)
    assert [t.state for t in first.trials] == [t.state for t in second.trials]
    assert [t.value for t in first.trials] == [t.value for t in second.trials]
    assert finished(first) == 12


def test_another_seed_samples_other_parameters(series: BarSeries) -> None:
    assert params_of(run(series, "random", seed=1)) != params_of(run(series, "random", seed=2))


def test_samplers_follow_the_method() -> None:
    assert isinstance(sampler_for(SearchSpec("sma_cross", method="grid")), optuna.samplers.GridSampler)
    assert isinstance(sampler_for(SearchSpec("sma_cross", method="random")), optuna.samplers.RandomSampler)
    assert isinstance(sampler_for(SearchSpec("sma_cross", method="tpe")), optuna.samplers.TPESampler)


# -------------------------------------------------------------------------------------------------- pruning


def test_trials_with_too_few_trades_are_pruned_with_a_reason(series: BarSeries) -> None:
    study = run(series, "random", trials=6, min_trades=10_000)
    assert len(study.trials) == 6
    assert all(t.state == TrialState.PRUNED for t in study.trials)
    backtested = [t for t in study.trials if "metrics" in t.user_attrs]
    assert backtested
    for t in backtested:
        trades = t.user_attrs["metrics"]["trades"]
        assert t.user_attrs["pruned"] == f"{trades} trades, fewer than 10000"
    assert ranked_trials(study) == []


def test_evaluation_score_needs_the_minimum_trades(series: BarSeries) -> None:
    params = {"fast": 10, "slow": 30}
    value, result = Evaluation(SearchSpec("sma_cross", objective=Objective(min_trades=10_000)), series).score(params)
    assert value is None and result.metrics["trades"] < 10_000
    value, result = Evaluation(SearchSpec("sma_cross", objective=Objective(min_trades=0)), series).score(params)
    assert value == result.metrics["sharpe"] and value is not None
    value, _ = Evaluation(SearchSpec("sma_cross", objective=Objective("total_return_pct", 0)), series).score(params)
    assert value == pytest.approx(result.metrics["total_return_pct"])


def test_on_trial_sees_every_trial(series: BarSeries) -> None:
    seen: list[int] = []
    spec = SearchSpec("sma_cross", method="random", trials=5)
    study = optimise(spec, series, study_name="callback", storage=None, on_trial=lambda s, t: seen.append(t.number))
    assert seen == [t.number for t in study.trials] == list(range(5))


def test_a_continued_study_mirrors_again_the_trials_a_killed_process_finished(series: BarSeries) -> None:
    storage = optuna.storages.InMemoryStorage()
    optimise(SearchSpec("sma_cross", method="random", trials=3), series, study_name="remirror", storage=storage)
    seen: list[int] = []  # as if the first process had died before mirroring any of its trials
    optimise(SearchSpec("sma_cross", method="random", trials=5), series, study_name="remirror", storage=storage,
             on_trial=lambda s, t: seen.append(t.number))
    assert sorted(seen) == [0, 1, 2, 3, 4]


def test_a_study_continues_to_the_number_asked(series: BarSeries) -> None:
    storage = optuna.storages.InMemoryStorage()
    first = optimise(SearchSpec("sma_cross", method="random", trials=5), series, study_name="resume", storage=storage)
    assert finished(first) == 5
    more = optimise(SearchSpec("sma_cross", method="random", trials=8), series, study_name="resume", storage=storage)
    assert finished(more) == 8 and len(more.trials) == 8
    again = optimise(SearchSpec("sma_cross", method="random", trials=8), series, study_name="resume", storage=storage)
    assert len(again.trials) == 8  # nothing left to do


# -------------------------------------------------------------------------------------------------- ranking


def test_ranked_trials_best_first_with_distinct_params(grid_study: optuna.Study) -> None:
    ranked = ranked_trials(grid_study)
    complete = [t for t in grid_study.trials if t.state == TrialState.COMPLETE]
    assert ranked and len(ranked) == len(complete)  # the grid never repeats a point
    values = [t.value for t in ranked]
    assert all(v is not None for v in values)
    assert values == sorted(values, reverse=True)  # type: ignore[type-var]
    assert len({tuple(sorted(t.user_attrs["params"].items())) for t in ranked}) == len(ranked)
    assert ranked[0].value == grid_study.best_value


DISTRIBUTIONS = {"fast": IntDistribution(5, 50, step=5), "slow": IntDistribution(20, 200, step=10)}


def frozen(fast: int, slow: int, value: float | None, state: TrialState = TrialState.COMPLETE) -> FrozenTrial:
    params = {"fast": fast, "slow": slow}
    return optuna.trial.create_trial(state=state, value=value, params=params, distributions=DISTRIBUTIONS,
                                     user_attrs={"params": params})


def hand_study(*trials: FrozenTrial) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for t in trials:
        study.add_trial(t)
    return study


def test_ranked_trials_on_a_hand_built_study() -> None:
    study = hand_study(
        frozen(5, 20, 1.0),  # 0: repeats the parameters of 1, which did better
        frozen(5, 20, 2.0),  # 1
        frozen(10, 30, 1.5),  # 2
        frozen(15, 40, -0.5),  # 3
        frozen(20, 50, 1.5),  # 4: ties 2, comes after it
        frozen(25, 60, None, TrialState.PRUNED),  # 5: not complete
    )
    assert [t.number for t in ranked_trials(study)] == [1, 2, 4, 3]


def test_a_zero_objective_ranks_above_a_negative_one() -> None:
    study = hand_study(frozen(5, 20, -0.5), frozen(10, 30, 0.0), frozen(15, 40, 0.3))
    assert [t.value for t in ranked_trials(study)] == [0.3, 0.0, -0.5]


# ---------------------------------------------------------------------------------------------- the specs


@pytest.mark.parametrize("kwargs", [{"metric": "win_rate"}, {"metric": "trades"}, {"min_trades": -1}])
def test_bad_objectives_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Objective(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"strategy": "sma_cross", "method": "bayes"},
    {"strategy": "sma_cross", "trials": 0},
    {"strategy": "sma_cross", "trials": -3},
])
def test_bad_search_specs_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SearchSpec(**kwargs)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(UnknownStrategy, match="unknown strategy 'no_such_thing'"):
        SearchSpec("no_such_thing")
    assert issubclass(UnknownStrategy, ValueError)


def fake_result(metrics: dict[str, Any]) -> BacktestResult:
    return SimpleNamespace(metrics=metrics)  # type: ignore[return-value]


def test_objective_score_takes_only_finite_numbers() -> None:
    assert Objective("sortino").score(fake_result({"sortino": 1.25})) == 1.25
    assert Objective("expectancy").score(fake_result({"expectancy": 3})) == 3.0
    assert Objective("profit_factor").score(fake_result({"profit_factor": None})) is None
    assert Objective().score(fake_result({"sharpe": math.inf})) is None
    assert Objective().score(fake_result({"sharpe": math.nan})) is None
    assert Objective().score(fake_result({})) is None


# ---------------------------------------------------------------------------------------------- storage_url


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://user:pw@db:5432/tradepulse", "postgresql+psycopg://user:pw@db:5432/tradepulse"),
    ("postgres://user@localhost/tp?sslmode=disable", "postgresql+psycopg://user@localhost/tp?sslmode=disable"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:///studies.db", "sqlite:///studies.db"),
])
def test_storage_url(url: str, expected: str) -> None:
    assert storage_url(url) == expected
