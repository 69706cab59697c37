"""Training jobs: stored market data in, trained configurations with their evidence and lifecycle stage out.

For one strategy on one series:

1. The last `holdout` share of the bars is set aside; nothing below sees it until step 5.
2. The strategy's fast path, if any, is checked for look-ahead on the in-sample bars.
3. The study (optuna, in PostgreSQL) searches the in-sample bars; every trial lands in optimization_trials.
4. Walk-forward re-optimises on rolling (or anchored) windows of the in-sample bars and trades each next window.
5. The best `top` distinct parameter sets are each evaluated in-sample, on the holdout (after a warm-up on the
   bars before it), for significance (deflated Sharpe over all the study's trials, a permutation test, a trade
   bootstrap) and for stability across neighbouring parameters.
6. The lifecycle rules decide each one's stage; configuration and decision are upserted with the data range,
   the data's hash and the code version, so a rerun refreshes rather than duplicates and a result can be
   reproduced.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
import psycopg

from agents.bars import BarSeries, HigherTimeframes
from agents.strategies.base import ChoiceParam, ParamError, Strategy
from streams.keys import stable_id
from tradepulse.version import code_version
from training.backtest import BacktestResult
from training.lifecycle import decide
from training.lookahead import check_no_lookahead
from training.metrics import YEAR_MS, bar_returns
from training.optimize import Evaluation, SearchSpec, grid_size, grid_space, optimise, ranked_trials
from training.progress import Reporter
from training.significance import (
    bootstrap_pvalue,
    deflated_sharpe_ratio,
    neighbours,
    per_bar_sharpe,
    permutation_pvalue,
    stability,
)
from training.store import TrainedConfiguration, link_trial, record_decision, upsert_configuration, upsert_trial
from training.walkforward import WalkForwardSpec, trade_window, walk_forward

logger = logging.getLogger(__name__)

MIN_BARS = 300
"""Fewer in-sample bars than this cannot carry an optimisation, a walk-forward and a holdout."""


class TrainingError(ValueError):
    """A training job that cannot run as asked; the message says why."""


@dataclass(frozen=True)
class TrainingSpec:
    search: SearchSpec
    walk_forward: WalkForwardSpec = field(default_factory=WalkForwardSpec)
    holdout: float = 0.2
    top: int = 3
    permutations: int = 100
    bootstrap_samples: int = 2000

    def __post_init__(self) -> None:
        if not 0.05 <= self.holdout <= 0.5:
            raise ValueError("the holdout must be between 5% and 50% of the bars")
        if self.top < 1:
            raise ValueError("top must be >= 1")
        if self.permutations < 0:
            raise ValueError("permutations must be >= 0")


@dataclass
class TrainedResult:
    """What one job produced, for the report."""

    study: str
    trials: int
    configurations: list[TrainedConfiguration]


def study_name(spec: TrainingSpec, series: BarSeries) -> str:
    """One study per strategy, series (by content), method, objective and holdout: reruns continue it."""
    search = spec.search
    return (f"{search.strategy}|{series.exchange}:{series.symbol}|{series.timeframe}|{series.content_hash()[:12]}|"
            f"{search.method}|{search.objective.metric}|min{search.objective.min_trades}|h{spec.holdout:g}")


def split_holdout(series: BarSeries, holdout: float) -> tuple[BarSeries, int]:
    """The in-sample part and the index where the holdout starts."""
    start = len(series) - round(len(series) * holdout)
    return series.slice(0, start), start


def check_trainable(spec: TrainingSpec, series: BarSeries) -> None:
    """Refuse, before anything is written, a job that cannot give meaningful results."""
    cls = Evaluation(spec.search, series).cls
    in_sample, _ = split_holdout(series, spec.holdout)
    if len(in_sample) < MIN_BARS:
        raise TrainingError(
            f"{series.exchange} {series.symbol} {series.timeframe} has {len(series)} bars; with a "
            f"{spec.holdout:.0%} holdout that leaves {len(in_sample)} in-sample, fewer than {MIN_BARS}"
        )
    if not _can_trade(cls, series.timeframe):
        raise TrainingError(f"{cls.name} cannot trade {series.timeframe} bars: none of its higher timeframes is above "
                            f"{series.timeframe}")


def _can_trade(cls: type[Strategy], timeframe: str) -> bool:
    """Whether some parameter choice gives higher timeframes the base timeframe can be rolled up into."""
    overrides: list[dict[str, Any]] = [{}] + [
        {name: choice} for name, spec in cls.parameters.items() if isinstance(spec, ChoiceParam)
        for choice in spec.choices
    ]
    for override in overrides:
        try:
            HigherTimeframes(timeframe, cls(override).higher_timeframes())
        except ValueError:
            continue
        return True
    return False


def train(
    spec: TrainingSpec,
    series: BarSeries,
    conn: psycopg.Connection,
    storage: optuna.storages.BaseStorage,
    reporter: Reporter,
) -> TrainedResult:
    """Run the whole job for one strategy on one series (see the module docstring)."""
    check_trainable(spec, series)
    name = study_name(spec, series)
    in_sample, holdout_start = split_holdout(series, spec.holdout)
    evaluation = Evaluation(spec.search, in_sample)
    full = Evaluation(spec.search, series)
    check_no_lookahead(evaluation.cls(), in_sample)
    data_start, data_end = int(series.ts[0]), int(series.ts[-1]) + series.span_ms
    target = min(spec.search.trials, grid_size(evaluation.cls)) if spec.search.method == "grid" else spec.search.trials

    def mirror(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        upsert_trial(conn, study=name, trial_number=trial.number, strategy=spec.search.strategy,
                     params=trial.user_attrs.get("params", trial.params),
                     metrics={**trial.user_attrs.get("metrics", {}),
                              **({"pruned": trial.user_attrs["pruned"]} if "pruned" in trial.user_attrs else {})},
                     objective=trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None,
                     state=trial.state.name, data_start_ms=data_start,
                     data_end_ms=int(in_sample.ts[-1]) + series.span_ms)
        conn.commit()

    label = f"{spec.search.strategy} {series.symbol} {series.timeframe}"
    with reporter.stage("optimise", target, f"optimise {label}") as progress:
        study = optimise(spec.search, in_sample, study_name=name, storage=storage, on_trial=mirror, progress=progress)
    ranked = ranked_trials(study)
    trial_sharpes = _trial_sharpes(study, series.span_ms)
    with reporter.stage("walk_forward", 1, f"walk-forward {label}") as progress:
        wf = walk_forward(spec.search, in_sample, spec.walk_forward)
        progress.advance(1, f"efficiency {wf.efficiency:.2f}" if wf.efficiency is not None else "")
    chosen = ranked[:spec.top]
    configurations: list[TrainedConfiguration] = []
    with reporter.stage("validate", len(chosen), f"validate {label}") as progress:
        for trial in chosen:
            params = trial.user_attrs["params"]
            in_result = evaluation.backtest(params)
            holdout = trade_window(full, params, series, holdout_start, len(series))
            significance = _significance(spec, evaluation, params, in_result, holdout, trial_sharpes, trial.number)
            evidence = {"in_sample": in_result.metrics, "out_of_sample": holdout.metrics,
                        "walk_forward": wf.summary(), "significance": significance}
            decision = decide(evidence)
            config = TrainedConfiguration(
                configuration_id=stable_id("configuration", name, json.dumps(params, sort_keys=True)),
                strategy=spec.search.strategy, params=params, exchange=series.exchange, symbol=series.symbol,
                timeframe=series.timeframe, stage=decision.stage, stage_reasons=decision.reasons,
                in_sample=in_result.metrics, out_of_sample=holdout.metrics, walk_forward=wf.summary(),
                significance=significance, data_start_ms=data_start, data_end_ms=data_end,
                data_hash=series.content_hash(), code_version=code_version(), study=name, trial_number=trial.number,
                allocation=spec.search.config.cash, execution=asdict(spec.search.config.execution),
                risk=asdict(spec.search.config.risk),
            )
            previous = upsert_configuration(conn, config)
            record_decision(
                conn, decision_id=stable_id("decision", config.configuration_id, decision.rules_version,
                                            config.data_hash, config.code_version),
                configuration_id=config.configuration_id, previous_stage=previous, stage=decision.stage,
                rules_version=decision.rules_version, checks=decision.checks_json(), reasons=decision.reasons,
            )
            link_trial(conn, name, trial.number, config.configuration_id)
            conn.commit()
            configurations.append(config)
            progress.advance(1, f"{decision.stage}")
    return TrainedResult(name, len(study.trials), configurations)


def _trial_sharpes(study: optuna.Study, bar_ms: int) -> list[float]:
    """Every completed trial's Sharpe ratio per bar (the trials the deflated Sharpe ratio must account for)."""
    scale = math.sqrt(YEAR_MS / bar_ms)
    return [t.user_attrs["metrics"]["sharpe"] / scale for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE
            and isinstance(t.user_attrs.get("metrics", {}).get("sharpe"), int | float)]


