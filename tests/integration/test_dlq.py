"""Each kind of bad input costs exactly one dead letter with its reason; the good batches around it still count."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import psycopg
from faust.types.tuples import Message

from agents.deadletter import letter_for_message, reason_code, upsert_dead_letters
from agents.sinks import DatabaseWriter, write_isolating_failures
from streams.codecs import encode
from streams.records import SCHEMA_VERSION, DeadLetter, TickBatch, instrument_key, make_candle, stable_id
from streams.replay import read_records
from streams.topics import DLQ, TICKS, candle_topic, topic_name
from tests.pipeline_helpers import (
    WorkerProcess,
    assert_same_candles,
    count_rows,
    expected_candles,
    heartbeat_stats,
    messages_seen,
    produce_raw,
    stored_candles,
    topic_candles,
    wait_until,
)
from tradepulse.marketdata.synth import generate_ticks
from tradepulse.settings import Settings

START_MS = 1_700_000_000_000 // 3_600_000 * 3_600_000
SYMBOL = "BTC/USDT"


def bad_inputs(exchange: str) -> dict[str, tuple[bytes, bytes]]:
    """Expected reason code → (key, value) of one message that must be rejected for that reason."""
    key = instrument_key(exchange, SYMBOL).encode()
    good = {
        "event_id": "bad-input", "ts": START_MS + 30 * 60_000, "schema_version": SCHEMA_VERSION,
        "exchange": exchange, "symbol": SYMBOL, "times": [START_MS + 30 * 60_000], "prices": [100.0],
        "amounts": [1.0],
    }
    missing = {name: value for name, value in good.items() if name != "prices"}
    return {
        "bad_json": (key, b'{"event_id": "x", "times": [1, 2'),
        "missing_field": (key, orjson.dumps(missing)),
        "wrong_type": (key, orjson.dumps(good | {"times": ["yesterday"]})),
        "non_positive_price": (key, orjson.dumps(good | {"prices": [0.0]})),
        "bad_key": (b"kraken:ETH/USDT", orjson.dumps(good)),
        # Minute 0 closed long ago: the watermark is 30 minutes further on when this arrives.
        "late_tick": (key, encode(TickBatch(
            event_id=stable_id("ticks", "late"), ts=START_MS + 10_000, schema_version=SCHEMA_VERSION,
            exchange=exchange, symbol=SYMBOL, times=[START_MS + 10_000], prices=[123.0], amounts=[2.0],
        ))),
    }


def test_each_bad_input_becomes_one_dead_letter(settings: Settings, tmp_path: Path) -> None:
    batches = list(generate_ticks([SYMBOL], START_MS, 60, seed=5, ticks_per_minute=30.0, batch_ms=10_000))
    exchange = batches[0].exchange
    expected = expected_candles(batches, settings.worker.late_tick_grace_ms)
    bad = bad_inputs(exchange)
    half = next(i for i, b in enumerate(batches) if b.times[0] >= START_MS + 30 * 60_000)
    key = instrument_key(exchange, SYMBOL).encode()
    produce_raw(settings, TICKS, [(key, encode(b)) for b in batches[:half]])
    produce_raw(settings, TICKS, list(bad.values()))
    produce_raw(settings, TICKS, [(key, encode(b)) for b in batches[half:]])

    with WorkerProcess(settings, tmp_path) as worker:
        wait_until(lambda: count_rows(settings, "dead_letters") >= len(bad), 120, "the dead letters stored", worker)
        wait_until(lambda: count_rows(settings, "market_data") >= len(expected), 120, "every candle stored", worker)
        wait_until(lambda: messages_seen(settings) == len(batches) + len(bad), 30,
                   "a final heartbeat", worker)
        assert worker.stop() == 0, worker.log_tail()

    letters = [letter for _, _, letter in asyncio.run(read_records(settings, DLQ, DeadLetter))]
    assert sorted(reason_code(letter.reason) for letter in letters) == sorted(bad)
    ticks_topic = topic_name(settings.kafka.topic_prefix, TICKS)
    for letter in letters:
        code = reason_code(letter.reason)
        assert letter.source_topic == ticks_topic
        assert letter.key == bad[code][0].decode()
        if code != "late_tick":
            assert letter.payload == bad[code][1].decode(errors="backslashreplace")
    late = next(letter for letter in letters if reason_code(letter.reason) == "late_tick")
    assert orjson.loads(late.payload)["times"] == [START_MS + 10_000]

    with psycopg.connect(settings.database.url) as conn:
        rows = conn.execute('SELECT event_id, reason, source_topic, "offset" FROM dead_letters').fetchall()
    assert sorted(rows) == sorted((x.event_id, x.reason, x.source_topic, x.offset) for x in letters)

    # The rejected input changed nothing: the candles are those of the good batches alone.
    assert_same_candles(stored_candles(settings), expected)
    assert_same_candles(topic_candles(settings), expected)
    stats = heartbeat_stats(settings)[-1]
    assert stats["dead_letters"] == dict.fromkeys(bad, 1)
    assert stats["sink_rows"]["dead_letters"] == len(bad)


def test_candles_the_sink_cannot_store_are_dead_lettered(settings: Settings, tmp_path: Path) -> None:
    good = [
        make_candle("kraken", SYMBOL, "1m", START_MS + i * 60_000, (10.0, 11.0, 9.0, 10.5, 3.0),
                    source="test", trades=4)
        for i in range(5)
    ]
    # Valid on the log, refused by market_data's CHECK (trades >= 0).
    refused = good[0].derive(event_id=stable_id("candle", "kraken", "ETH/USDT", "1m", START_MS), symbol="ETH/USDT",
                             trades=-1)
    key = instrument_key("kraken", SYMBOL).encode()
    produce_raw(settings, candle_topic("1m"), [
        (key, encode(good[0])), (key, b"not a candle"), (key, encode(refused)), *((key, encode(c)) for c in good[1:]),
    ])

    with WorkerProcess(settings, tmp_path) as worker:
        wait_until(lambda: count_rows(settings, "dead_letters") >= 2, 120, "the dead letters stored", worker)
        wait_until(lambda: count_rows(settings, "market_data") >= len(good), 60, "the good candles stored", worker)
        assert worker.stop() == 0, worker.log_tail()

    letters = [letter for _, _, letter in asyncio.run(read_records(settings, DLQ, DeadLetter))]
    assert sorted(reason_code(letter.reason) for letter in letters) == ["bad_json", "rejected_by_database"]
    assert all(letter.source_topic == topic_name(settings.kafka.topic_prefix, candle_topic("1m")) for letter in letters)
    assert list(stored_candles(settings).index.get_level_values("ts")) == [c.ts for c in good]


def test_the_dead_letter_sink_stores_binary_letters_and_refuses_an_absurd_time_alone(settings: Settings) -> None:
    """A letter the database cannot take costs that letter alone, never an exception that fails the whole batch."""
    binary = letter_for_message(Message("t", 0, 1, 1_700_000_000.0, 0, None, b"k\x00", b"\x00\xfe", None),
                                "bad_json", "binary")
    absurd = binary.derive(event_id="absurd", ts=2**62)
    db = DatabaseWriter(settings)
    try:
        written, refused = asyncio.run(
            write_isolating_failures(db, upsert_dead_letters, [binary, absurd], "dead letters"))
    finally:
        db.close()

    assert written == 1 and [letter.event_id for letter, _ in refused] == ["absurd"]
    with psycopg.connect(settings.database.url) as conn:
        rows = conn.execute("SELECT event_id, key, payload, extract(epoch FROM ts) FROM dead_letters").fetchall()
    assert rows == [(binary.event_id, "k\\x00", "\\x00\\xfe", 1_700_000_000)]
