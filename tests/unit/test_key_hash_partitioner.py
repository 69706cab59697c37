"""The producers' partitioner remembers key hashes and must place every record where aiokafka's default would:
the agents' outputs, the feeds and the replays all rely on the same key landing on the same partition."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams import producer
from streams.keys import instrument_key
from streams.producer import KeyHashPartitioner


def test_every_key_lands_where_the_default_partitioner_puts_it() -> None:
    partitioner, default = KeyHashPartitioner(), DefaultPartitioner()
    keys = [instrument_key("kraken", f"S{index:02d}/USDT").encode() for index in range(50)]
    keys += [f"paper-{index}".encode() for index in range(50)] + [b"", "ünï".encode()]
    for partitions in (1, 6, 7, 42):
        all_partitions = list(range(partitions))
        for _ in range(2):  # the second round from the remembered hashes
            for key in keys:
                assert partitioner(key, all_partitions, all_partitions) == default(key, all_partitions,
                                                                                   all_partitions)


def test_a_record_without_key_goes_to_an_available_partition() -> None:
    assert KeyHashPartitioner()(None, [0, 1, 2, 3], [2]) == 2


def test_the_memory_of_hashes_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(producer, "KEY_HASHES_KEPT", 10)
    partitioner, default = KeyHashPartitioner(), DefaultPartitioner()
    for index in range(35):
        key = f"key-{index}".encode()
        assert partitioner(key, [0, 1, 2], [0, 1, 2]) == default(key, [0, 1, 2], [0, 1, 2])
    assert len(partitioner._hashes) <= 10
