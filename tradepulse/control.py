"""Paper accounts and the configuration lifecycle: what the CLI and the API call to start and stop trading.

The database row is the record of intent and `control.configs` (compacted, keyed by configuration id) is how the
workers hear about it: a change is validated exactly as the workers will validate it, written, published, and
only then committed, so a configuration the workers would refuse is never marked active.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from agents.paper import ConfigError, trading_config
from streams.keys import stable_id
from streams.records import SCHEMA_VERSION, ConfigChange
from streams.topics import CONFIGS
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

Publisher = Callable[[ConfigChange], None]


class ControlError(ValueError):
    """A request that cannot be carried out; the message says why (shown to the operator as is)."""


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str
    mode: str
    starting_balance: float
    allocated: float
    currency: str

    @property
    def unallocated(self) -> float:
        return self.starting_balance - self.allocated


def create_account(conn: psycopg.Connection, name: str, starting_balance: float, *, account_id: str | None = None,
                   currency: str = "USD") -> Account:
    """A paper account; its id defaults to `paper-<name>`. Creating an existing one with the same balance is a no-op."""
    if not name.strip():
        raise ControlError("an account needs a name")
    if not starting_balance > 0:
        raise ControlError(f"the starting balance must be positive, got {starting_balance}")
    key = account_id or f"paper-{name.strip()}"
    existing = conn.execute("SELECT starting_balance FROM accounts WHERE id = %s", (key,)).fetchone()
    if existing is not None and float(existing[0]) != starting_balance:
        raise ControlError(f"account {key} exists with a starting balance of {existing[0]:,.2f}")
    conn.execute(
        "INSERT INTO accounts (id, name, mode, starting_balance, currency) VALUES (%s, %s, 'paper', %s, %s) "
        "ON CONFLICT (id) DO NOTHING",
        (key, name.strip(), starting_balance, currency),
    )
    return get_account(conn, key)


def ensure_account(conn: psycopg.Connection, name: str, starting_balance: float) -> Account:
    """The account `paper-<name>`, created with `starting_balance` if it does not exist yet."""
    account_id = f"paper-{name.strip()}"
    existing = conn.execute("SELECT 1 FROM accounts WHERE id = %s", (account_id,)).fetchone()
    return get_account(conn, account_id) if existing else create_account(conn, name, starting_balance)


def get_account(conn: psycopg.Connection, account_id: str) -> Account:
    row = conn.execute(
        """
        SELECT a.id, a.name, a.mode, a.starting_balance, a.currency,
               coalesce((SELECT sum(allocation) FROM trained_configurations c
                         WHERE c.account_id = a.id AND c.is_active), 0)
        FROM accounts a WHERE a.id = %s
        """,
        (account_id,),
    ).fetchone()
    if row is None:
        raise ControlError(f"no account {account_id!r}; create it with `tradepulse account create`")
    key, name, mode, balance, currency, allocated = row
    return Account(key, name, mode, float(balance), float(allocated), currency)


def list_accounts(conn: psycopg.Connection) -> list[Account]:
    ids = [row[0] for row in conn.execute("SELECT id FROM accounts ORDER BY id").fetchall()]
    return [get_account(conn, key) for key in ids]


_CONFIG_COLUMNS = ("id", "strategy", "params", "exchange", "symbols", "timeframe", "account_id", "allocation",
                   "execution", "risk", "on_deactivate", "is_active", "stage", "status", "status_reason",
                   "data_start", "data_end")


def _load(conn: psycopg.Connection, configuration_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {', '.join(_CONFIG_COLUMNS)} FROM trained_configurations WHERE id = %s"
        + (" FOR UPDATE" if lock else ""),
        (configuration_id,),
    ).fetchone()
    if row is None:
        raise ControlError(f"no configuration {configuration_id!r}")
    return dict(zip(_CONFIG_COLUMNS, row, strict=True))


def resolve(conn: psycopg.Connection, prefix: str) -> str:
    """A configuration id from its full value or an unambiguous prefix (the CLI shows 8 characters)."""
    rows = conn.execute("SELECT id FROM trained_configurations WHERE id LIKE %s ORDER BY id LIMIT 2",
                        (prefix.replace("%", r"\%").replace("_", r"\_") + "%",)).fetchall()
    if not rows:
        raise ControlError(f"no configuration {prefix!r}")
    if len(rows) > 1 and rows[0][0] != prefix:
        raise ControlError(f"{prefix!r} matches several configurations; give more of the id")
    return str(rows[0][0])


def _change(row: dict[str, Any], action: str) -> ConfigChange:
    now = int(time.time() * 1000)
    return ConfigChange(
        event_id=stable_id("config-change", row["id"], action, now), ts=now, schema_version=SCHEMA_VERSION,
        configuration_id=row["id"], action=action, strategy=row["strategy"], params=row["params"],
        exchange=row["exchange"], symbols=list(row["symbols"]), timeframe=row["timeframe"],
        account_id=row["account_id"], allocation=float(row["allocation"]),
        execution=dict(row["execution"] or {}), risk=dict(row["risk"] or {}),
        on_deactivate=row["on_deactivate"],
    )


def _publish_and_commit(conn: psycopg.Connection, change: ConfigChange, publish: Publisher) -> ConfigChange:
    try:
        trading_config(change)
    except ConfigError as exc:
        conn.rollback()
        raise ControlError(f"configuration {change.configuration_id} cannot trade: {exc}") from exc
    try:
        publish(change)
    except Exception:
        conn.rollback()
        raise
    conn.commit()
    logger.info("configuration %s: %s published", change.configuration_id, change.action)
    return change


def activate(conn: psycopg.Connection, configuration_id: str, publish: Publisher, *, account_id: str | None = None,
             allocation: float | None = None, on_deactivate: str | None = None) -> ConfigChange:
    """Start paper trading a configuration (or update a running one's account, allocation or policy)."""
    row = _load(conn, configuration_id, lock=True)
    row["account_id"] = account_id or row["account_id"]
    if allocation is not None:
        if not allocation > 0:
            raise ControlError(f"the allocation must be positive, got {allocation}")
        row["allocation"] = allocation
    if on_deactivate is not None:
        if on_deactivate not in ("close", "keep"):
            raise ControlError(f"on_deactivate must be close or keep, got {on_deactivate!r}")
        row["on_deactivate"] = on_deactivate
    account = get_account(conn, row["account_id"])
    already = row["allocation"] if row["is_active"] else 0.0
    if row["allocation"] > account.unallocated + already:
        conn.rollback()
        raise ControlError(f"account {account.account_id} has {account.unallocated + already:,.2f} unallocated; "
                           f"the configuration asks for {row['allocation']:,.2f}")
    action = "update" if row["is_active"] else "activate"
    change = _change(row, action)
    conn.execute(
        "UPDATE trained_configurations SET is_active = true, account_id = %s, allocation = %s, on_deactivate = %s, "
        "status = CASE WHEN is_active THEN status ELSE 'starting' END, status_reason = '', status_at = now() "
        "WHERE id = %s",
        (row["account_id"], row["allocation"], row["on_deactivate"], configuration_id),
    )
    return _publish_and_commit(conn, change, publish)


def update_params(conn: psycopg.Connection, configuration_id: str, params: dict[str, Any],
                  publish: Publisher) -> ConfigChange:
    """Change a configuration's parameters; a running one restarts its strategy with them."""
    row = _load(conn, configuration_id, lock=True)
    row["params"] = {**row["params"], **params}
    try:
        row["params"] = trading_config(_change(row, "update")).params
    except ConfigError as exc:
        conn.rollback()
        raise ControlError(f"configuration {configuration_id} cannot trade: {exc}") from exc
    conn.execute("UPDATE trained_configurations SET params = %s WHERE id = %s", (Jsonb(row["params"]),
                                                                                   configuration_id))
    return _publish_and_commit(conn, _change(row, "update" if row["is_active"] else "deactivate"), publish)


def deactivate(conn: psycopg.Connection, configuration_id: str, publish: Publisher, *,
               on_deactivate: str | None = None) -> ConfigChange:
    """Stop new entries at once; open positions are closed at market or kept with their brackets, as configured."""
    row = _load(conn, configuration_id, lock=True)
    if on_deactivate is not None:
        if on_deactivate not in ("close", "keep"):
            raise ControlError(f"on_deactivate must be close or keep, got {on_deactivate!r}")
        row["on_deactivate"] = on_deactivate
    change = _change(row, "deactivate")
    conn.execute(
        "UPDATE trained_configurations SET is_active = false, on_deactivate = %s, "
        "status = CASE WHEN status IN ('inactive', 'stopped') THEN status ELSE 'stopping' END, status_at = now() "
        "WHERE id = %s",
        (row["on_deactivate"], configuration_id),
    )
    return _publish_and_commit(conn, change, publish)


def current_change(conn: psycopg.Connection, configuration_id: str) -> ConfigChange:
    """The configuration as a change record, as activation publishes it (what a backtest must match)."""
    return _change(_load(conn, configuration_id), "activate")


def list_configurations(conn: psycopg.Connection, *, active_only: bool = False) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {', '.join(_CONFIG_COLUMNS)} FROM trained_configurations "
        + ("WHERE is_active " if active_only else "")
        + "ORDER BY is_active DESC, stage DESC, strategy, id"
    ).fetchall()
    return [dict(zip(_CONFIG_COLUMNS, row, strict=True)) for row in rows]


def kafka_publisher(settings: Settings) -> Publisher:
    """Publish a change and wait until the broker has it (one short-lived producer per call)."""
    from streams.producer import LogProducer

    def publish(change: ConfigChange) -> None:
        async def send() -> None:
            async with LogProducer(settings) as producer:
                await producer.send_many(CONFIGS, [(change.configuration_id, change)])

        asyncio.run(send())

    return publish
