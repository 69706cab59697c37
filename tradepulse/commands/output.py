"""Error output shared by the subcommands, so every command reports bad input the same way."""

from __future__ import annotations

import typer
from rich.console import Console

errors = Console(stderr=True, soft_wrap=True)

REPORT_WIDTH = 160
"""Width of report tables when the output is not a terminal (a pipe, a log, CI), where rich would assume 80."""


def report_console() -> Console:
    """A console for tables: the terminal's width in a terminal, a wide one otherwise."""
    console = Console(soft_wrap=True)
    return console if console.is_terminal else Console(soft_wrap=True, width=REPORT_WIDTH)


def error(message: str) -> None:
    """Print an operator-facing error on stderr; the message (file names, log excerpts) is never read as markup."""
    errors.print("[red]error:[/red]", end=" ")
    errors.print(message, markup=False, highlight=False)


def fail(message: str) -> typer.Exit:
    """Print the error and return the non-zero exit for the command to raise."""
    error(message)
    return typer.Exit(code=1)
