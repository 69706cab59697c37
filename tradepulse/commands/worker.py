"""`tradepulse worker`: run the stream worker (candles from ticks, paper trading, sinks into PostgreSQL, heartbeats)."""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from typing import Annotated

import typer

from tradepulse.commands.output import fail
from tradepulse.cores import claim_core

logger = logging.getLogger(__name__)


class WorkerRole(StrEnum):
    """Which agents a worker runs.

    `trading` is the tick-to-fill path (trade_paper); `sinks` writes every topic into the store and sums the
    accounts' snapshots (track_portfolio). Apart, they do not share an event loop: at a bar close the sinks handle
    about two thirds of the messages, and in one process they delay the candles and fills behind them. A `sinks`
    worker consumes in a group of its own (`<app_id>-sinks`), so either role scales out on its own, and runs at a
    lower CPU priority (`worker.sinks_niceness`): on a shared machine the trading worker gets the cores first.
    """

    ALL = "all"
    TRADING = "trading"
    SINKS = "sinks"


def yield_cores_to_trading(niceness: int) -> None:
    """Lower this process's CPU priority to `niceness`, unless it already runs at that or lower.

    Meant for the sinks worker. At a bar close it wants the cores at the same moment as the trading worker (12-17
    ms of each 30 ms, Faust handing it the bar's records), although its writes wait for `worker.sink_flush_s`
    anyway. Linux sets niceness per thread and new threads inherit it, so this runs before any thread starts.
    """
    if niceness > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


def worker(
    loglevel: str = typer.Option("info", "--loglevel", "-l", help="debug, info, warning or error"),
    role: Annotated[WorkerRole, typer.Option(
        "--role", help="all (every agent), trading (candles and paper trading) or sinks (the store and account "
                       "snapshots)")] = WorkerRole.ALL,
) -> None:
    """Run a Faust worker with the agents of `--role` until SIGTERM or Ctrl-C; settings come from TRADEPULSE_*."""
    from tradepulse.settings import get_settings

    if loglevel.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"unknown log level {loglevel!r}", param_hint="--loglevel")
    settings = get_settings()
    claim = claim_core() if role is WorkerRole.TRADING and settings.worker.own_core else None
    if role is WorkerRole.SINKS:
        yield_cores_to_trading(settings.worker.sinks_niceness)  # before the imports below start any thread
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(
            update={"app_id": f"{settings.worker.app_id}-sinks"})})

    import faust

    from agents.heartbeat import record_final_heartbeat, register_diagnostics, register_heartbeat
    from agents.recovery import register_recovery_watchdog
    from agents.sinks import DatabaseWriter, register_sinks
    from agents.stats import WorkerStats
    from agents.strategies import load_strategy_modules
    from agents.trading import register_portfolio_agent, register_trading_agents
    from agents.trading_sinks import register_trading_sinks
    from streams.app import create_app, spare_long_lived_objects_from_gc, switch_threads_sooner, use_event_loop
    from tradepulse.logs import configure_logging

    configure_logging(loglevel)
    if claim is not None:
        logger.info("the trading worker runs on CPU core %d", claim.core)
    use_event_loop(settings)
    try:
        load_strategy_modules(settings.strategy_modules)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    app = create_app(settings)
    db = DatabaseWriter(settings)
    stats = WorkerStats.for_this_process(settings.worker.app_id)
    if role is not WorkerRole.SINKS:
        register_trading_agents(app, settings, stats, db)
    if role is not WorkerRole.TRADING:
        register_sinks(app, settings, stats, db)
        register_trading_sinks(app, settings, stats, db)
        register_portfolio_agent(app, settings, stats)
    register_heartbeat(app, settings, stats, db)
    register_diagnostics(app)
    register_recovery_watchdog(app)
    spare_long_lived_objects_from_gc(app)
    switch_threads_sooner(settings)
    try:
        faust.Worker(app, loglevel=loglevel, override_logging=False).execute_from_commandline()
    finally:
        db.close()
        record_final_heartbeat(settings, stats)
