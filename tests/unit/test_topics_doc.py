"""The published topic documentation matches the code that defines the log."""

from __future__ import annotations

from pathlib import Path

from streams.docs import EXAMPLES, render
from streams.topics import TOPICS, candle_topic, topic_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "topics.md"


def test_topics_page_is_current() -> None:
    assert DOC.read_text() == render(), "docs/topics.md is stale: run `python -m streams.docs > docs/topics.md`"


def test_every_topic_has_a_documented_example() -> None:
    assert {spec.record for spec in TOPICS} <= set(EXAMPLES)
    for spec in TOPICS:
        assert f"`{spec.name}`" in DOC.read_text()


def test_configs_topic_is_compacted_and_instrument_topics_share_partitions() -> None:
    by_name = {spec.name: spec for spec in TOPICS}
    assert by_name["control.configs"].cleanup_policy == "compact"
    counts = {spec.partition_count(8) for spec in TOPICS if spec.instrument_partitioned}
    assert counts == {8}
    assert by_name["market.ticks"].instrument_partitioned and by_name["exec.fills"].instrument_partitioned


def test_names_resolve_under_a_prefix() -> None:
    assert topic_name("staging.", candle_topic("1h")) == "staging.market.candles.1h"
