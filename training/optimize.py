"""Parameter search with optuna: grid, TPE or random sampling over a strategy's declared search space.

Studies live in PostgreSQL (optuna's RDB storage, in the `optuna` schema), so an interrupted search resumes where
it stopped and several processes or machines can work on one study: each loads it by name and takes trials until
the study holds the number asked for. A process that dies mid-trial stops sending heartbeats; its trial is marked
failed and run again by whoever continues the study.

Each trial backtests one parameter set (the compiled fast path where the strategy has one). The objective is a
metric of the result (Sharpe by default). Hopeless trials are pruned: invalid parameter combinations at once,
then, at checkpoints through the data, a trial whose objective so far is below the median of earlier trials at
the same point (optuna's MedianPruner), and finally a trial with fewer trades than the minimum. Every trial, pruned
or not, is mirrored into optimization_trials with its parameters, metrics and data range.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import optuna

from agents.bars import BarSeries
from agents.strategies import strategy_class
from agents.strategies.base import ChoiceParam, FloatParam, IntParam, ParamError, Strategy
from tradepulse.settings import Settings
from training.backtest import BacktestConfig, BacktestError, BacktestResult, run_backtest
from training.progress import StageProgress

logger = logging.getLogger(__name__)

Method = Literal["grid", "tpe", "random"]
METHODS: tuple[str, ...] = ("grid", "tpe", "random")
OBJECTIVES: tuple[str, ...] = ("sharpe", "sortino", "calmar", "total_return_pct", "cagr_pct", "profit_factor",
                               "expectancy")
WORKER = f"{socket.gethostname()}:{os.getpid()}"
"""Which process ran a trial (studies can be shared by several)."""
CHECKPOINTS = (0.4, 0.7)
"""Fractions of the data after which a trial's objective so far is reported to the pruner."""


@dataclass(frozen=True)
class Objective:
    """What a trial scores: a metric (higher is better) and the trades needed for it to count."""

    metric: str = "sharpe"
    min_trades: int = 10

    def __post_init__(self) -> None:
        if self.metric not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.metric!r}; expected one of {', '.join(OBJECTIVES)}")
        if self.min_trades < 0:
            raise ValueError("min_trades must be >= 0")

    def score(self, result: BacktestResult) -> float | None:
        value = result.metrics.get(self.metric)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


@dataclass(frozen=True)
class SearchSpec:
    """One optimisation: a strategy over one series with one method."""

    strategy: str
    method: Method = "tpe"
    trials: int = 50
    objective: Objective = field(default_factory=Objective)
    config: BacktestConfig = field(default_factory=BacktestConfig)
    seed: int = 7

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.trials < 1:
            raise ValueError("trials must be >= 1")
        strategy_class(self.strategy)


def grid_space(cls: type[Strategy]) -> dict[str, list[Any]]:
    """Every parameter's grid (the declared search space)."""
    return {name: spec.grid() for name, spec in cls.parameters.items()}


def grid_size(cls: type[Strategy]) -> int:
    return math.prod(len(values) for values in grid_space(cls).values())


def suggest(trial: optuna.Trial, cls: type[Strategy]) -> dict[str, Any]:
    """Parameters for a trial from the strategy's declared space."""
    params: dict[str, Any] = {}
    for name, spec in cls.parameters.items():
        if isinstance(spec, IntParam):
            low, high, step = spec.space
            params[name] = trial.suggest_int(name, low, high, step=step)
        elif isinstance(spec, FloatParam):
            low, high = spec.space
            value = trial.suggest_float(name, low, high, step=spec.step, log=spec.log)
            params[name] = round(value, 10) if spec.step is not None else value  # 0.35, not 0.35000000000000003
        else:
            assert isinstance(spec, ChoiceParam)
            params[name] = trial.suggest_categorical(name, list(spec.choices))
    return params


