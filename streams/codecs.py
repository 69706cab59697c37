"""JSON codecs with validation: decoding either returns a valid record or raises `InvalidEvent` with a reason."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from streams.records import TIMEFRAMES, Candle, Event, Order, Signal, TickBatch

R = TypeVar("R", bound=Event)


MAX_TIME_MS = 10**13
"""Year 2286 in epoch milliseconds: a tick time beyond it is in another unit (micro- or nanoseconds), and a single
such tick would push its instrument's watermark so far ahead that every later tick counts as late."""


class InvalidEvent(ValueError):
    """An event that must be dead-lettered; the message is the reason."""


def encode(record: Event) -> bytes:
    """Serialise a record as a plain JSON object."""
    return orjson.dumps(record.asdict(), option=orjson.OPT_SERIALIZE_NUMPY)


def _type_error(name: str, expected: object, value: object) -> InvalidEvent:
    return InvalidEvent(f"field {name!r}: expected {expected}, got {type(value).__name__} {value!r:.60}")


def _check(name: str, expected: Any, value: Any) -> Any:
    """Check `value` against a field annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        non_null = [option for option in options if option is not type(None)]
        return _check(name, non_null[0], value)
    if expected is Any:
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(name, "number", value)
        if not math.isfinite(value):
            raise InvalidEvent(f"field {name!r}: not a finite number")
        return float(value)
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(name, "integer", value)
        return value
    if expected is str:
        if not isinstance(value, str):
            raise _type_error(name, "string", value)
        return value
    if expected is bool:
        if not isinstance(value, bool):
            raise _type_error(name, "boolean", value)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(name, "array", value)
        (item_type,) = typing.get_args(expected)
        if item_type is float:
            return _float_list(name, value)
        if item_type is int:
            return _int_list(name, value)
        return [_check(f"{name}[]", item_type, item) for item in value]
    if origin is dict or expected is dict:
        if not isinstance(value, dict):
            raise _type_error(name, "object", value)
        return value
    raise TypeError(f"unsupported annotation {expected!r} for field {name!r}")


_NOT_NUMBERS = (bool, str)
"""JSON values `float()` would take that are not numbers (a tuple: `bool | str` is built anew on every call)."""


def _float_list(name: str, values: list[Any]) -> list[float]:
    """Fast path for the large numeric columns of tick batches."""
    try:
        floats = [float(v) for v in values if not isinstance(v, _NOT_NUMBERS)]
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"field {name!r}: expected numbers") from exc
    if len(floats) != len(values):
        raise InvalidEvent(f"field {name!r}: expected numbers")
    if not all(map(math.isfinite, floats)):
        raise InvalidEvent(f"field {name!r}: not all finite numbers")
    return floats


def _int_list(name: str, values: list[Any]) -> list[int]:
    """Fast path for the tick time column: one type scan instead of a check per item."""
    if set(map(type, values)) - {int}:
        raise InvalidEvent(f"field {name!r}: expected integers")
    return values


def _validate_ticks(batch: TickBatch) -> None:
    count = len(batch.times)
    if count == 0:
        raise InvalidEvent("tick batch is empty")
    if len(batch.prices) != count or len(batch.amounts) != count:
        raise InvalidEvent("tick batch columns times/prices/amounts differ in length")
    if min(batch.prices) <= 0:
        raise InvalidEvent("tick batch has a non-positive price")
    if min(batch.amounts) < 0:
        raise InvalidEvent("tick batch has a negative amount")
    if min(batch.times) <= 0:
        raise InvalidEvent("tick batch has a non-positive time")
    if max(batch.times) >= MAX_TIME_MS:
        raise InvalidEvent(f"tick batch has a time {max(batch.times)} that is not epoch milliseconds")


def _validate_candle(candle: Candle) -> None:
    span = TIMEFRAMES.get(candle.timeframe)
    if span is None:
        raise InvalidEvent(f"unknown timeframe {candle.timeframe!r}")
    if candle.ts % span:
        raise InvalidEvent(f"candle ts {candle.ts} is not aligned to {candle.timeframe}")
    if min(candle.open, candle.high, candle.low, candle.close) <= 0:
        raise InvalidEvent("candle has a non-positive price")
    if candle.high < max(candle.open, candle.close, candle.low) or candle.low > min(candle.open, candle.close):
        raise InvalidEvent("candle OHLC is inconsistent (high/low do not bound open/close)")
    if candle.volume < 0:
        raise InvalidEvent("candle has a negative volume")


_INTENT_CHOICES = {"action": ("enter", "exit"), "side": ("long", "short"), "order_type": ("market", "limit", "stop")}
_INTENT_LEVELS = ("price", "stop_loss", "take_profit")


def _validate_intents(kind: str, items: list[Any], extra: tuple[str, ...] = ()) -> None:
    for index, item in enumerate(items):
        where = f"{kind}[{index}]"
        if not isinstance(item, dict):
            raise InvalidEvent(f"{where} is not an object")
        for name, choices in _INTENT_CHOICES.items():
            if item.get(name, "market" if name == "order_type" else None) not in choices:
                raise InvalidEvent(f"{where}.{name} must be one of {', '.join(choices)}, got {item.get(name)!r}")
        for name in _INTENT_LEVELS:
            value = item.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value <= 0):
                raise InvalidEvent(f"{where}.{name} must be a positive number or null, got {value!r}")
        for name in extra:
            if name not in item:
                raise InvalidEvent(f"{where} has no {name!r}")


def _validate_signal(signal: Signal) -> None:
    _validate_intents("intents", signal.intents)


def _validate_orders(batch: Order) -> None:
    _validate_intents("orders", batch.orders, ("order_id", "quantity"))


_DOMAIN_CHECKS: dict[type[Event], Callable[[Any], None]] = {
    TickBatch: _validate_ticks,
    Candle: _validate_candle,
    Signal: _validate_signal,
    Order: _validate_orders,
}


def from_dict(record_type: type[R], data: object) -> R:
    """Build a record from decoded JSON, checking presence, types and domain rules."""
    if not isinstance(data, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}")
    options = record_type._options
    values: dict[str, Any] = {}
    for name, annotation in options.fields.items():
        if name in data:
            values[name] = _check(name, annotation, data[name])
        elif name in options.defaults:
            values[name] = options.defaults[name]
        else:
            raise InvalidEvent(f"missing field {name!r}")
    if values["schema_version"] > 1:
        raise InvalidEvent(f"unsupported schema_version {values['schema_version']}")
    record = record_type(**values)
    check = _DOMAIN_CHECKS.get(record_type)
    if check is not None:
        check(record)
    return record


def decode(record_type: type[R], payload: bytes | str | None) -> R:
    """Decode one message value into a valid record or raise `InvalidEvent`."""
    if payload is None:
        raise InvalidEvent("empty message value")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from exc
    return from_dict(record_type, data)
