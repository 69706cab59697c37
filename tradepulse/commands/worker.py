"""`tradepulse worker`: run the stream worker (candles from ticks, paper trading, sinks into PostgreSQL, heartbeats)."""

from __future__ import annotations

import typer

from tradepulse.commands.output import fail


def worker(
    loglevel: str = typer.Option("info", "--loglevel", "-l", help="debug, info, warning or error"),
) -> None:
    """Run a Faust worker with the market agents until SIGTERM or Ctrl-C; settings come from TRADEPULSE_*."""
    import faust

    from agents.heartbeat import record_final_heartbeat
    from agents.market import register_market_agents
    from agents.sinks import DatabaseWriter
    from agents.stats import WorkerStats
    from agents.strategies import load_strategy_modules
    from agents.trading import register_trading_agents
    from agents.trading_sinks import register_trading_sinks
    from streams.app import create_app
    from tradepulse.logs import configure_logging
    from tradepulse.settings import get_settings

    if loglevel.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"unknown log level {loglevel!r}", param_hint="--loglevel")
    configure_logging(loglevel)
    settings = get_settings()
    try:
        load_strategy_modules(settings.strategy_modules)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    app = create_app(settings)
    db = DatabaseWriter(settings)
    stats = WorkerStats.for_this_process(settings.worker.app_id)
    register_market_agents(app, settings, stats, db)
    register_trading_agents(app, settings, stats, db)
    register_trading_sinks(app, settings, stats, db)
    try:
        faust.Worker(app, loglevel=loglevel, override_logging=False).execute_from_commandline()
    finally:
        db.close()
        record_final_heartbeat(settings, stats)
