"""An outside consumer (librdkafka via confluent-kafka, not Faust, not aiokafka) reads candles from the log using
only the documented schema in docs/topics.md."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from streams.producer import LogProducer
from streams.records import SCHEMA_VERSION, Candle, instrument_key, stable_id
from streams.topics import candle_topic, topic_name
from tradepulse.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "topics.md"
JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict}


def documented_fields(record_name: str) -> dict[str, tuple[str, bool]]:
    """Field name → (documented type, required) parsed from the record's table in docs/topics.md."""
    section = DOC.read_text().split(f"## {record_name} —", 1)[1].split("\n## ", 1)[0]
    fields = {}
    for name, type_name, required in re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|$", section, re.M):
        fields[name] = (type_name.strip(), required.strip() == "yes")
    return fields


def candles(exchange: str, symbol: str, count: int) -> list[Candle]:
    start = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    return [
        Candle(
            event_id=stable_id("candle", exchange, symbol, "1m", start + i * 60_000), ts=start + i * 60_000,
            schema_version=SCHEMA_VERSION, exchange=exchange, symbol=symbol, timeframe="1m",
            open=100.0 + i, high=101.5 + i, low=99.5 + i, close=100.5 + i, volume=2.0 + i, trades=3 + i,
        )
        for i in range(count)
    ]


async def publish(settings: Settings, records: list[Candle]) -> None:
    async with LogProducer(settings) as producer:
        await producer.send_many(
            candle_topic("1m"), [(instrument_key(c.exchange, c.symbol), c) for c in records]
        )


def test_candles_decode_with_the_documented_schema_alone(settings: Settings) -> None:
    sent = candles("kraken", "BTC/USDT", 25) + candles("kraken", "ETH/USDT", 15)
    asyncio.run(publish(settings, sent))

    fields = documented_fields("Candle")
    assert {"event_id", "ts", "schema_version", "open", "close", "volume"} <= set(fields)
    name = topic_name(settings.kafka.topic_prefix, candle_topic("1m"))
    consumer = Consumer({
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "group.id": f"{settings.worker.app_id}-outside-reader",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
    consumer.assign([TopicPartition(name, p, 0) for p in partitions])
    received: list[dict[str, object]] = []
    keys_by_partition: dict[int, set[str]] = {}
    try:
        while len(received) < len(sent):
            message = consumer.poll(10)
            assert message is not None, f"timed out after {len(received)} of {len(sent)} candles"
            assert message.error() is None, message.error()
            value = json.loads(message.value())
            for field, (type_name, required) in fields.items():
                if required:
                    assert field in value, f"documented required field {field} missing"
                if field in value and value[field] is not None:
                    assert isinstance(value[field], JSON_TYPES[type_name]), (field, value[field])
            assert set(value) <= set(fields), f"undocumented fields {set(value) - set(fields)}"
            keys_by_partition.setdefault(message.partition(), set()).add(message.key().decode())
            received.append(value)
    finally:
        consumer.close()

    by_id = {value["event_id"]: value for value in received}
    assert len(by_id) == len(sent)
    for candle in sent:
        assert by_id[candle.event_id] == candle.asdict()
    owners = [p for p, keys in keys_by_partition.items() if "kraken:BTC/USDT" in keys]
    assert len(owners) == 1, "one instrument must stay on one partition"
