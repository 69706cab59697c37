"""`tradepulse data import|synth|backfill|feed`: market data into the log and the store.

Heavy modules (ccxt, numpy, the Kafka and database clients) are imported inside the commands so the CLI starts fast.
"""

from __future__ import annotations

import asyncio
import csv
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tradepulse.commands.output import error, fail

if TYPE_CHECKING:
    from tradepulse.marketdata.importer import ImportReport
    from tradepulse.marketdata.writer import WriteStats
    from tradepulse.settings import Settings

app = typer.Typer(no_args_is_help=True)
console = Console(soft_wrap=True)

T = TypeVar("T")

DEFAULT_SYMBOLS = "BTC/USDT,ETH/USDT,SOL/USDT"


def parse_time(text: str | None, option: str) -> int | None:
    """Epoch ms from an ISO date-time or epoch number given on the command line."""
    from tradepulse.marketdata.importer import RowError, parse_timestamp

    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except RowError as exc:
        raise typer.BadParameter(f"{exc}; expected an ISO date-time like 2024-01-01T00:00", param_hint=option) from exc


def parse_symbols(text: str) -> list[str]:
    from tradepulse.marketdata.importer import RowError, normalize_symbol

    try:
        symbols = [normalize_symbol(part) for part in text.split(",") if part.strip()]
    except RowError as exc:
        raise typer.BadParameter(str(exc), param_hint="--symbols") from exc
    if not symbols:
        raise typer.BadParameter("no symbols given", param_hint="--symbols")
    return symbols


def _timeframe(text: str) -> str:
    from streams.records import TIMEFRAMES

    if text not in TIMEFRAMES:
        raise typer.BadParameter(f"expected one of {', '.join(TIMEFRAMES)}", param_hint="--timeframe")
    return text


