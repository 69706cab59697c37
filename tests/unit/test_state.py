"""States: every value an indicator, strategy or simulator holds survives a JSON round trip unchanged, in the
layout the changelogs already hold."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import orjson
import pytest

from agents.state import StateError, Stateful, dump_value, load_value


class Inner(Stateful):
    def __init__(self) -> None:
        self.window: deque[float] = deque([1.5, math.nan, -math.inf], maxlen=4)


class Outer(Stateful):
    def __init__(self) -> None:
        self.count = 3
        self.name = "x"
        self.flag = True
        self.missing = None
        self.level = math.inf
        self.price = 101.25
        self.levels = [1.0, math.nan, [2, "a", None]]
        self.pair = (1, math.inf)
        self.by_side = {"long": 1.0, 2: [math.nan]}
        self.inner = Inner()
        self.inners = [Inner()]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, deque):
        return isinstance(b, deque) and a.maxlen == b.maxlen and same(list(a), list(b))
    if isinstance(a, list | tuple):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(
            same(x, y) for x, y in zip(a.values(), b.values(), strict=True))
    if isinstance(a, Stateful):
        return type(a) is type(b) and same(vars(a), vars(b))
    return a == b and type(a) is type(b)


def test_every_kind_of_value_survives_a_json_round_trip() -> None:
    original = Outer()
    restored = Outer.from_state(orjson.loads(orjson.dumps(original.to_state())))
    assert same(vars(original), vars(restored))
    assert restored.pair == [1, math.inf]  # tuples come back as lists, as they always did


def test_the_dumped_layout_is_the_one_the_changelogs_hold() -> None:
    assert dump_value(deque([1.0, math.inf, 2], maxlen=3)) == {"$deque": [1.0, {"$float": "inf"}, 2], "maxlen": 3}
    assert dump_value([math.nan])[0] == {"$float": "nan"}
    assert dump_value({"a": -math.inf}) == {"$dict": [["a", {"$float": "-inf"}]]}
    assert Inner().to_state() == {"window": {"$deque": [1.5, {"$float": "nan"}, {"$float": "-inf"}], "maxlen": 4}}
    assert dump_value(np.float64(math.nan)) == {"$float": "nan"}  # a float subclass is tagged too
    assert load_value({"$float": "-inf"}) == -math.inf


def test_what_cannot_be_dumped_or_restored_is_refused() -> None:
    with pytest.raises(StateError, match="cannot dump a set"):
        dump_value({1, 2})
    with pytest.raises(StateError, match="unknown state type"):
        load_value({"$object": "Nowhere", "state": {}})
    with pytest.raises(StateError, match="unexpected state layout"):
        load_value({"what": 1})