def sampler_for(spec: SearchSpec) -> optuna.samplers.BaseSampler:
    if spec.method == "grid":
        return optuna.samplers.GridSampler(grid_space(strategy_class(spec.strategy)), seed=spec.seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=min(10, max(2, spec.trials // 4)))


def storage_url(database_url: str) -> str:
    """SQLAlchemy's URL for the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    return database_url


STORAGE_LOCK = 0x7470_6f70_7475_6e61 & 0x7FFF_FFFF_FFFF_FFFF
"""Advisory lock key held while optuna's tables are checked or created."""


def rdb_storage(settings: Settings) -> optuna.storages.RDBStorage:
    """optuna's storage in the `optuna` schema, with heartbeats: a trial whose process has been silent for
    `training.grace_s` is failed and queued again by whoever continues the study."""
    import psycopg

    # optuna creates its tables on first use; two processes doing it at once collide, so they take turns.
    with psycopg.connect(settings.database.url, connect_timeout=10, autocommit=True) as lock, \
            warnings.catch_warnings():
        lock.execute("SELECT pg_advisory_lock(%s)", (STORAGE_LOCK,))
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            storage_url(settings.database.url),
            engine_kwargs={"connect_args": {"options": "-c search_path=optuna"}, "pool_pre_ping": True},
            heartbeat_interval=settings.training.heartbeat_s,
            grace_period=settings.training.grace_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
        )


class Evaluation:
    """Backtests of one strategy over one series; `run` scores a parameter set, pruning as it goes."""

    def __init__(self, spec: SearchSpec, series: BarSeries) -> None:
        self.spec = spec
        self.cls = strategy_class(spec.strategy)
        self.series = series

    def backtest(self, params: Mapping[str, Any], series: BarSeries | None = None) -> BacktestResult:
        strategy = self.cls(params)
        data = self.series if series is None else series
        return run_backtest(strategy, data, self.spec.config, warmup=min(strategy.warmup_bars(), len(data) - 2),
                            path="auto")

    def score(self, params: Mapping[str, Any], series: BarSeries | None = None) -> tuple[float | None, BacktestResult]:
        """The objective (None when it does not count: too few trades, undefined metric) and the result."""
        result = self.backtest(params, series)
        if result.metrics["trades"] < self.spec.objective.min_trades:  # type: ignore[operator]
            return None, result
        return self.spec.objective.score(result), result

    def trial(self, trial: optuna.Trial) -> float:
        """optuna's objective function."""
        try:
            params = self.cls.validate_params(suggest(trial, self.cls))
        except ParamError as exc:
            trial.set_user_attr("pruned", f"invalid parameters: {exc}")
            raise optuna.TrialPruned(str(exc)) from exc
        trial.set_user_attr("params", params)
        trial.set_user_attr("worker", WORKER)
        n = len(self.series)
        try:
            for step, fraction in enumerate(CHECKPOINTS):
                partial = self.backtest(params, self.series.slice(0, int(n * fraction)))
                value = self.spec.objective.score(partial)
                if value is None:  # nothing to judge yet (no trades so far): let the trial go on
                    continue
                trial.report(value, step)
                if trial.should_prune():
                    trial.set_user_attr("metrics", partial.metrics)
                    trial.set_user_attr("pruned", f"below the median of earlier trials at {fraction:.0%} of the data")
                    raise optuna.TrialPruned()
            value, result = self.score(params)
        except BacktestError as exc:
            trial.set_user_attr("pruned", str(exc))
            raise optuna.TrialPruned(str(exc)) from exc
        trial.set_user_attr("metrics", result.metrics)
        if value is None:
            reason = (f"{result.metrics['trades']} trades, fewer than {self.spec.objective.min_trades}"
                      if result.metrics["trades"] < self.spec.objective.min_trades  # type: ignore[operator]
                      else f"{self.spec.objective.metric} is undefined")
            trial.set_user_attr("pruned", reason)
            raise optuna.TrialPruned(reason)
        return value


def finished(study: optuna.Study) -> int:
    """Trials that count towards the study's target: completed or pruned."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def optimise(
    spec: SearchSpec,
    series: BarSeries,
    *,
    study_name: str,
    storage: optuna.storages.BaseStorage | None,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    progress: StageProgress | None = None,
) -> optuna.Study:
    """Run (or continue) the study until it holds `spec.trials` finished trials; returns it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name, storage=storage, sampler=sampler_for(spec), direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0), load_if_exists=True,
    )
    study.set_user_attr("strategy", spec.strategy)
    _fail_trials_that_never_beat(storage, study_name)
    evaluation = Evaluation(spec, series)
    target = min(spec.trials, grid_size(evaluation.cls)) if spec.method == "grid" else spec.trials
    if progress is not None:
        progress.advance(finished(study))
    if on_trial is not None:  # a process killed between a trial's end and its callback left that trial unmirrored
        ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        for trial in study.get_trials(deepcopy=False, states=ended):
            on_trial(study, trial)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(study, trial)
        if progress is not None:
            best = _best_value(study)
            progress.advance(1, f"best {spec.objective.metric} {best:.3f}" if best is not None else "")
        if finished(study) >= target:
            study.stop()

    remaining = target - finished(study)
    if remaining > 0:
        study.optimize(evaluation.trial, n_trials=remaining * 2 + 10, callbacks=[callback], gc_after_trial=False)
    return study


def _fail_trials_that_never_beat(storage: optuna.storages.BaseStorage | None, study_name: str) -> None:
    """optuna fails a RUNNING trial once its heartbeat is stale, but a process killed between creating a trial and
    its first heartbeat leaves a trial with no heartbeat at all, RUNNING for ever; fail those older than the grace
    period (a live trial records its heartbeat as it starts)."""
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.grace_period is None:
        return
    import sqlalchemy

    with storage.engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text(
            "SELECT t.trial_id, t.datetime_start FROM trials t JOIN studies s USING (study_id) "
            "WHERE s.study_name = :name AND t.state = 'RUNNING' "
            "AND NOT EXISTS (SELECT 1 FROM trial_heartbeats h WHERE h.trial_id = t.trial_id)"
        ), {"name": study_name}).all()
    cutoff = datetime.now() - timedelta(seconds=storage.grace_period)  # optuna stores local naive times
    for trial_id, started in rows:
        if started is not None and started < cutoff:
            logger.warning("trial %s of %s never sent a heartbeat (its process died at once); failing it",
                           trial_id, study_name)
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)


def _best_value(study: optuna.Study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:
        return None


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first, one per distinct parameter set."""
    seen: set[tuple[tuple[str, Any], ...]] = set()
    ranked: list[optuna.trial.FrozenTrial] = []
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    for trial in sorted(complete, key=lambda t: (-(t.value if t.value is not None else -math.inf), t.number)):
        key = tuple(sorted(trial.user_attrs.get("params", trial.params).items()))
        if key not in seen:
            seen.add(key)
            ranked.append(trial)
    return ranked
