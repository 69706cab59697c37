"""Decoding either yields a valid record or a precise reason for the dead-letter topic."""

from __future__ import annotations

import orjson
import pytest

from streams.codecs import InvalidEvent, decode, encode
from streams.docs import EXAMPLES
from streams.records import Candle, Event, TickBatch, stable_id


@pytest.mark.parametrize("record_type", list(EXAMPLES))
def test_every_example_round_trips(record_type: type[Event]) -> None:
    record = EXAMPLES[record_type]
    assert decode(record_type, encode(record)) == record


def test_encoding_is_plain_json_without_framework_metadata() -> None:
    data = orjson.loads(encode(EXAMPLES[Candle]))
    assert "__faust" not in data
    assert data["timeframe"] == "1m" and data["schema_version"] == 1


def _ticks(**changes: object) -> bytes:
    data = EXAMPLES[TickBatch].asdict() | changes
    return orjson.dumps(data)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (None, "empty message value"),
        (b"[1, 2]", "expected a JSON object"),
        (orjson.dumps({k: v for k, v in EXAMPLES[TickBatch].asdict().items() if k != "symbol"}),
         "missing field 'symbol'"),
        (_ticks(ts="yesterday"), "field 'ts': expected integer"),
        (_ticks(ts=True), "field 'ts': expected integer"),
        (_ticks(prices=[1.0, "2", 3.0]), "field 'prices': expected numbers"),
        (_ticks(prices=[61250.5, 0.0, 61249.2]), "non-positive price"),
        (_ticks(amounts=[0.1, -0.5, 0.1]), "negative amount"),
        (_ticks(prices=[1.0, 2.0]), "differ in length"),
        (_ticks(times=[], prices=[], amounts=[]), "tick batch is empty"),
        (_ticks(schema_version=2), "unsupported schema_version 2"),
        (_ticks(prices=[1.0, None, 2.0]), "field 'prices': expected numbers"),
        (_ticks(prices=[1.0, 2.0, 3.0]).replace(b"2.0", b"NaN"), "malformed JSON"),
    ],
)
def test_bad_tick_batches_are_rejected_with_a_reason(payload: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason.replace("(", r"\(")):
        decode(TickBatch, payload)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"timeframe": "7m"}, "unknown timeframe"),
        ({"ts": 1_719_792_000_001}, "not aligned"),
        ({"high": 1.0}, "inconsistent"),
        ({"low": 99_999.0}, "inconsistent"),
        ({"open": -5.0}, "non-positive price"),
        ({"volume": -1.0}, "negative volume"),
    ],
)
def test_bad_candles_are_rejected_with_a_reason(changes: dict[str, object], reason: str) -> None:
    payload = orjson.dumps(EXAMPLES[Candle].asdict() | changes)
    with pytest.raises(InvalidEvent, match=reason):
        decode(Candle, payload)


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    candle = decode(Candle, orjson.dumps(EXAMPLES[Candle].asdict() | {"open": 61251, "volume": 3}))
    assert candle.open == 61251.0 and isinstance(candle.open, float)


def test_stable_ids_depend_only_on_their_inputs() -> None:
    assert stable_id("candle", "kraken", "BTC/USDT", "1m", 60_000) == stable_id(
        "candle", "kraken", "BTC/USDT", "1m", 60_000
    )
    assert stable_id("candle", "kraken", "BTC/USDT", "1m", 60_000) != stable_id(
        "candle", "kraken", "BTC/USDT", "5m", 60_000
    )


@pytest.mark.parametrize("times", [[1, 2.5, 3], [1, "2", 3], [1, True, 3], [1, None, 3]])
def test_tick_times_must_all_be_integers(times: list[object]) -> None:
    with pytest.raises(InvalidEvent, match="field 'times': expected integers"):
        decode(TickBatch, _ticks(times=times))
