"""What trade_paper makes of one market.ticks message: bad input becomes one dead letter with a reason code."""

from __future__ import annotations

import orjson
import pytest
from faust.types.tuples import Message

from agents.candles import CandleBuilder
from agents.deadletter import MAX_PAYLOAD_BYTES, reason_code
from agents.market import process_tick_message
from streams.codecs import decode, encode
from streams.records import SCHEMA_VERSION, DeadLetter

KEY = b"kraken:BTC/USDT"
GOOD = {
    "event_id": "batch-1", "ts": 2_000, "schema_version": SCHEMA_VERSION, "exchange": "kraken",
    "symbol": "BTC/USDT", "times": [1_000, 2_000], "prices": [10.0, 11.0], "amounts": [1.0, 2.0],
}
GRACE_MS = 5_000


def message(value: bytes | None, *, key: bytes | None = KEY, offset: int = 7) -> Message:
    return Message("p.market.ticks", 2, offset, 1_700_000_000.25, 0, None, key, value, None)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b'{"event_id": "x", "times": [1, 2', "bad_json"),
        (None, "bad_json"),
        (orjson.dumps([GOOD]), "wrong_type"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "prices"}), "missing_field"),
        (orjson.dumps(GOOD | {"prices": "10"}), "wrong_type"),
        (orjson.dumps(GOOD | {"times": [1_000, "later"]}), "wrong_type"),
        (orjson.dumps(GOOD | {"prices": [10.0, 0.0]}), "non_positive_price"),
        (orjson.dumps(GOOD | {"prices": [10.0, -1.0]}), "non_positive_price"),
        (orjson.dumps(GOOD | {"amounts": [1.0]}), "invalid_value"),
        (orjson.dumps(GOOD | {"times": [1_000, 1_700_000_000_000_000]}), "invalid_value"),
        (orjson.dumps(GOOD | {"times": [1_000, 2**64 - 1]}), "invalid_value"),
    ],
)
def test_bad_input_is_one_dead_letter_and_changes_no_state(value: bytes | None, code: str) -> None:
    step = process_tick_message(message(value), None, GRACE_MS)

    assert step.state is None and step.candles == [] and step.accepted_ticks == 0
    (letter,) = step.letters
    assert reason_code(letter.reason) == code
    assert (letter.source_topic, letter.partition, letter.offset, letter.key) == ("p.market.ticks", 2, 7, KEY.decode())
    assert letter.payload == (value or b"").decode()
    assert letter.ts == 1_700_000_000_250


def test_a_message_keyed_by_another_instrument_is_rejected() -> None:
    step = process_tick_message(message(orjson.dumps(GOOD), key=b"kraken:ETH/USDT"), None, GRACE_MS)
    (letter,) = step.letters
    assert reason_code(letter.reason) == "bad_key" and step.state is None


def test_a_good_batch_updates_state_and_records_its_offset() -> None:
    step = process_tick_message(message(orjson.dumps(GOOD)), None, GRACE_MS)
    assert step.letters == [] and step.accepted_ticks == 2
    assert step.instrument == "kraken:BTC/USDT"
    assert step.state is not None and step.state["offset"] == 7 and step.state["watermark"] == 2_000


def test_late_ticks_are_dead_lettered_alone_and_the_rest_is_kept() -> None:
    builder = CandleBuilder("kraken", "BTC/USDT", GRACE_MS)
    builder.apply([1_000, 70_000], [10.0, 12.0], [1.0, 1.0], offset=6)
    batch = GOOD | {"times": [30_000, 71_000], "prices": [99.0, 12.5], "amounts": [3.0, 1.0]}

    step = process_tick_message(message(orjson.dumps(batch)), builder.to_state(), GRACE_MS)

    (letter,) = step.letters
    assert reason_code(letter.reason) == "late_tick"
    late = orjson.loads(letter.payload)
    assert (late["times"], late["prices"], late["amounts"]) == ([30_000], [99.0], [3.0])
    assert step.accepted_ticks == 1 and step.state is not None and step.state["offset"] == 7


def test_a_redelivered_batch_is_skipped() -> None:
    state = process_tick_message(message(orjson.dumps(GOOD)), None, GRACE_MS).state
    again = process_tick_message(message(orjson.dumps(GOOD)), state, GRACE_MS)
    assert again.skipped and again.state is None and again.letters == []


def test_a_dead_letter_has_the_same_id_when_the_message_is_redelivered() -> None:
    first = process_tick_message(message(b"nonsense"), None, GRACE_MS).letters[0]
    second = process_tick_message(message(b"nonsense"), None, GRACE_MS).letters[0]
    other = process_tick_message(message(b"nonsense", offset=8), None, GRACE_MS).letters[0]
    assert first.event_id == second.event_id != other.event_id


@pytest.mark.parametrize("filler", [b'"' * 990_000, bytes(range(1, 32)) * 32_000])
def test_a_letter_for_a_huge_message_stays_below_the_broker_message_limit(filler: bytes) -> None:
    """Escaping would make a whole near-1 MB message a letter the broker refuses, and the letter would be lost."""
    value = b'{"event_id": ' + filler
    (letter,) = process_tick_message(message(value), None, GRACE_MS).letters

    encoded = encode(letter)
    assert len(encoded) < 1_000_000
    assert decode(DeadLetter, encoded).payload == value[:MAX_PAYLOAD_BYTES].decode(errors="backslashreplace")
    assert reason_code(letter.reason) == "bad_json"
    assert f"first {MAX_PAYLOAD_BYTES} of {len(value)} bytes" in letter.reason


def test_a_letter_for_binary_input_carries_no_nul_bytes() -> None:
    """PostgreSQL text refuses NUL: a letter keeping one could never reach the dead_letters table."""
    (letter,) = process_tick_message(message(b"\x00\xff{", key=b"k\x00"), None, GRACE_MS).letters
    assert (letter.payload, letter.key) == ("\\x00\\xff{", "k\\x00")
