"""Dumping and restoring the state of strategies, indicators and the execution simulator as plain JSON data.

An agent keeps a strategy between candles in a Faust Table (JSON), so every stateful object of the pure core
inherits `Stateful`: `to_state()` returns JSON-able data and `from_state()` rebuilds an object that continues
exactly where the original was. Non-finite floats, deques and nested stateful objects are tagged so they survive
a JSON round trip unchanged.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar, Self

_FLOAT = "$float"
_DEQUE = "$deque"
_OBJECT = "$object"
_DICT = "$dict"
_SCALARS = frozenset((float, int, str, bool, type(None)))
"""Types a JSON state holds as they are: restored without a call per value."""
_PLAIN = frozenset((int, str, bool, type(None)))
"""Types dumped as they are (floats too when finite)."""


class StateError(ValueError):
    """A state that cannot be restored (unknown type, wrong layout)."""


class Stateful:
    """An object whose instance attributes are its whole state; subclasses register themselves by name."""

    _types: ClassVar[dict[str, type[Stateful]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Stateful._types[cls.__qualname__] = cls

    def to_state(self) -> dict[str, Any]:
        isfinite = math.isfinite
        return {name: value if type(value) in _PLAIN or (type(value) is float and isfinite(value))
                else dump_value(value) for name, value in vars(self).items()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        obj = cls.__new__(cls)
        for name, value in state.items():  # frozen dataclasses are Stateful too
            object.__setattr__(obj, name, value if type(value) in _SCALARS else load_value(value))
        return obj


def dump_value(value: Any) -> Any:
    """JSON-able form of one attribute value.

    Exact scalar types go first, and the items of a list or deque (an indicator's window) and an object's
    attributes are checked for them inline, without a call per value: an agent dumps every strategy and simulator
    it steps on every bar."""
    if type(value) in _PLAIN or (type(value) is float and math.isfinite(value)):
        return value
    if isinstance(value, Stateful):
        return {_OBJECT: type(value).__qualname__, "state": value.to_state()}
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT: repr(float(value))}
    if isinstance(value, deque):
        return {_DEQUE: _dump_items(value), "maxlen": value.maxlen}
    if isinstance(value, list | tuple):
        return _dump_items(value)
    if isinstance(value, dict):
        return {_DICT: [[dump_value(k), dump_value(v)] for k, v in value.items()]}
    if isinstance(value, bool | int | float | str):
        return value
    raise StateError(f"cannot dump a {type(value).__name__} into a state")


def _dump_items(values: Any) -> list[Any]:
    isfinite = math.isfinite
    return [v if type(v) in _PLAIN or (type(v) is float and isfinite(v)) else dump_value(v) for v in values]


def load_value(value: Any) -> Any:
    """Inverse of `dump_value`."""
    if isinstance(value, list):
        return _load_items(value)
    if not isinstance(value, dict):
        return value
    if _FLOAT in value:
        return float(value[_FLOAT])
    if _DEQUE in value:
        return deque(_load_items(value[_DEQUE]), maxlen=value["maxlen"])
    if _DICT in value:
        return {load_value(k): load_value(v) for k, v in value[_DICT]}
    if _OBJECT in value:
        kind = Stateful._types.get(value[_OBJECT])
        if kind is None:
            raise StateError(f"unknown state type {value[_OBJECT]!r}")
        return kind.from_state(value["state"])
    raise StateError(f"unexpected state layout {sorted(value)!r}")


def _load_items(values: list[Any]) -> list[Any]:
    return [v if type(v) in _SCALARS else load_value(v) for v in values]
