"""An outside consumer (librdkafka via confluent-kafka, not Faust, not aiokafka) reads the candles the worker built
using only the documented schema in docs/topics.md."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.replay import read_candles
from streams.topics import candle_topic, topic_name
from tests.pipeline_helpers import WorkerProcess, count_rows, expected_candles, produce_ticks, wait_until
from tradepulse.marketdata.synth import generate_ticks
from tradepulse.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "topics.md"
JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict}
START_MS = 1_700_000_000_000 // 3_600_000 * 3_600_000


def documented_fields(record_name: str) -> dict[str, tuple[str, bool]]:
    """Field name → (documented type, required) parsed from the record's table in docs/topics.md."""
    section = DOC.read_text().split(f"## {record_name} —", 1)[1].split("\n## ", 1)[0]
    return {
        name: (type_name.strip(), required.strip() == "yes")
        for name, type_name, required in re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|$", section, re.M)
    }


def read_topic(settings: Settings, topic: str, count: int) -> list[tuple[int, str, dict[str, object]]]:
    """(partition, key, value) of the first `count` messages of every partition, as any Kafka client sees them."""
    name = topic_name(settings.kafka.topic_prefix, topic)
    consumer = Consumer({
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "group.id": f"{settings.worker.app_id}-outside-reader",
        "enable.auto.commit": False,
    })
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, 0) for p in partitions])
        messages = []
        while len(messages) < count:
            message = consumer.poll(10)
            assert message is not None, f"timed out after {len(messages)} of {count} messages on {name}"
            assert message.error() is None, message.error()
            messages.append((message.partition(), message.key().decode(), json.loads(message.value())))
        return messages
    finally:
        consumer.close()


def test_worker_candles_decode_with_the_documented_schema_alone(settings: Settings, tmp_path: Path) -> None:
    batches = list(generate_ticks(["BTC/USDT", "ETH/USDT"], START_MS, 40, seed=5, ticks_per_minute=30.0))
    expected = expected_candles(batches, settings.worker.late_tick_grace_ms)
    produce_ticks(settings, batches)
    with WorkerProcess(settings, tmp_path) as worker:
        wait_until(lambda: count_rows(settings, "market_data") >= len(expected), 120, "every candle stored", worker)
        assert worker.stop() == 0, worker.log_tail()

    fields = documented_fields("Candle")
    assert {"event_id", "ts", "schema_version", "open", "close", "volume"} <= set(fields)
    for timeframe in ("1m", "5m"):
        wanted = expected.xs(timeframe, level="timeframe")
        messages = read_topic(settings, candle_topic(timeframe), len(wanted))
        owners: dict[str, set[int]] = {}
        for partition, key, value in messages:
            for field, (type_name, required) in fields.items():
                assert field in value or not required, f"documented required field {field} missing"
                if value.get(field) is not None:
                    assert isinstance(value[field], JSON_TYPES[type_name]), (field, value[field])
            assert set(value) <= set(fields), f"undocumented fields {set(value) - set(fields)}"
            assert key == f"{value['exchange']}:{value['symbol']}" and value["timeframe"] == timeframe
            owners.setdefault(key, set()).add(partition)
            row = wanted.loc[(value["exchange"], value["symbol"], value["ts"])]
            assert (value["open"], value["high"], value["low"], value["close"]) == (
                row["open"], row["high"], row["low"], row["close"]
            )
        assert len({value["event_id"] for _, _, value in messages}) == len(wanted)
        assert all(len(partitions) == 1 for partitions in owners.values()), "an instrument stays on one partition"


def test_reading_candles_of_a_missing_topic_fails_at_once(settings: Settings) -> None:
    elsewhere = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={"topic_prefix": f"{settings.kafka.topic_prefix}missing."}),
    })
    started = time.monotonic()
    with pytest.raises(ValueError, match="does not exist"):
        asyncio.run(read_candles(elsewhere, "1m"))
    assert time.monotonic() - started < 5, "a missing topic must not wait out the client's metadata timeout"
