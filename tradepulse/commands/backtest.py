"""`tradepulse backtest`: one configuration over a time range, from the candle topic (default), market_data or a
CSV file, through the same strategy, simulator and sizing the agents run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tradepulse.commands.output import fail, report_console

if TYPE_CHECKING:
    from training.backtest import BacktestConfig, BacktestResult
    from training.data import DataReport, DataRequest

console = report_console()

StrategyOption = Annotated[str, typer.Option("--strategy", "-s", help="strategy name (see tradepulse strategies)")]
ParamOption = Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, repeatable")]
SourceOption = Annotated[str, typer.Option(help="where candles come from: topic (replay the log), table or csv")]
CsvOption = Annotated[Path | None, typer.Option("--csv", help="read candles from this CSV file (any importer format)")]
ExchangeOption = Annotated[str | None, typer.Option(help="exchange id (default: the settings' one; CSV: its name)")]
SymbolOption = Annotated[str | None, typer.Option(help="symbol, e.g. BTC/USD")]
TimeframeOption = Annotated[str | None, typer.Option(help="bar timeframe (default 1h; CSV: inferred)")]
FromOption = Annotated[str | None, typer.Option("--from", help="first bar time (ISO date-time or epoch)")]
ToOption = Annotated[str | None, typer.Option("--to", help="end of the range, exclusive")]
CashOption = Annotated[float, typer.Option(help="starting cash (quote currency)")]
FeeOption = Annotated[float, typer.Option(help="taker fee rate per fill (0.001 = 0.1%)")]
MakerFeeOption = Annotated[float | None, typer.Option(help="maker fee rate for limit fills (default: --fee)")]
SlippageOption = Annotated[float, typer.Option(help="slippage of market and stop fills, basis points")]
SizingOption = Annotated[str, typer.Option(help="all_in, fixed_fraction or risk_per_trade")]
FractionOption = Annotated[float, typer.Option(help="fixed_fraction: equity per entry; risk_per_trade: equity risked")]
MaxPositionOption = Annotated[float, typer.Option(help="largest position as a fraction of equity")]
FillOption = Annotated[str, typer.Option(help="next_open (market orders fill at the next bar's open) or close")]
IntrabarOption = Annotated[str, typer.Option(
    help="when one bar touches stop-loss and take-profit: conservative (stop first) or lower_timeframe (1m bars)")]
ShortOption = Annotated[bool, typer.Option("--allow-short", help="let strategies open short positions")]


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """`NAME=VALUE` options as a dict of strings (the strategy validates and converts them)."""
    params: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        if name.strip() in params:
            raise typer.BadParameter(f"{name.strip()} given twice", param_hint="--param")
        params[name.strip()] = value.strip()
    return params


def backtest_config(
    *, cash: float, fee: float, maker_fee: float | None, slippage_bps: float, sizing: str, fraction: float,
    max_position: float, fill: str, intrabar: str, allow_short: bool, scope: str = "backtest",
) -> BacktestConfig:
    """The backtest settings from command-line options; a bad value is a usage error naming it."""
    from agents.execution.risk import RiskConfig
    from agents.execution.simulator import ExecutionConfig
    from training.backtest import BacktestConfig

    if not cash > 0:
        raise typer.BadParameter("must be positive", param_hint="--cash")
    try:
        execution = ExecutionConfig(fee_rate=fee, maker_fee_rate=maker_fee, slippage_bps=slippage_bps,
                                    fill=fill, intrabar=intrabar, allow_short=allow_short)  # type: ignore[arg-type]
        risk = RiskConfig(sizing=sizing, fraction=fraction, max_position_fraction=max_position)  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return BacktestConfig(cash=cash, execution=execution, risk=risk, scope=scope)


def data_request(
    *, source: str, csv: Path | None, exchange: str | None, symbol: str | None, timeframe: str | None,
    start: str | None, end: str | None, default_exchange: str,
) -> DataRequest:
    from streams.keys import TIMEFRAMES
    from tradepulse.commands.data import parse_symbols, parse_time
    from training.data import SOURCES, DataRequest

    if csv is not None:
        source = "csv"
    if source not in SOURCES:
        raise typer.BadParameter(f"expected one of {', '.join(SOURCES)}", param_hint="--source")
    if source == "csv" and csv is None:
        raise typer.BadParameter("--source csv needs --csv PATH", param_hint="--csv")
    if timeframe is not None and timeframe not in TIMEFRAMES:
        raise typer.BadParameter(f"expected one of {', '.join(TIMEFRAMES)}", param_hint="--timeframe")
    start_ms, end_ms = parse_time(start, "--from"), parse_time(end, "--to")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise typer.BadParameter("the range is empty: --from must be before --to", param_hint="--from")
    if source != "csv" and symbol is None:
        raise typer.BadParameter(f"reading from the {source} needs --symbol", param_hint="--symbol")
    return DataRequest(
        source=source,  # type: ignore[arg-type]
        exchange=exchange if exchange or source == "csv" else default_exchange,
        symbol=parse_symbols(symbol)[0] if symbol else None,
        timeframe=timeframe if timeframe or source == "csv" else "1h",
        start_ms=start_ms,
        end_ms=end_ms,
        csv_path=csv,
    )


def backtest(
    strategy: StrategyOption,
    param: ParamOption = None,
    source: SourceOption = "topic",
    csv: CsvOption = None,
    exchange: ExchangeOption = None,
    symbol: SymbolOption = None,
    timeframe: TimeframeOption = None,
    start: FromOption = None,
    end: ToOption = None,
    cash: CashOption = 10_000.0,
    fee: FeeOption = 0.001,
    maker_fee: MakerFeeOption = None,
    slippage_bps: SlippageOption = 0.0,
    sizing: SizingOption = "all_in",
    fraction: FractionOption = 1.0,
    max_position: MaxPositionOption = 1.0,
    fill: FillOption = "next_open",
    intrabar: IntrabarOption = "conservative",
    allow_short: ShortOption = False,
    warmup: Annotated[int, typer.Option(min=0, help="first bars only warm the indicators up (no trading)")] = 0,
    fast: Annotated[bool, typer.Option("--fast", help="use the compiled fast path where the strategy has one")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of the report")] = False,
    plot: Annotated[Path | None, typer.Option(help="write the equity curve and trades to a .png or .html file")] = None,
    save: Annotated[bool, typer.Option(help="record the run in backtest_runs (topic and table sources)")] = True,
) -> None:
    """Backtest one strategy configuration and report its trades and metrics."""
    from agents.strategies import create_strategy
    from agents.strategies.base import ParamError
    from tradepulse.logs import configure_logging
    from tradepulse.settings import get_settings
    from training.backtest import BacktestError, run_backtest
    from training.data import DataError
    from training.plot import FORMATS

    configure_logging("WARNING")
    settings = get_settings()
    try:
        chosen = create_strategy(strategy, parse_params(param))
    except ParamError as exc:
        raise fail(str(exc)) from exc
    if plot is not None and plot.suffix.lower() not in FORMATS:
        raise typer.BadParameter("use a .png or .html file", param_hint="--plot")
    config = backtest_config(cash=cash, fee=fee, maker_fee=maker_fee, slippage_bps=slippage_bps, sizing=sizing,
                             fraction=fraction, max_position=max_position, fill=fill, intrabar=intrabar,
                             allow_short=allow_short)
    request = data_request(source=source, csv=csv, exchange=exchange, symbol=symbol, timeframe=timeframe,
                           start=start, end=end, default_exchange=settings.exchange)
    try:
        series, report = _load(request, settings)
        lower = _lower_bars(request, series, settings) if intrabar == "lower_timeframe" else None
        result = run_backtest(chosen, series, config, warmup=warmup, lower=lower, path="auto" if fast else "event")
    except (DataError, BacktestError) as exc:
        raise fail(str(exc)) from exc
    run_id = _save(result, chosen.name, chosen.params, report, settings) if save and request.source != "csv" else None
    if plot is not None:
        from training.plot import PlotError, write_plot

        try:
            write_plot(result, plot, f"{chosen.name} {series.exchange} {series.symbol} {series.timeframe}")
        except PlotError as exc:
            raise fail(str(exc)) from exc
    summary = result_summary(result, chosen.name, chosen.params, report)
    if run_id is not None:
        summary["backtest_run_id"] = run_id
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_report(summary, result, report, plot)


def _load(request: DataRequest, settings: Any) -> tuple[Any, DataReport]:
    import psycopg
    from aiokafka.errors import KafkaError

    from tradepulse.logs import redact_url
    from training.data import load_series

    try:
        return load_series(request, settings)
    except KafkaError as exc:
        raise fail(f"Kafka at {settings.kafka.bootstrap_servers} is not usable: {exc!r}") from exc
    except psycopg.OperationalError as exc:
        raise fail(f"PostgreSQL at {redact_url(settings.database.url)} is not usable: {exc}") from exc


def _lower_bars(request: DataRequest, series: Any, settings: Any) -> Any:
    from dataclasses import replace

    from training.data import DataError

    if request.source == "csv":
        raise DataError("--intrabar lower_timeframe needs 1m candles from the topic or the table, not a CSV file")
    lower, _ = _load(replace(request, exchange=series.exchange, symbol=series.symbol, timeframe="1m",
                             start_ms=int(series.ts[0]), end_ms=int(series.ts[-1]) + series.span_ms), settings)
    return lower


def result_summary(result: BacktestResult, strategy: str, params: dict[str, Any], report: DataReport) -> dict[str, Any]:
    """The JSON object of `--json`: every metric, the configuration, the data and each trade."""
    from tradepulse.version import code_version

    series = result.series
    return {
        **result.metrics,
        "strategy": strategy,
        "params": params,
        "exchange": series.exchange,
        "symbol": series.symbol,
        "timeframe": series.timeframe,
        "data_start": report.first_ts,
        "data_end": report.last_ts,
        "data_hash": series.content_hash(),
        "gaps": len(report.gaps),
        "missing_bars": report.missing_bars,
        "code_version": code_version(),
        "path": result.path,
        "rejected_orders": len(result.rejections),
        "trade_list": [
            {"side": t.side, "quantity": t.quantity, "entry_ts": t.entry_ts, "entry_price": t.entry_price,
             "exit_ts": t.exit_ts, "exit_price": t.exit_price, "pnl": t.pnl, "fees": t.fees,
             "exit_reason": t.exit_reason}
            for t in result.trades
        ],
    }


def _save(result: BacktestResult, strategy: str, params: dict[str, Any], report: DataReport, settings: Any) -> str:
    import psycopg

    from tradepulse.logs import redact_url
    from tradepulse.version import code_version
    from training.store import record_backtest_run

    series = result.series
    try:
        with psycopg.connect(settings.database.url, connect_timeout=10) as conn:
            return record_backtest_run(
                conn, strategy=strategy, params=params, exchange=series.exchange, symbol=series.symbol,
                timeframe=series.timeframe, data_start_ms=int(series.ts[0]),
                data_end_ms=int(series.ts[-1]) + series.span_ms, data_hash=series.content_hash(),
                code_version=code_version(), initial_cash=result.initial_cash, metrics=result.metrics,
            )
    except psycopg.OperationalError as exc:
        raise fail(f"PostgreSQL at {redact_url(settings.database.url)} is not usable: {exc}") from exc


def _number(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _print_report(summary: dict[str, Any], result: BacktestResult, report: DataReport, plot: Path | None) -> None:
    from training.data import iso

    head = (f"{summary['strategy']} {summary['params']} on {summary['exchange']} {summary['symbol']} "
            f"{summary['timeframe']}: {report.bars:,} bars {iso(report.first_ts or 0)} .. "
            f"{iso(report.last_ts or 0)}")
    table = Table(title=head, title_justify="left", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, _number(value))
    console.print(table)
    if report.gaps:
        console.print(f"[yellow]note:[/yellow] {len(report.gaps)} gap(s) in the data, {report.missing_bars:,} "
                      "bars missing")
    if result.rejections:
        console.print(f"[yellow]note:[/yellow] {len(result.rejections)} order(s) refused, e.g. "
                      f"{result.rejections[0].reason}")
    trades = Table(title=f"last trades of {len(result.trades)}", title_justify="left")
    for column in ("side", "entry", "price", "exit", "price", "pnl", "reason"):
        trades.add_column(column, justify="right" if column in ("price", "pnl") else "left")
    for t in result.trades[-10:]:
        trades.add_row(t.side, iso(t.entry_ts), f"{t.entry_price:,.2f}", iso(t.exit_ts), f"{t.exit_price:,.2f}",
                       f"{t.pnl:,.2f}", t.exit_reason)
    console.print(trades)
    if plot is not None:
        console.print(f"chart written to {plot}")
