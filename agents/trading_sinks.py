"""Sinks of the paper-trading topics into PostgreSQL: signals, orders, fills, trades, positions, portfolio history
and trade logs. Every row is keyed by its record's stable id, so a redelivered batch writes nothing new."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import faust
import psycopg
from faust.types.tuples import Message
from psycopg.types.json import Jsonb

from agents.batches import message_batches
from agents.deadletter import REJECTED_BY_DATABASE, decode_error_code, letter_for_message, send_dead_letters
from agents.sinks import DatabaseWriter, write_isolating_failures
from agents.stats import WorkerStats
from streams.codecs import InvalidEvent, decode
from streams.keys import stable_id
from streams.records import DeadLetter, Event, Fill, LogEvent, Order, PortfolioSnapshot, Signal, Trade
from streams.topics import DLQ, FILLS, LOGS, ORDERS, PORTFOLIO, SIGNALS, TRADES, topic_name
from tradepulse.settings import Settings, WorkerSettings

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Event)
_MS = "TIMESTAMPTZ 'epoch' + %s::bigint * INTERVAL '1 millisecond'"
_ORDER_SIDE = {("enter", "long"): "buy", ("exit", "long"): "sell", ("enter", "short"): "sell",
               ("exit", "short"): "buy"}


def write_signals(conn: psycopg.Connection, signals: Sequence[Signal]) -> int:
    """One row per intent (bars without intents are not stored)."""
    rows = [
        (stable_id("signal-intent", s.event_id, i), s.ts, s.configuration_id, s.exchange, s.symbol, s.timeframe,
         intent["action"], intent["side"], intent.get("price") or s.close, intent.get("stop_loss"),
         intent.get("take_profit"), intent.get("reason", ""))
        for s in signals for i, intent in enumerate(s.intents)
    ]
    return _insert(conn, f"""
        INSERT INTO signals (signal_id, ts, configuration_id, exchange, symbol, timeframe, intent, side, price,
                             stop_loss, take_profit, reason)
        VALUES (%s, {_MS}, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (signal_id) DO NOTHING""", rows)


def write_orders(conn: psycopg.Connection, batches: Sequence[Order]) -> int:
    rows = [
        (o["order_id"], b.ts, b.configuration_id, b.account_id, b.exchange, b.symbol,
         _ORDER_SIDE[(o["action"], o["side"])], o.get("order_type", "market"), o["quantity"], o.get("price"),
         o.get("stop_loss"), o.get("take_profit"), o.get("signal_id"), b.mode)
        for b in batches for o in b.orders
    ]
    return _insert(conn, f"""
        INSERT INTO orders (order_id, ts, configuration_id, account_id, exchange, symbol, side, order_type, quantity,
                            price, stop_loss, take_profit, signal_id, mode)
        VALUES (%s, {_MS}, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING""", rows)


def write_fills(conn: psycopg.Connection, fills: Sequence[Fill]) -> int:
    written = _insert(conn, f"""
        INSERT INTO fills (fill_id, ts, order_id, configuration_id, account_id, exchange, symbol, side, quantity,
                           price, fee, fee_currency, mode)
        VALUES (%s, {_MS}, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""", [
        (f.event_id, f.ts, f.order_id, f.configuration_id, f.account_id, f.exchange, f.symbol, f.side, f.quantity,
         f.price, f.fee, f.fee_currency, f.mode) for f in fills])
    with conn.cursor() as cur:  # orders placed by strategies show their fill; bracket exits have no order row
        cur.executemany("UPDATE orders SET status = 'filled', filled_quantity = %s WHERE order_id = %s",
                        [(f.quantity, f.order_id) for f in fills])
    return written


def write_trades(conn: psycopg.Connection, trades: Sequence[Trade]) -> int:
    return _insert(conn, f"""
        INSERT INTO trades (trade_id, configuration_id, account_id, exchange, symbol, side, quantity, entry_ts,
                            entry_price, exit_ts, exit_price, pnl, fees, exit_reason, entry_order_id, exit_order_id,
                            mode)
        VALUES (%s, %s, %s, %s, %s, %s, %s, {_MS}, %s, {_MS}, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""", [
        (t.event_id, t.configuration_id, t.account_id, t.exchange, t.symbol, t.side, t.quantity, t.entry_ts,
         t.entry_price, t.ts, t.exit_price, t.pnl, t.fees, t.exit_reason, t.entry_order_id, t.exit_order_id, t.mode)
        for t in trades])


def write_snapshots(conn: psycopg.Connection, snapshots: Sequence[PortfolioSnapshot]) -> int:
    """Portfolio history for every snapshot; the positions table follows each configuration's latest one."""
    written = _insert(conn, f"""
        INSERT INTO portfolio_history (snapshot_id, ts, account_id, configuration_id, cash, equity, realized_pnl,
                                       unrealized_pnl, positions)
        VALUES (%s, {_MS}, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""", [
        (s.event_id, s.ts, s.account_id, s.configuration_id, s.cash, s.equity, s.realized_pnl, s.unrealized_pnl,
         Jsonb(s.positions)) for s in snapshots])
    latest: dict[tuple[str, str], PortfolioSnapshot] = {}
    for s in snapshots:
        if s.configuration_id is not None:
            latest[(s.account_id, s.configuration_id)] = s
    with conn.cursor() as cur:
        for (account, config), s in latest.items():
            cur.execute("DELETE FROM positions WHERE account_id = %s AND configuration_id = %s", (account, config))
            for h in s.holdings or []:
                cur.execute(f"""
                    INSERT INTO positions (account_id, configuration_id, exchange, symbol, quantity, avg_entry_price,
                                           realized_pnl, stop_loss, take_profit, opened_at)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, {_MS})""",
                            (account, config, h["exchange"], h["symbol"], h["quantity"], h["avg_entry_price"],
                             s.realized_pnl, h.get("stop_loss"), h.get("take_profit"), h["opened_ts"]))
    return written


def write_logs(conn: psycopg.Connection, events: Sequence[LogEvent]) -> int:
    return _insert(conn, f"""
        INSERT INTO trade_logs (log_id, ts, level, message, logger, configuration_id, trade_id, metadata)
        VALUES (%s, {_MS}, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""", [
        (e.event_id, e.ts, e.level, e.message, e.logger, e.configuration_id, e.trade_id, Jsonb(e.metadata or {}))
        for e in events])


def _insert(conn: psycopg.Connection, statement: str, rows: list[tuple[object, ...]]) -> int:
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(statement, rows)
        return max(cur.rowcount, 0)


SINKS: tuple[tuple[str, type[Event], Callable[[psycopg.Connection, Sequence[Event]], int], str], ...] = (
    (SIGNALS, Signal, write_signals, "signals"),  # type: ignore[list-item]
    (ORDERS, Order, write_orders, "orders"),  # type: ignore[list-item]
    (FILLS, Fill, write_fills, "fills"),  # type: ignore[list-item]
    (TRADES, Trade, write_trades, "trades"),  # type: ignore[list-item]
    (PORTFOLIO, PortfolioSnapshot, write_snapshots, "portfolio_history"),  # type: ignore[list-item]
    (LOGS, LogEvent, write_logs, "trade_logs"),  # type: ignore[list-item]
)


def register_trading_sinks(app: faust.App, settings: Settings, stats: WorkerStats, db: DatabaseWriter) -> None:
    """One batching sink per paper-trading topic; a batch is acknowledged only once its rows are written."""
    prefix = settings.kafka.topic_prefix
    dlq = app.topic(topic_name(prefix, DLQ))
    for topic, record_type, write, table in SINKS:
        _register(app, app.topic(topic_name(prefix, topic)), record_type, write, table, dlq, stats, db,
                  settings.worker)


def _register(app: faust.App, source: faust.TopicT, record_type: type[Event],
              write: Callable[[psycopg.Connection, Sequence[Event]], int], table: str, dlq: faust.TopicT,
              stats: WorkerStats, db: DatabaseWriter, worker: WorkerSettings) -> None:
    @app.agent(source, name=f"{worker.app_id}.sink_{table}")
    async def sink(stream: faust.StreamT[bytes]) -> None:
        async for messages in message_batches(stream, worker.sink_batch_size, worker.sink_flush_s):
            records: list[Event] = []
            origin: dict[int, Message] = {}
            letters: list[DeadLetter] = []
            for message in messages:
                try:
                    record = decode(record_type, message.value)
                except InvalidEvent as exc:
                    letters.append(letter_for_message(message, decode_error_code(str(exc)), str(exc)))
                    continue
                records.append(record)
                origin[id(record)] = message
            written, refused = await write_isolating_failures(db, write, records, table)
            stats.sink_rows[table] += written
            for record, exc in refused:
                logger.error("%s row %s refused by the database: %s", table, record.event_id, exc)
                letters.append(letter_for_message(origin[id(record)], REJECTED_BY_DATABASE, str(exc)))
            if letters:
                await send_dead_letters(dlq, letters, stats)
