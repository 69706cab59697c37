"""`tradepulse config activate|deactivate|update|list` and `tradepulse account create|list`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from tradepulse.commands.backtest import ParamOption, parse_params
from tradepulse.commands.output import fail, report_console

if TYPE_CHECKING:
    import psycopg

    from tradepulse.settings import Settings

app = typer.Typer(no_args_is_help=True)
accounts = typer.Typer(no_args_is_help=True)
console = report_console()
T = TypeVar("T")

IdArgument = Annotated[str, typer.Argument(help="configuration id (or an unambiguous prefix)")]
PolicyOption = Annotated[str | None, typer.Option(
    "--on-deactivate", help="close: flatten open positions at market; keep: leave their brackets working")]


def _with_connection(work: Callable[[psycopg.Connection, Settings], T]) -> T:
    """Run `work` in one transaction; unreachable services and refusals become clear errors."""
    import psycopg
    from aiokafka.errors import KafkaError

    from agents.strategies import load_strategy_modules
    from tradepulse.control import ControlError
    from tradepulse.logs import configure_logging, redact_url
    from tradepulse.settings import get_settings

    configure_logging("WARNING")
    settings = get_settings()
    load_strategy_modules(settings.strategy_modules)
    try:
        with psycopg.connect(settings.database.url, connect_timeout=10) as conn:
            return work(conn, settings)
    except ControlError as exc:
        raise fail(str(exc)) from exc
    except KafkaError as exc:
        raise fail(f"Kafka at {settings.kafka.bootstrap_servers} is not usable (nothing changed): {exc!r}") from exc
    except psycopg.OperationalError as exc:
        raise fail(f"PostgreSQL at {redact_url(settings.database.url)} is not usable: {exc}") from exc


@app.command()
def activate(
    configuration: IdArgument,
    account: Annotated[str | None, typer.Option(help="paper account id (default: the configuration's)")] = None,
    allocation: Annotated[float | None, typer.Option(help="cash of the configuration's sub-account")] = None,
    on_deactivate: PolicyOption = None,
) -> None:
    """Start paper trading a trained configuration; running workers pick it up within seconds."""
    from tradepulse import control

    def work(conn: psycopg.Connection, settings: Settings) -> None:
        key = control.resolve(conn, configuration)
        change = control.activate(conn, key, control.kafka_publisher(settings), account_id=account,
                                  allocation=allocation, on_deactivate=on_deactivate)
        console.print(f"{change.action}d {key}: {change.strategy} {change.params} on {change.exchange} "
                      f"{change.symbols[0]} {change.timeframe}, account {change.account_id}, allocation "
                      f"{change.allocation:,.2f}")

    _with_connection(work)


@app.command()
def deactivate(configuration: IdArgument, on_deactivate: PolicyOption = None) -> None:
    """Stop new entries at once; open positions are closed at market or left with their brackets."""
    from tradepulse import control

    def work(conn: psycopg.Connection, settings: Settings) -> None:
        key = control.resolve(conn, configuration)
        change = control.deactivate(conn, key, control.kafka_publisher(settings), on_deactivate=on_deactivate)
        console.print(f"deactivated {key}; open positions: "
                      f"{'closed at market' if change.on_deactivate == 'close' else 'kept with their brackets'}")

    _with_connection(work)


@app.command()
def update(configuration: IdArgument, param: ParamOption = None) -> None:
    """Change parameters; a running configuration restarts its strategy with them."""
    from tradepulse import control

    params = parse_params(param)
    if not params:
        raise typer.BadParameter("give at least one --param NAME=VALUE", param_hint="--param")

    def work(conn: psycopg.Connection, settings: Settings) -> None:
        key = control.resolve(conn, configuration)
        change = control.update_params(conn, key, params, control.kafka_publisher(settings))
        console.print(f"updated {key}: {change.params}")

    _with_connection(work)


@app.command("list")
def list_configs(active: Annotated[bool, typer.Option("--active", help="only active configurations")] = False) -> None:
    """Configurations with their stage, whether they trade, and the workers' status."""
    from tradepulse import control

    def work(conn: psycopg.Connection, settings: Settings) -> None:
        rows = control.list_configurations(conn, active_only=active)
        table = Table(title="configurations", title_justify="left")
        for column in ("id", "strategy", "symbol", "tf", "stage", "active", "account", "allocation", "status",
                       "reason"):
            table.add_column(column, no_wrap=column in ("id", "strategy"))
        for row in rows:
            table.add_row(row["id"][:8], row["strategy"], row["symbols"][0], row["timeframe"], row["stage"],
                          "yes" if row["is_active"] else "", row["account_id"], f"{row['allocation']:,.0f}",
                          row["status"], row["status_reason"])
        console.print(table)

    _with_connection(work)


@accounts.command("create")
def create_account(
    name: Annotated[str, typer.Argument(help="account name; its id is paper-<name>")],
    balance: Annotated[float, typer.Option(help="starting balance (quote currency)")] = 100_000.0,
    currency: Annotated[str, typer.Option(help="quote currency")] = "USD",
) -> None:
    """Create a paper account."""
    from tradepulse import control

    def work(conn: psycopg.Connection, settings: Settings) -> None:
        account = control.create_account(conn, name, balance, currency=currency)
        conn.commit()
        console.print(f"account {account.account_id}: {account.starting_balance:,.2f} {account.currency}")

    _with_connection(work)


@accounts.command("list")
def list_accounts() -> None:
    """Paper accounts with their allocated and free balance."""
    from tradepulse import control

    def work(conn: psycopg.Connection, settings: Settings) -> None:
        table = Table(title="accounts", title_justify="left")
        for column in ("id", "mode", "balance", "allocated", "unallocated", "currency"):
            table.add_column(column)
        for a in control.list_accounts(conn):
            table.add_row(a.account_id, a.mode, f"{a.starting_balance:,.2f}", f"{a.allocated:,.2f}",
                          f"{a.unallocated:,.2f}", a.currency)
        console.print(table)

    _with_connection(work)
