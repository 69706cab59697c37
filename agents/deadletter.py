"""Dead letters: rejected input kept whole on ops.dlq with a reason, so one bad event never stops a stream.

Every reason starts with a short code (`bad_json: malformed JSON: ...`) so counts per kind of problem stay readable
in the worker's stats while the full text stays with the letter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faust
import psycopg
from faust.types.tuples import Message

from agents.stats import WorkerStats
from streams.codecs import encode
from streams.records import SCHEMA_VERSION, DeadLetter, stable_id

logger = logging.getLogger(__name__)

BAD_JSON = "bad_json"
WRONG_TYPE = "wrong_type"
MISSING_FIELD = "missing_field"
NON_POSITIVE_PRICE = "non_positive_price"
INVALID_VALUE = "invalid_value"
BAD_KEY = "bad_key"
LATE_TICK = "late_tick"
REJECTED_BY_DATABASE = "rejected_by_database"

MAX_PAYLOAD_BYTES = 64 * 1024
"""The most of a rejected message a letter carries. Escaping can grow a byte to six characters of JSON, so a letter
stays far below the broker's 1 MB message limit even for a message that was at that limit itself; the whole message
stays in its source topic at the letter's partition and offset."""

_CODES_BY_MESSAGE: tuple[tuple[str, str], ...] = (
    ("malformed JSON", BAD_JSON),
    ("empty message value", BAD_JSON),
    ("expected a JSON object", WRONG_TYPE),
    ("missing field", MISSING_FIELD),
    ("non-positive price", NON_POSITIVE_PRICE),
    (": expected ", WRONG_TYPE),
)


def decode_error_code(message: str) -> str:
    """The code of a `streams.codecs.InvalidEvent` message."""
    for fragment, code in _CODES_BY_MESSAGE:
        if fragment in message:
            return code
    return INVALID_VALUE


def reason_code(reason: str) -> str:
    """The code a dead letter's reason starts with."""
    return reason.split(":", 1)[0]


def letter_for_message(message: Message, code: str, detail: str, *, payload: bytes | None = None) -> DeadLetter:
    """A dead letter for a consumed message, carrying the message (or `payload`, the part rejected), cut if huge.

    The id depends only on where the message was and why it was rejected, so a redelivered message produces the
    same letter and the dead_letters table keeps one row for it. Its time is the message's log timestamp.
    """
    body = (message.value if payload is None else payload) or b""
    if len(body) > MAX_PAYLOAD_BYTES:
        detail = f"{detail} (payload cut to its first {MAX_PAYLOAD_BYTES} of {len(body)} bytes)"
        body = body[:MAX_PAYLOAD_BYTES]
    return DeadLetter(
        event_id=stable_id("dead-letter", message.topic, message.partition, message.offset, code),
        ts=int(message.timestamp * 1000),
        schema_version=SCHEMA_VERSION,
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=None if message.key is None else _text(message.key),
        reason=f"{code}: {detail}",
        payload=_text(body),
    )


def _text(raw: bytes) -> str:
    """Bytes as storable text: invalid UTF-8 and NUL (which PostgreSQL text refuses) written as `\\xNN` escapes."""
    return raw.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


async def send_dead_letters(dlq: faust.TopicT, letters: Sequence[DeadLetter], stats: WorkerStats) -> None:
    """Publish dead letters, count and log them, and wait until the broker has them all.

    Callers record progress (table state, acknowledgement) only after this returns, so a crash can repeat a
    letter (same id) but never lose one.
    """
    pending = []
    for letter in letters:
        stats.dead_letters[reason_code(letter.reason)] += 1
        logger.warning(
            "dead letter from %s[%d]@%d: %s", letter.source_topic, letter.partition, letter.offset, letter.reason
        )
        pending.append(await dlq.send(key=letter.source_topic.encode(), value=encode(letter)))
    for future in pending:
        await future


# The time is converted in SQL: an absurd `ts` on a letter is then a database error, which costs that letter alone,
# instead of a Python exception that would fail the sink's whole batch.
_UPSERT = """
INSERT INTO dead_letters (event_id, ts, source_topic, "partition", "offset", key, reason, payload)
VALUES (%s, TIMESTAMPTZ 'epoch' + %s::bigint * INTERVAL '1 millisecond', %s, %s, %s, %s, %s, %s)
ON CONFLICT (event_id) DO NOTHING
"""


def upsert_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetter]) -> int:
    """Store dead letters idempotently (a redelivered letter is ignored); returns how many were given."""
    with conn.cursor() as cursor:
        cursor.executemany(
            _UPSERT,
            [
                (
                    letter.event_id, letter.ts, letter.source_topic, letter.partition, letter.offset, letter.key,
                    letter.reason, letter.payload,
                )
                for letter in letters
            ],
        )
    return len(letters)
