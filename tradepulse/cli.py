"""The one `tradepulse` command: stack, db, data, worker, api, run."""

from __future__ import annotations

import typer

from tradepulse.commands import api, backtest, config, data, db, run, stack, strategies, topics, train, worker

app = typer.Typer(help="TradePulse: crypto trading over a Kafka log with TimescaleDB views.", no_args_is_help=True)
app.add_typer(stack.app, name="stack", help="Start, stop and inspect the local Kafka + PostgreSQL stack.")
app.add_typer(db.app, name="db", help="Database migrations.")
app.add_typer(topics.app, name="topics", help="Create and describe the log's topics.")
app.add_typer(data.app, name="data", help="Market data in: import, backfill, synthetic data, feeds.")
app.add_typer(config.app, name="config", help="Paper trading: activate, deactivate and list configurations.")
app.add_typer(config.accounts, name="account", help="Paper accounts.")
app.command("backtest")(backtest.backtest)
app.command("strategies")(strategies.strategies)
app.command("train")(train.train)
app.command("worker")(worker.worker)
app.command("api")(api.serve)
app.command("run")(run.run)


def main() -> None:
    """Run the CLI; settings that fail validation get a message naming the variable, not a traceback."""
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        from tradepulse.commands.output import error

        error("invalid settings: " + "; ".join(
            f"TRADEPULSE_{'__'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
            for problem in exc.errors()
        ))
        raise SystemExit(1) from exc

if __name__ == "__main__":
    main()
