"""`tradepulse db migrate|status`: apply the forward-only migrations and show where a database stands."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from tradepulse.commands.output import fail

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command()
def migrate() -> None:
    """Apply the pending migrations to the configured database (TRADEPULSE_DATABASE__URL)."""
    import psycopg

    from tradepulse.db import MigrationError
    from tradepulse.db import migrate as run_migrations
    from tradepulse.logs import configure_logging, redact_url
    from tradepulse.settings import get_settings

    configure_logging("WARNING")
    settings = get_settings()
    try:
        applied = run_migrations(settings)
    except MigrationError as exc:
        raise fail(str(exc)) from exc
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        raise fail(f"PostgreSQL at {redact_url(settings.database.url)} is not usable: {exc}") from exc
    if not applied:
        console.print("database schema is up to date")
        return
    for label in applied:
        console.print(f"applied [bold]{label}[/bold]")
    console.print(f"{len(applied)} migration(s) applied")


@app.command()
def status() -> None:
    """Show applied and pending migrations, and whether this server runs the TimescaleDB variants."""
    import psycopg

    from tradepulse.db import MigrationError, connect, pending_migrations, timescale_available
    from tradepulse.logs import configure_logging, redact_url
    from tradepulse.settings import get_settings

    configure_logging("WARNING")
    settings = get_settings()
    try:
        with connect(settings, autocommit=True) as conn:
            timescale = timescale_available(conn)
            applied, pending = pending_migrations(conn)
    except MigrationError as exc:
        raise fail(str(exc)) from exc
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        raise fail(f"PostgreSQL at {redact_url(settings.database.url)} is not usable: {exc}") from exc

    table = Table(title=f"migrations at {redact_url(settings.database.url)}")
    for column in ("version", "name", "variant", "state", "applied at"):
        table.add_column(column)
    for record in applied:
        table.add_row(f"{record.version:04d}", record.name, record.variant, "[green]applied[/green]",
                      record.applied_at.isoformat(timespec="seconds"))
    for migration in pending:
        table.add_row(f"{migration.version:04d}", migration.name, migration.variant, "[yellow]pending[/yellow]", "")
    console.print(table)
    console.print(f"TimescaleDB {'available' if timescale else 'not available: plain PostgreSQL variants'}; "
                  f"{len(applied)} applied, {len(pending)} pending")