def _significance(spec: TrainingSpec, evaluation: Evaluation, params: dict[str, Any], in_result: BacktestResult,
                  holdout: BacktestResult, trial_sharpes: list[float], trial_number: int) -> dict[str, Any]:
    returns = bar_returns(in_result.equity, in_result.initial_cash)
    objective = spec.search.objective

    def score(series: BarSeries) -> float | None:
        return evaluation.score(params, series)[0]

    actual, _ = evaluation.score(params)
    seed = spec.search.seed * 1_000 + trial_number
    permutation = (permutation_pvalue(score, evaluation.series, actual, spec.permutations, seed)
                   if actual is not None and spec.permutations else None)
    trades = np.concatenate([in_result.table.return_pct, holdout.table.return_pct])
    neighbour_scores = [_safe_score(evaluation, p) for p in neighbours(params, grid_space(evaluation.cls))]
    stable = stability(actual if actual is not None else -math.inf, neighbour_scores)
    return {
        "objective": objective.metric,
        "objective_value": actual,
        "trials": len(trial_sharpes),
        "sharpe_per_bar": per_bar_sharpe(returns),
        "deflated_sharpe": deflated_sharpe_ratio(returns, trial_sharpes),
        "permutation_pvalue": permutation,
        "permutations": spec.permutations,
        "bootstrap_pvalue": bootstrap_pvalue(trades, spec.bootstrap_samples, seed),
        "stability": stable.score,
        "stability_neighbours": stable.neighbours,
        "stability_median_ratio": stable.median_ratio,
    }


def _safe_score(evaluation: Evaluation, params: dict[str, Any]) -> float | None:
    try:
        return evaluation.score(evaluation.cls.validate_params(params))[0]
    except ParamError:
        return None

