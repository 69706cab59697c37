"""Renders docs/topics.md from the topic specs and record schemas, so the documentation cannot drift.

`python -m streams.docs > docs/topics.md` regenerates it; a unit test fails when it is stale.
"""

from __future__ import annotations

import sys
import typing

import orjson

from streams.records import (
    SCHEMA_VERSION,
    Candle,
    Command,
    ConfigChange,
    DeadLetter,
    Event,
    Fill,
    LogEvent,
    Order,
    PortfolioSnapshot,
    Signal,
    TickBatch,
    Trade,
    TrainingProgress,
    instrument_key,
    stable_id,
)
from streams.topics import TOPICS

_TS = 1_719_792_000_000
_CONFIG = "cfg-sma-cross-btc-1h"


def _event(kind: str, *parts: object) -> dict[str, object]:
    return {"event_id": stable_id(kind, *parts), "ts": _TS, "schema_version": SCHEMA_VERSION}


EXAMPLES: dict[type[Event], Event] = {
    TickBatch: TickBatch(
        **_event("ticks", "kraken", "BTC/USDT", _TS), exchange="kraken", symbol="BTC/USDT",
        times=[_TS, _TS + 140, _TS + 870], prices=[61250.5, 61251.0, 61249.2], amounts=[0.012, 0.5, 0.003],
    ),
    Candle: Candle(
        **_event("candle", "kraken", "BTC/USDT", "1m", _TS), exchange="kraken", symbol="BTC/USDT", timeframe="1m",
        open=61250.5, high=61270.0, low=61240.1, close=61262.3, volume=3.42, trades=57,
    ),
    Signal: Signal(
        **{**_event("signal", _CONFIG, _TS), "ts": _TS + 3_600_000}, configuration_id=_CONFIG,
        account_id="paper-alice", exchange="kraken", symbol="BTC/USDT", timeframe="1h", bar_ts=_TS, open=61180.0,
        high=61290.0, low=61150.2, close=61262.3, volume=182.4,
        intents=[{"action": "enter", "side": "long", "order_type": "market", "price": None, "stop_loss": 60100.0,
                  "take_profit": 63500.0, "valid_bars": 1, "reason": "fast SMA crossed above slow"}],
    ),
    Order: Order(
        **{**_event("orders", _CONFIG, _TS), "ts": _TS + 3_600_000}, configuration_id=_CONFIG,
        account_id="paper-alice", exchange="kraken", symbol="BTC/USDT", timeframe="1h", bar_ts=_TS, open=61180.0,
        high=61290.0, low=61150.2, close=61262.3, volume=182.4,
        orders=[{"order_id": stable_id("order", _CONFIG, _TS), "signal_id": stable_id("signal", _CONFIG, _TS),
                 "action": "enter", "side": "long", "order_type": "market", "quantity": 0.0815, "price": None,
                 "stop_loss": 60100.0, "take_profit": 63500.0, "valid_bars": 1}],
        refused=[],
    ),
    Fill: Fill(
        **_event("fill", _CONFIG, _TS), order_id=stable_id("order", _CONFIG, _TS), configuration_id=_CONFIG,
        account_id="paper-alice", exchange="kraken", symbol="BTC/USDT", side="buy", quantity=0.0815,
        price=61268.4, fee=4.99, fee_currency="USDT", liquidity="taker", reason="entry",
    ),
    Trade: Trade(
        **_event("trade", _CONFIG, _TS), configuration_id=_CONFIG, account_id="paper-alice", exchange="kraken",
        symbol="BTC/USDT", side="long", quantity=0.0815, entry_ts=_TS - 86_400_000, entry_price=59880.0,
        exit_price=61268.4, pnl=103.3, fees=9.87, exit_reason="take_profit",
        entry_order_id=stable_id("order", _CONFIG, _TS - 86_400_000), exit_order_id=stable_id("order", _CONFIG, _TS),
    ),
    PortfolioSnapshot: PortfolioSnapshot(
        **_event("portfolio", "paper-alice", _TS), account_id="paper-alice", configuration_id=_CONFIG,
        cash=5001.2, equity=9998.7, realized_pnl=0.0, unrealized_pnl=-1.31, positions={"kraken:BTC/USDT": 0.0815},
        holdings=[{"exchange": "kraken", "symbol": "BTC/USDT", "quantity": 0.0815, "avg_entry_price": 61268.4,
                   "stop_loss": 60100.0, "take_profit": 63500.0, "opened_ts": _TS}],
    ),
    ConfigChange: ConfigChange(
        **_event("config", _CONFIG, 3), configuration_id=_CONFIG, action="activate", strategy="sma_cross",
        params={"fast": 10, "slow": 30}, exchange="kraken", symbols=["BTC/USDT"], timeframe="1h",
        account_id="paper-alice", allocation=5000.0,
        execution={"fee_rate": 0.001, "slippage_bps": 2.0, "fill": "next_open", "allow_short": False},
        risk={"sizing": "fixed_fraction", "fraction": 0.5},
    ),
    Command: Command(**_event("command", "flatten", _TS), action="flatten", scope="configuration", target=_CONFIG,
                     issued_by="alice"),
    LogEvent: LogEvent(
        **_event("log", _TS), level="WARNING", message="order rejected: max open positions reached",
        logger="agents.orders", configuration_id=_CONFIG, metadata={"open_positions": 5},
    ),
    DeadLetter: DeadLetter(
        **_event("dlq", "market.ticks", 2, 1841), source_topic="market.ticks", partition=2, offset=1841,
        key="kraken:BTC/USDT", reason="tick batch has a non-positive price",
        payload='{"event_id":"…","prices":[-1.0]}',
    ),
    TrainingProgress: TrainingProgress(
        **_event("progress", "job-42", 17), job_id="job-42", stage="optimise", done=17, total=200,
        message="sma_cross BTC/USDT 1h trial 17",
    ),
}


