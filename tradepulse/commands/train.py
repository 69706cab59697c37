"""`tradepulse train`: optimise strategies on stored market data and store the trained configurations with their
in-sample, holdout, walk-forward and significance evidence and their lifecycle stage."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tradepulse.commands.backtest import (
    CashOption,
    ExchangeOption,
    FeeOption,
    FillOption,
    FractionOption,
    FromOption,
    MaxPositionOption,
    ShortOption,
    SizingOption,
    SlippageOption,
    ToOption,
    backtest_config,
)
from tradepulse.commands.output import error, fail, report_console

if TYPE_CHECKING:
    from tradepulse.settings import Settings
    from training.jobs import TrainedResult, TrainingSpec

console = report_console()


def _series_to_train(settings: Settings, timeframes: list[str], min_bars: int) -> list[tuple[str, str, str]]:
    """Every stored (exchange, symbol, timeframe) with enough bars, for `--all`."""
    import psycopg

    with psycopg.connect(settings.database.url, connect_timeout=10) as conn:
        rows = conn.execute(
            """
            SELECT exchange, symbol, timeframe FROM market_data
            WHERE timeframe = ANY(%s)
            GROUP BY exchange, symbol, timeframe HAVING count(*) >= %s
            ORDER BY exchange, symbol, timeframe
            """,
            (timeframes, min_bars),
        ).fetchall()
    return [(str(e), str(s), str(t)) for e, s, t in rows]


def train(
    strategy: Annotated[list[str] | None, typer.Option("--strategy", "-s", help="strategy name, repeatable")] = None,
    symbols: Annotated[str | None, typer.Option(help="comma-separated symbols, e.g. BTC/USD,ETH/USD")] = None,
    exchange: ExchangeOption = None,
    timeframe: Annotated[str, typer.Option(help="bar timeframe")] = "1h",
    start: FromOption = None,
    end: ToOption = None,
    source: Annotated[str, typer.Option(help="where candles come from: table (market_data) or topic")] = "table",
    method: Annotated[str, typer.Option(help="grid, tpe or random")] = "tpe",
    trials: Annotated[int, typer.Option(min=1, help="trials per study (grid: at most the grid's size)")] = 40,
    objective: Annotated[str, typer.Option(help="metric to maximise, e.g. sharpe, sortino, calmar")] = "sharpe",
    min_trades: Annotated[int, typer.Option(min=0, help="trials with fewer trades do not count")] = 10,
    holdout: Annotated[float, typer.Option(help="share of the newest bars kept out of optimisation")] = 0.2,
    wf_windows: Annotated[int, typer.Option(min=1, help="walk-forward windows")] = 4,
    wf_mode: Annotated[str, typer.Option(help="walk-forward windows: rolling or anchored")] = "rolling",
    wf_trials: Annotated[int, typer.Option(min=1, help="trials per walk-forward train window")] = 20,
    permutations: Annotated[int, typer.Option(min=0, help="price-path permutations for the p-value")] = 100,
    top: Annotated[int, typer.Option(min=1, help="configurations kept per study (best distinct trials)")] = 3,
    seed: Annotated[int, typer.Option(help="seed of the samplers and Monte Carlo tests")] = 7,
    train_all: Annotated[bool, typer.Option("--all", help="every strategy on every stored series with enough bars")]
    = False,
    all_timeframes: Annotated[str, typer.Option(help="--all: timeframes to train")] = "1h,4h,1d",
    min_bars: Annotated[int, typer.Option(min=1, help="--all: fewest stored bars a series needs")] = 700,
    cash: CashOption = 10_000.0,
    fee: FeeOption = 0.001,
    slippage_bps: SlippageOption = 0.0,
    sizing: SizingOption = "all_in",
    fraction: FractionOption = 1.0,
    max_position: MaxPositionOption = 1.0,
    fill: FillOption = "next_open",
    allow_short: ShortOption = False,
) -> None:
    """Optimise, validate and store trained configurations (one study per strategy and series)."""
    from agents.strategies import STRATEGIES, strategy_class
    from agents.strategies.base import ParamError
    from streams.keys import TIMEFRAMES
    from tradepulse.commands.data import parse_symbols
    from tradepulse.logs import configure_logging
    from tradepulse.settings import get_settings
    from training.jobs import TrainingSpec
    from training.optimize import Objective, SearchSpec
    from training.walkforward import WalkForwardSpec

    configure_logging("WARNING")
    settings = get_settings()
    if source not in ("table", "topic"):
        raise typer.BadParameter("expected table or topic", param_hint="--source")
    names = sorted(STRATEGIES) if train_all and not strategy else list(strategy or [])
    if not names:
        raise typer.BadParameter("name a --strategy (or use --all)", param_hint="--strategy")
    try:
        for name in names:
            strategy_class(name)
    except ParamError as exc:
        raise fail(str(exc)) from exc
    timeframes = [tf.strip() for tf in all_timeframes.split(",") if tf.strip()] if train_all else [timeframe]
    for tf in timeframes:
        if tf not in TIMEFRAMES:
            raise typer.BadParameter(f"unknown timeframe {tf!r}; expected one of {', '.join(TIMEFRAMES)}")
    config = backtest_config(cash=cash, fee=fee, maker_fee=None, slippage_bps=slippage_bps, sizing=sizing,
                             fraction=fraction, max_position=max_position, fill=fill, intrabar="conservative",
                             allow_short=allow_short, scope="training")
    try:
        specs = {
            name: TrainingSpec(
                search=SearchSpec(name, method=method, trials=trials, objective=Objective(objective, min_trades),  # type: ignore[arg-type]
                                  config=config, seed=seed),
                walk_forward=WalkForwardSpec(windows=wf_windows, mode=wf_mode, trials=wf_trials),  # type: ignore[arg-type]
                holdout=holdout, top=top, permutations=permutations,
            )
            for name in names
        }
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if train_all:
        series_list = _with_services(settings, lambda: _series_to_train(settings, timeframes, min_bars))
        if not series_list:
            raise fail(f"no stored series of {', '.join(timeframes)} has {min_bars} bars or more: import data first "
                       "(tradepulse data import FILE)")
    else:
        if not symbols:
            raise typer.BadParameter("name the --symbols to train on (or use --all)", param_hint="--symbols")
        series_list = [(exchange or settings.exchange, s, timeframe) for s in parse_symbols(symbols)]
    _run_jobs(settings, specs, series_list, source, start, end)


def _with_services(settings: Settings, work: Any) -> Any:
    import psycopg

    from tradepulse.logs import redact_url

    try:
        return work()
    except psycopg.OperationalError as exc:
        raise fail(f"PostgreSQL at {redact_url(settings.database.url)} is not usable: {exc}") from exc


def _run_jobs(settings: Settings, specs: dict[str, TrainingSpec], series_list: list[tuple[str, str, str]],
              source: str, start: str | None, end: str | None) -> None:
    import psycopg
    import sqlalchemy.exc

    from tradepulse.commands.data import parse_time
    from tradepulse.logs import redact_url
    from training.backtest import BacktestError
    from training.data import DataError, DataRequest, load_series
    from training.jobs import TrainingError, train
    from training.optimize import rdb_storage
    from training.progress import KafkaProgress, Reporter

    start_ms, end_ms = parse_time(start, "--from"), parse_time(end, "--to")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise typer.BadParameter("the range is empty: --from must be before --to", param_hint="--from")
    began = time.monotonic()
    loaded = []
    for exchange, symbol, timeframe in series_list:
        request = DataRequest(source, exchange, symbol, timeframe, start_ms, end_ms)  # type: ignore[arg-type]
        try:
            loaded.append(_with_services(settings, lambda request=request: load_series(request, settings)[0]))
        except DataError as exc:
            raise fail(str(exc)) from exc
    jobs = [(name, series) for series in loaded for name in specs]
    results: list[TrainedResult] = []
    skipped: list[str] = []
    kafka = KafkaProgress(settings)
    job_id = uuid.uuid4().hex
    try:
        storage = rdb_storage(settings)
        with psycopg.connect(settings.database.url, connect_timeout=10) as conn, \
                Reporter(job_id, console=console, sinks=[kafka]) as reporter:
            with reporter.stage("jobs", len(jobs), "studies") as overall:
                for name, series in jobs:
                    try:
                        results.append(train(specs[name], series, conn, storage, reporter))
                    except (TrainingError, BacktestError) as exc:
                        skipped.append(f"{name} on {series.symbol} {series.timeframe}: {exc}")
                    overall.advance(1, f"{name} {series.symbol} {series.timeframe}")
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as exc:
        raise fail(f"PostgreSQL at {redact_url(settings.database.url)} is not usable: {exc}") from exc
    except sqlalchemy.exc.ProgrammingError as exc:
        raise fail(f"the optuna schema is missing; run `tradepulse db migrate` ({exc.orig})") from exc
    finally:
        kafka.close()
    for reason in skipped:
        error(f"skipped {reason}")
    _print_results(results, time.monotonic() - began)
    if not results:
        raise typer.Exit(code=1)


def _print_results(results: list[TrainedResult], seconds: float) -> None:
    table = Table(title="trained configurations", title_justify="left")
    for column in ("id", "strategy", "symbol", "tf", "params", "IS sharpe", "holdout %", "WF eff", "DSR",
                   "perm p", "stage"):
        table.add_column(column, no_wrap=column in ("id", "strategy", "symbol"))

    def number(value: object, digits: int = 2) -> str:
        return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"

    stages: dict[str, int] = {}
    count = 0
    for result in results:
        for c in result.configurations:
            count += 1
            stages[c.stage] = stages.get(c.stage, 0) + 1
            table.add_row(c.configuration_id[:8], c.strategy, c.symbol, c.timeframe,
                          ", ".join(f"{k}={v}" for k, v in c.params.items()), number(c.in_sample.get("sharpe")),
                          number(c.out_of_sample.get("total_return_pct")), number(c.walk_forward.get("efficiency")),
                          number(c.significance.get("deflated_sharpe")),
                          number(c.significance.get("permutation_pvalue"), 3), c.stage)
    console.print(table)
    symbols = {c.symbol for r in results for c in r.configurations}
    strategies = {c.strategy for r in results for c in r.configurations}
    console.print(f"{count} configurations from {len(results)} studies ({len(strategies)} strategies, "
                  f"{len(symbols)} symbols) in {seconds:.1f} s; stages: "
                  + ", ".join(f"{stage} {n}" for stage, n in sorted(stages.items())))
