"""`tradepulse stack up|down|status|logs`: the local Kafka broker and PostgreSQL server."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tradepulse.commands.output import fail

if TYPE_CHECKING:
    from tradepulse.stack import Stack, StackStatus

app = typer.Typer(no_args_is_help=True)
console = Console()


class ServiceName(StrEnum):
    kafka = "kafka"
    postgres = "postgres"


def _stack() -> Stack:
    from tradepulse.logs import configure_logging
    from tradepulse.settings import get_settings
    from tradepulse.stack import Stack, StackError

    configure_logging()
    try:
        return Stack(get_settings())
    except StackError as exc:
        raise fail(str(exc)) from exc


def _show(status: StackStatus) -> None:
    table = Table(title="TradePulse stack")
    for column in ("service", "managed", "state", "pid", "address", "detail"):
        table.add_column(column)
    for service in status.services:
        state = "[green]up[/green]" if service.running else "[red]down[/red]"
        table.add_row(service.name, "yes" if service.managed else "external", state,
                      str(service.pid or "-"), service.address, service.detail)
    console.print(table)


@app.command()
def up() -> None:
    """Start Kafka and PostgreSQL (fetching the Kafka jars the first time), migrate, create topics."""
    from aiokafka.errors import KafkaError

    from tradepulse.db import MigrationError
    from tradepulse.stack import StackError

    stack = _stack()
    started = time.monotonic()
    try:
        with console.status("bringing the stack up…"):
            status = stack.up()
    except (StackError, MigrationError, KafkaError) as exc:
        raise fail(str(exc)) from exc
    _show(status)
    console.print(f"stack up in {time.monotonic() - started:.1f} s; data in {stack.data_dir}")


@app.command()
def down() -> None:
    """Stop the local services cleanly (external ones are left alone)."""
    from tradepulse.stack import StackError

    try:
        _stack().down()
    except StackError as exc:
        raise fail(str(exc)) from exc
    console.print("stack stopped")


@app.command()
def status() -> None:
    """Show whether each service runs and answers; exit code 1 when one does not."""
    current = _stack().status()
    _show(current)
    if not current.healthy:
        raise typer.Exit(code=1)


@app.command()
def logs(
    service: Annotated[ServiceName, typer.Argument(help="whose log")] = ServiceName.kafka,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="how many lines from the end")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines until Ctrl-C")] = False,
) -> None:
    """Print the end of a service's log."""
    stack = _stack()
    path = stack.log_file(service.value)
    if not path.exists():
        raise fail(f"no {service.value} log yet at {path}; has the stack been started?")
    for line in stack.logs(service.value, lines):
        typer.echo(line)
    if follow:
        _follow(path)


def _follow(log: Path) -> None:
    """tail -f: poll for appended lines, reopening when the file is rotated."""
    handle = log.open(errors="replace")
    handle.seek(0, 2)
    try:
        while True:
            line = handle.readline()
            if line:
                typer.echo(line, nl=False)
                continue
            if log.exists() and log.stat().st_size < handle.tell():
                handle.close()
                handle = log.open(errors="replace")
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()
