"""Holes and redeliveries in a partition's offsets, as `agents.batches.message_batches` sees them."""

from __future__ import annotations

from faust.types import TP

from agents.batches import PartitionSequence

TICKS = TP("market.ticks", 1)
OTHER = TP("market.ticks", 2)


def sequence(committed: dict[TP, int]) -> PartitionSequence:
    return PartitionSequence(committed.get, hole_wait_s=10.0)


def test_messages_in_order_from_the_committed_offset_are_accepted() -> None:
    seq = sequence({TICKS: 100})
    assert [seq.classify(TICKS, offset, 1, 0.0) for offset in (100, 101, 102)] == [PartitionSequence.ACCEPT] * 3
    assert seq.expected(TICKS) == 103


def test_without_a_committed_offset_the_first_message_sets_the_sequence() -> None:
    seq = sequence({})
    assert seq.classify(TICKS, 7, 1, 0.0) == PartitionSequence.ACCEPT
    assert seq.classify(TICKS, 9, 1, 0.0) == PartitionSequence.SEEK


def test_a_hole_asks_for_one_seek_then_holds_later_offsets_until_the_missing_one_arrives() -> None:
    seq = sequence({TICKS: 100})
    assert seq.classify(TICKS, 100, 1, 0.0) == PartitionSequence.ACCEPT
    assert seq.classify(TICKS, 104, 1, 0.0) == PartitionSequence.SEEK
    assert seq.expected(TICKS) == 101
    assert seq.classify(TICKS, 105, 1, 1.0) == PartitionSequence.HOLD
    assert seq.classify(TICKS, 101, 1, 2.0) == PartitionSequence.ACCEPT
    assert seq.classify(TICKS, 102, 1, 2.0) == PartitionSequence.ACCEPT
    assert seq.classify(TICKS, 104, 1, 2.0) == PartitionSequence.SEEK  # a new hole (103) asks for a new seek


def test_a_message_before_the_committed_offset_is_a_redelivery() -> None:
    seq = sequence({TICKS: 100})
    assert seq.classify(TICKS, 98, 1, 0.0) == PartitionSequence.REDELIVERED
    assert seq.classify(TICKS, 100, 1, 0.0) == PartitionSequence.ACCEPT
    assert seq.classify(TICKS, 100, 1, 0.0) == PartitionSequence.REDELIVERED


def test_offsets_still_missing_after_the_wait_ask_for_a_decision_then_wait_again() -> None:
    seq = sequence({TICKS: 100})
    assert seq.classify(TICKS, 103, 1, 0.0) == PartitionSequence.SEEK
    assert seq.classify(TICKS, 103, 1, 9.9) == PartitionSequence.HOLD
    assert seq.classify(TICKS, 103, 1, 10.0) == PartitionSequence.STILL_MISSING
    assert seq.classify(TICKS, 104, 1, 15.0) == PartitionSequence.HOLD
    assert seq.classify(TICKS, 104, 1, 20.0) == PartitionSequence.STILL_MISSING
    assert seq.expected(TICKS) == 100


def test_an_accepted_hole_goes_on_after_the_message_that_revealed_it() -> None:
    seq = sequence({TICKS: 100})
    assert seq.classify(TICKS, 103, 1, 0.0) == PartitionSequence.SEEK
    seq.accept_hole(TICKS, 103)
    assert seq.expected(TICKS) == 104
    assert seq.classify(TICKS, 104, 1, 0.0) == PartitionSequence.ACCEPT


def test_a_failed_seek_is_asked_for_again_by_the_next_message() -> None:
    seq = sequence({TICKS: 100})
    assert seq.classify(TICKS, 103, 1, 0.0) == PartitionSequence.SEEK
    seq.seek_failed(TICKS)
    assert seq.classify(TICKS, 104, 1, 1.0) == PartitionSequence.SEEK


def test_a_new_consumer_generation_restarts_from_the_committed_offset() -> None:
    committed = {TICKS: 100}
    seq = sequence(committed)
    assert seq.classify(TICKS, 100, 1, 0.0) == PartitionSequence.ACCEPT
    committed[TICKS] = 250  # another worker owned the partition meanwhile
    assert seq.classify(TICKS, 250, 2, 0.0) == PartitionSequence.ACCEPT
    assert seq.classify(TICKS, 101, 2, 0.0) == PartitionSequence.REDELIVERED


def test_partitions_are_independent() -> None:
    seq = sequence({TICKS: 100, OTHER: 5})
    assert seq.classify(TICKS, 100, 1, 0.0) == PartitionSequence.ACCEPT
    assert seq.classify(OTHER, 6, 1, 0.0) == PartitionSequence.SEEK
    assert seq.classify(TICKS, 101, 1, 0.0) == PartitionSequence.ACCEPT