def _type_name(annotation: object) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "boolean"}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation in names:
        return names[annotation]
    if origin is list:
        return f"array of {_type_name(args[0])}"
    if origin is dict or annotation is dict:
        return "object"
    if type(None) in args:
        return f"{_type_name(next(a for a in args if a is not type(None)))} or null"
    return str(annotation)


def _fields_table(record: type[Event]) -> list[str]:
    options = record._options
    rows = ["| field | type | required |", "|---|---|---|"]
    for name, annotation in options.fields.items():
        required = "no (default `" + repr(options.defaults[name]) + "`)" if name in options.defaults else "yes"
        rows.append(f"| `{name}` | {_type_name(annotation)} | {required} |")
    return rows


def render(instrument_partitions: int = 6) -> str:
    """The whole topics page as Markdown."""
    lines = [
        "# TradePulse topics",
        "",
        "Generated by `python -m streams.docs` from `streams/topics.py` and `streams/records.py`; do not edit.",
        "",
        "Every value is a UTF-8 JSON object. Every record has `event_id` (stable across retries and replays: "
        "deduplicate on it), `ts` (event time, epoch milliseconds UTC; for candles the bucket's open time) and "
        f"`schema_version` (currently {SCHEMA_VERSION}). Keys are UTF-8 strings. Instrument-keyed topics share "
        f"one partition count ({instrument_partitions} by default, `TRADEPULSE_KAFKA__PARTITIONS`) and the Java "
        "client's murmur2 key partitioner (librdkafka-based producers: set `partitioner=murmur2_random`), "
        f"so one instrument (`{instrument_key('kraken', 'BTC/USDT')}`) stays on the same "
        "partition number in all of them. A deployment may prefix every name (`TRADEPULSE_KAFKA__TOPIC_PREFIX`).",
        "",
        "| topic | key | partitions | cleanup | retention |",
        "|---|---|---|---|---|",
    ]
    for spec in TOPICS:
        retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms // 86_400_000} days"
        lines.append(
            f"| `{spec.name}` | {spec.key} | {spec.partition_count(instrument_partitions)} | "
            f"{spec.cleanup_policy} | {retention} |"
        )
    documented: set[type[Event]] = set()
    for spec in TOPICS:
        if spec.record in documented:
            continue
        documented.add(spec.record)
        names = ", ".join(f"`{s.name}`" for s in TOPICS if s.record is spec.record)
        example = orjson.dumps(EXAMPLES[spec.record].asdict(), option=orjson.OPT_INDENT_2).decode()
        lines += ["", f"## {spec.record.__name__} — {names}", "", spec.description, "",
                  *_fields_table(spec.record), "", "```json", example, "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