def _run_with_services(settings: Settings, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main`, turning an unreachable broker or database into a clear error."""
    import psycopg
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(main())
    except KafkaError as exc:
        raise fail(f"Kafka at {settings.kafka.bootstrap_servers} is not usable: {exc!r}") from exc
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        from tradepulse.logs import redact_url

        raise fail(f"PostgreSQL at {redact_url(settings.database.url)} is not usable: {exc}") from exc


# ------------------------------------------------------------------------------------------------------ import


@app.command("import")
def import_files(
    files: Annotated[list[Path], typer.Argument(
        exists=True, dir_okay=False, readable=True, help="CSV files"
    )],
    exchange: Annotated[str | None, typer.Option(
        help="exchange id (default: from the file name, e.g. bitfinex_…)"
    )] = None,
    symbol: Annotated[str | None, typer.Option(
        help="symbol such as BTC/USD (default: the Symbol column or the file name)"
    )] = None,
    timeframe: Annotated[str, typer.Option(
        help="candle timeframe, or auto to infer it from the timestamps"
    )] = "auto",
    quote: Annotated[str, typer.Option(help="quote currency of wide SYM:open files")] = "USD",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="parse and report only; write nothing")] = False,
    details: Annotated[int, typer.Option(
        min=0, help="rejected rows, duplicates and gaps to list per file (0: all)"
    )] = 20,
    strict: Annotated[bool, typer.Option(help="exit non-zero when any row was rejected")] = False,
) -> None:
    """Import OHLCV CSV files (CryptoDataDownload or plain) into the candle topics and market_data."""
    from tradepulse.logs import configure_logging
    from tradepulse.marketdata.importer import ImportFileError, ParsedFile, parse_file
    from tradepulse.settings import get_settings

    configure_logging("WARNING")
    tf = None if timeframe == "auto" else _timeframe(timeframe)
    parsed: list[ParsedFile] = []
    failed = 0
    for path in files:
        try:
            parsed.append(parse_file(path, exchange=exchange, symbol=symbol, timeframe=tf, quote=quote))
        except ImportFileError as exc:
            error(f"{path}: {exc}")
            failed += 1

    written: list[WriteStats | None] = [None] * len(parsed)
    if not dry_run and parsed:
        from tradepulse.marketdata.writer import CandleWriter

        settings = get_settings()

        async def write_all() -> None:
            async with CandleWriter(settings) as writer:
                for i, result in enumerate(parsed):
                    with console.status(f"writing {result.report.name}…"):
                        written[i] = await writer.write(result.candles)

        _run_with_services(settings, write_all)

    for result, stats in zip(parsed, written, strict=True):
        _print_report(result.report, stats, details)
    rejected = sum(len(result.report.rejected) for result in parsed)
    if failed or (strict and rejected):
        raise typer.Exit(code=1)


def _print_report(report: ImportReport, stats: WriteStats | None, details: int) -> None:
    from tradepulse.marketdata.importer import format_ts

    summary = Table(title=f"{report.name}: {report.layout} layout, {report.exchange}, {report.timeframe}")
    for column in ("symbol", "rows", "imported", "rejected", "dupes", "gaps", "missing", "first", "last"):
        summary.add_column(column, justify="left" if column in ("symbol", "first", "last") else "right",
                           no_wrap=column in ("first", "last"))
    for series in report.series:
        symbol = series.symbol
        gaps = [g for g in report.gaps if g.symbol == symbol]
        summary.add_row(
            symbol,
            f"{report.rows_read:,}" + (f" ({series.empty_rows:,} empty)" if series.empty_rows else ""),
            f"{series.imported:,}",
            f"{sum(1 for r in report.rejected if r.symbol in (symbol, None)):,}",
            f"{sum(1 for d in report.duplicates if d.symbol == symbol):,}",
            f"{len(gaps):,}",
            f"{sum(g.missing for g in gaps):,}",
            format_ts(series.first.ts) if series.first else "-",
            format_ts(series.last.ts) if series.last else "-",
        )
    summary.caption = (
        "dry run: nothing written" if stats is None
        else f"written to topic and table: {stats.written:,}; already stored unchanged: {stats.unchanged:,}"
    )
    console.print(summary)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    limit = details or None
    if report.rejected:
        table = Table(title=f"rejected rows of {report.name}", title_justify="left")
        for column in ("line", "symbol", "reason"):
            table.add_column(column)
        for rejection in report.rejected[:limit]:
            table.add_row(str(rejection.line), rejection.symbol or "-", rejection.reason)
        _print_limited(table, len(report.rejected), limit)
    if report.duplicates:
        table = Table(title=f"duplicate rows of {report.name} (first row kept)", title_justify="left")
        for column in ("line", "kept line", "symbol", "time"):
            table.add_column(column)
        for dup in report.duplicates[:limit]:
            table.add_row(str(dup.line), str(dup.kept_line), dup.symbol, format_ts(dup.ts))
        _print_limited(table, len(report.duplicates), limit)
    if report.gaps:
        table = Table(title=f"gaps in {report.name} (missing buckets)", title_justify="left")
        for column in ("symbol", "from", "to", "missing"):
            table.add_column(column)
        for gap in report.gaps[:limit]:
            table.add_row(gap.symbol, format_ts(gap.first), format_ts(gap.last), f"{gap.missing:,}")
        _print_limited(table, len(report.gaps), limit)


def _print_limited(table: Table, total: int, limit: int | None) -> None:
    if limit is not None and total > limit:
        table.caption = f"{total - limit:,} more not shown (--details 0 lists all)"
    console.print(table)


# ------------------------------------------------------------------------------------------------------- synth


@app.command()
def synth(
    symbols: Annotated[str, typer.Option(help="comma-separated symbols")] = DEFAULT_SYMBOLS,
    days: Annotated[float, typer.Option(min=0.0, help="length of the data in days")] = 1.0,
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same data")] = 42,
    ticks_per_minute: Annotated[float, typer.Option(
        min=0.1, help="average ticks per symbol per minute"
    )] = 60.0,
    start: Annotated[str, typer.Option(help="event time of the first minute (UTC)")] = "2024-01-01T00:00",
    exchange: Annotated[str, typer.Option(
        help="exchange name the instruments are keyed under"
    )] = "synthetic",
    out: Annotated[Path | None, typer.Option(
        help="write the 1m candles to this CSV file (importable by `data import`)"
    )] = None,
    publish: Annotated[str | None, typer.Option(
        help="ticks: tick batches to market.ticks; candles: 1m candles to the candle topic and market_data"
    )] = None,
    batch_ms: Annotated[int, typer.Option(min=1, help="event-time window of one tick batch")] = 1_000,
    max_batch: Annotated[int, typer.Option(min=1, help="most ticks in one batch")] = 100,
) -> None:
    """Seeded synthetic ticks and 1m candles (regimes, volatility clusters, intraday seasonality, volume)."""
    from tradepulse.logs import configure_logging
    from tradepulse.marketdata.synth import MINUTE_MS, generate_candles, generate_ticks
    from tradepulse.settings import get_settings

    configure_logging("WARNING")
    if out is None and publish is None:
        raise typer.BadParameter("give --out FILE and/or --publish ticks|candles", param_hint="--out/--publish")
    if publish not in (None, "ticks", "candles"):
        raise typer.BadParameter("expected ticks or candles", param_hint="--publish")
    names = parse_symbols(symbols)
    start_ms = parse_time(start, "--start") or 0
    start_ms -= start_ms % MINUTE_MS
    minutes = round(days * 1440)
    try:
        if out is not None:
            count = _write_candles_csv(out, generate_candles(names, start_ms, minutes, seed, ticks_per_minute,
                                                             exchange=exchange))
            console.print(f"wrote {count:,} 1m candles of {', '.join(names)} to {out}")
        if publish is not None:
            settings = get_settings()
            if publish == "ticks":
                ticks = generate_ticks(names, start_ms, minutes, seed, ticks_per_minute, exchange=exchange,
                                       batch_ms=batch_ms, max_batch=max_batch)
                stats = _run_with_services(settings, lambda: _publish_ticks(settings, ticks, speed=0))
                console.print(f"published {stats.ticks:,} ticks in {stats.batches:,} batches to market.ticks")
            else:
                from tradepulse.marketdata.writer import CandleWriter

                async def write() -> WriteStats:
                    async with CandleWriter(settings) as writer:
                        return await writer.write(
                            list(generate_candles(names, start_ms, minutes, seed, ticks_per_minute, exchange=exchange))
                        )

                written = _run_with_services(settings, write)
                console.print(f"wrote {written.written:,} 1m candles to the candle topic and market_data "
                              f"({written.unchanged:,} already stored unchanged)")
    except ValueError as exc:
        raise fail(str(exc)) from exc
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from exc


def _write_candles_csv(path: Path, candles: Any) -> int:
    count = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume", "trades"])
        for c in candles:
            writer.writerow([c.ts, c.symbol, c.open, c.high, c.low, c.close, c.volume, c.trades])
            count += 1
    return count


async def _publish_ticks(settings: Settings, batches: Any, *, speed: float, stats: Any = None) -> Any:
    """Play tick batches onto market.ticks; returns the feed's stats."""
    from streams.producer import LogProducer
    from tradepulse.marketdata.feeds import TickPublisher, play

    async with LogProducer(settings) as producer:
        return await play(batches, TickPublisher(producer), speed=speed, stats=stats)


# ---------------------------------------------------------------------------------------------------- backfill


@app.command()
def backfill(
    exchange: Annotated[str, typer.Option(help="ccxt exchange id, e.g. binance")],
    symbols: Annotated[str, typer.Option(help="comma-separated symbols, e.g. BTC/USDT,ETH/USDT")],
    since: Annotated[str, typer.Option(help="first candle's open time, ISO (UTC), e.g. 2024-01-01")],
    timeframe: Annotated[str, typer.Option(help="candle timeframe")] = "1m",
    until: Annotated[str | None, typer.Option(
        help="end of the range, ISO (UTC); default now. Only closed candles are kept"
    )] = None,
    page_size: Annotated[int, typer.Option(min=1, help="candles asked for per request")] = 1_000,
    api_url: Annotated[str | None, typer.Option(
        hidden=True, help="send every exchange request to this base URL instead"
    )] = None,
) -> None:
    """Backfill historical candles via ccxt fetch_ohlcv: paginated, rate-limited, resumable, idempotent."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tradepulse.logs import configure_logging
    from tradepulse.marketdata.backfill import backfill as run_backfill
    from tradepulse.marketdata.backfill import bucket_count
    from tradepulse.marketdata.exchanges import ExchangeRequestError, create_exchange
    from tradepulse.marketdata.importer import format_ts
    from tradepulse.marketdata.writer import CandleWriter
    from tradepulse.settings import get_settings

    configure_logging("WARNING")
    tf = _timeframe(timeframe)
    names = parse_symbols(symbols)
    since_ms = parse_time(since, "--since") or 0
    now_ms = int(time.time() * 1000)
    until_ms = min(parse_time(until, "--until") or now_ms, now_ms)
    settings = get_settings()

    async def main() -> list[Any]:
        client = create_exchange(exchange, api_url=api_url)
        try:
            async with CandleWriter(settings) as writer:
                with Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console,
                ) as progress:
                    tasks: dict[str, Any] = {}
                    for name in names:
                        latest = await writer.latest(exchange, name, tf)
                        first = max(since_ms, latest + 1) if latest is not None else since_ms
                        tasks[name] = progress.add_task(f"{exchange} {name} {tf}",
                                                        total=bucket_count(first, until_ms, tf))
                    return await run_backfill(
                        client, writer, names, tf, since=since_ms, until=until_ms, page_size=page_size,
                        on_progress=lambda name, n: progress.advance(tasks[name], n),
                    )
        finally:
            await client.close()

    try:
        results = _run_with_services(settings, main)
    except ExchangeRequestError as exc:
        raise fail(str(exc)) from exc
    table = Table(title=f"backfill {exchange} {tf} {format_ts(since_ms)} → {format_ts(until_ms)}")
    for column in ("symbol", "from", "pages", "fetched", "written", "unchanged", "rejected"):
        table.add_column(column, justify="left" if column in ("symbol", "from") else "right")
    for result in results:
        origin = f"{format_ts(result.resumed_from)} (resumed)" if result.resumed_from else format_ts(result.start)
        table.add_row(result.symbol, origin, str(result.pages), f"{result.fetched:,}", f"{result.written:,}",
                      f"{result.unchanged:,}", str(len(result.rejected)))
    console.print(table)
    for result in results:
        for problem in result.rejected:
            console.print(f"[yellow]rejected:[/yellow] {problem}")


# -------------------------------------------------------------------------------------------------------- feed


@app.command()
def feed(
    source: Annotated[str, typer.Option(
        help="replay: stored candles; synth: synthetic ticks; ccxt: live trades"
    )] = "replay",
    exchange: Annotated[str | None, typer.Option(
        help="exchange of the instruments (ccxt id for --source ccxt)"
    )] = None,
    symbols: Annotated[str, typer.Option(help="comma-separated symbols")] = DEFAULT_SYMBOLS,
    speed: Annotated[float, typer.Option(
        min=0.0, help="replay speed: 60 = an hour per minute, 0 = as fast as possible"
    )] = 60.0,
    timeframe: Annotated[str, typer.Option(help="replay: stored candle timeframe to play")] = "1h",
    since: Annotated[str | None, typer.Option(
        help="replay: from this time (default: the first stored candle)"
    )] = None,
    until: Annotated[str | None, typer.Option(
        help="replay: up to this time (default: the last stored candle)"
    )] = None,
    resume: Annotated[bool, typer.Option(
        help="replay: continue after the newest tick of each symbol already on market.ticks (a restarted replay)"
    )] = False,
    seed: Annotated[int, typer.Option(help="synth: random seed")] = 42,
    start: Annotated[str | None, typer.Option(
        help="synth: event time of the first tick (default: the current minute)"
    )] = None,
    days: Annotated[float, typer.Option(min=0.0, help="synth: how much event time to generate")] = 365.0,
    ticks_per_minute: Annotated[float, typer.Option(
        min=0.1, help="synth: average ticks per symbol per minute"
    )] = 60.0,
    mode: Annotated[str, typer.Option(help="ccxt: watch (websocket), poll (fetch_trades) or auto")] = "auto",
    poll_interval: Annotated[float, typer.Option(min=0.05, help="ccxt: seconds between polls")] = 1.0,
    batch_ms: Annotated[int, typer.Option(min=1, help="event-time window of one tick batch")] = 1_000,
    max_batch: Annotated[int, typer.Option(min=1, help="most ticks in one batch")] = 100,
    duration: Annotated[float, typer.Option(
        min=0.0, help="stop after this many seconds (0: run to the end or Ctrl-C)"
    )] = 0.0,
    api_url: Annotated[str | None, typer.Option(
        hidden=True, help="ccxt: send every exchange request to this base URL"
    )] = None,
) -> None:
    """Feed ticks into market.ticks: a replay of stored candles, synthetic ticks, or live trades via ccxt."""
    from tradepulse.logs import configure_logging
    from tradepulse.marketdata.exchanges import ExchangeRequestError
    from tradepulse.marketdata.feeds import FeedStats
    from tradepulse.settings import get_settings

    configure_logging()
    if source not in ("replay", "synth", "ccxt"):
        raise typer.BadParameter("expected replay, synth or ccxt", param_hint="--source")
    names = parse_symbols(symbols)
    settings = get_settings()
    stats = FeedStats()

    if source == "replay":
        runner = _replay_runner(settings, stats, exchange or settings.exchange, names, _timeframe(timeframe),
                                parse_time(since, "--since"), parse_time(until, "--until"), resume, speed, batch_ms,
                                max_batch)
    elif source == "synth":
        runner = _synth_runner(settings, stats, exchange or "synthetic", names, seed, parse_time(start, "--start"),
                               days, ticks_per_minute, speed, batch_ms, max_batch)
    else:
        runner = _ccxt_runner(settings, stats, exchange or settings.exchange, names, mode, poll_interval,
                              batch_ms, max_batch, api_url)

    async def main() -> None:
        # SIGTERM (how `tradepulse run` stops its children) ends the feed like Ctrl-C: the producer flushes.
        current = asyncio.current_task()
        assert current is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
        try:
            await asyncio.wait_for(runner(), timeout=duration or None)
        except (TimeoutError, asyncio.CancelledError):
            pass

    try:
        _run_with_services(settings, main)
    except KeyboardInterrupt:
        pass
    except (ExchangeRequestError, ValueError) as exc:
        raise fail(str(exc)) from exc
    finally:
        console.print(
            f"published {stats.ticks:,} ticks in {stats.batches:,} batches"
            + (f"; {stats.rejected:,} rejected to ops.dlq" if stats.rejected else "")
            + (f"; {stats.reconnects:,} reconnects" if stats.reconnects else "")
        )


def _replay_runner(
    settings: Settings, stats: Any, exchange: str, names: list[str], timeframe: str, since: int | None,
    until: int | None, resume: bool, speed: float, batch_ms: int, max_batch: int,
) -> Callable[[], Awaitable[None]]:
    from streams.replay import newest_tick_times
    from tradepulse.db import connect
    from tradepulse.marketdata.feeds import candle_batches_async, resume_points, resumed, stored_candles, stored_range
    from tradepulse.marketdata.importer import format_ts
    from tradepulse.store import fetch_candles

    async def run() -> None:
        conn = await asyncio.to_thread(connect, settings)
        try:
            def load(symbol: str, start: int, end: int, limit: int) -> Any:
                return fetch_candles(conn, exchange, symbol, timeframe, start, end, limit=limit)

            stored = await asyncio.to_thread(stored_range, load, names, timeframe)
            if stored is None:
                raise ValueError(f"no stored {timeframe} candles of {', '.join(names)} on {exchange} to replay "
                                 "(import or backfill some first)")
            first, end = since if since is not None else stored[0], until if until is not None else stored[1]
            starts = dict.fromkeys(names, first)
            if resume:
                starts = resume_points(await newest_tick_times(settings, exchange, names), timeframe, starts)
                console.print("resuming the replay: " + ", ".join(f"{symbol} from {format_ts(ts)}"
                                                                   for symbol, ts in starts.items()))
            candles = resumed(stored_candles(load, names, timeframe, since=min(starts.values()), until=end), starts)
            await _publish_ticks(settings, candle_batches_async(candles, batch_ms=batch_ms, max_batch=max_batch),
                                 speed=speed, stats=stats)
        finally:
            conn.close()

    return run


def _synth_runner(
    settings: Settings, stats: Any, exchange: str, names: list[str], seed: int, start: int | None, days: float,
    ticks_per_minute: float, speed: float, batch_ms: int, max_batch: int,
) -> Callable[[], Awaitable[None]]:
    from tradepulse.marketdata.synth import MINUTE_MS, generate_ticks

    first = start if start is not None else int(time.time() * 1000)
    first -= first % MINUTE_MS
    ticks = generate_ticks(names, first, round(days * 1440), seed, ticks_per_minute, exchange=exchange,
                           batch_ms=batch_ms, max_batch=max_batch)
    return lambda: _publish_ticks(settings, ticks, speed=speed, stats=stats)


def _ccxt_runner(
    settings: Settings, stats: Any, exchange: str, names: list[str], mode: str, poll_interval: float,
    batch_ms: int, max_batch: int, api_url: str | None,
) -> Callable[[], Awaitable[None]]:
    from streams.producer import LogProducer
    from tradepulse.marketdata.exchanges import create_exchange
    from tradepulse.marketdata.feeds import LiveFeed, TickPublisher

    async def run() -> None:
        client = create_exchange(exchange, api_url=api_url, pro=mode != "poll")
        try:
            async with LogProducer(settings) as producer:
                await LiveFeed(client, names, TickPublisher(producer), mode=mode, poll_interval_s=poll_interval,
                               batch_ms=batch_ms, max_batch=max_batch, stats=stats).run()
        finally:
            await client.close()

    return run
