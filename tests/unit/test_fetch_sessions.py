"""The fetch-session bookkeeping: what each request tells the broker, and how answers and failures move the session."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.protocol.fetch import FetchRequest, FetchRequest_v4, FetchRequest_v11

from streams.app import create_app, fetch_in_sessions_with_faust
from streams.fetch_sessions import MAX_EPOCH, FetchSession, SessionFetchRequest, by_topic
from tradepulse.settings import Settings

MAX_BYTES = 1_048_576


def full_request(**offsets: int) -> FetchRequest:
    """A request as aiokafka's fetcher builds it: every partition it wants, `topic_partition=offset`."""
    wanted = [(key.rsplit("_", 1)[0], int(key.rsplit("_", 1)[1]), offset) for key, offset in offsets.items()]
    topics = by_topic((topic, partition, offset, MAX_BYTES) for topic, partition, offset in wanted)
    return FetchRequest(500, 1, 52_428_800, 0, topics)


def answer(session_id: int = 7, error_code: int = 0, version: int = 11) -> Any:
    return SimpleNamespace(API_VERSION=version, error_code=error_code, session_id=session_id, topics=[])


def listed(request: FetchRequest) -> dict[tuple[str, int], int]:
    return {(topic, partition): offset for topic, partitions in request.topics for partition, offset, _ in partitions}


def opened_session() -> FetchSession:
    session = FetchSession(node_id=1)
    session.request(full_request(ticks_0=10, ticks_1=20, candles_0=5))
    session.answered(answer(session_id=7))
    return session


def test_the_first_request_lists_everything_and_asks_for_a_session() -> None:
    session = FetchSession(node_id=1)
    request = session.request(full_request(ticks_0=10, ticks_1=20))
    assert isinstance(request, SessionFetchRequest)
    assert (request.session_id, request.epoch) == (0, 0)
    assert listed(request) == {("ticks", 0): 10, ("ticks", 1): 20}


def test_an_opened_session_holds_the_partitions_and_counts_epochs_from_one() -> None:
    session = opened_session()
    assert (session.session_id, session.epoch) == (7, 1)
    assert session.held == {("ticks", 0): (10, MAX_BYTES), ("ticks", 1): (20, MAX_BYTES),
                            ("candles", 0): (5, MAX_BYTES)}


def test_an_incremental_request_lists_only_moved_added_and_forgotten_partitions() -> None:
    session = opened_session()
    request = session.request(full_request(ticks_0=13, ticks_1=20, trades_2=0))
    assert isinstance(request, SessionFetchRequest)
    assert (request.session_id, request.epoch) == (7, 1)
    assert listed(request) == {("ticks", 0): 13, ("trades", 2): 0}
    assert request.forgotten == [("candles", [0])]
    session.answered(answer(session_id=7))
    assert session.epoch == 2
    assert session.held == {("ticks", 0): (13, MAX_BYTES), ("ticks", 1): (20, MAX_BYTES),
                            ("trades", 2): (0, MAX_BYTES)}


def test_nothing_moved_sends_an_empty_incremental_request() -> None:
    session = opened_session()
    request = session.request(full_request(ticks_0=10, ticks_1=20, candles_0=5))
    assert isinstance(request, SessionFetchRequest)
    assert request.topics == [] and request.forgotten == []


def test_the_request_struct_carries_the_session_fields() -> None:
    session = opened_session()
    struct = session.request(full_request(ticks_0=11, ticks_1=20)).build(FetchRequest_v11)
    assert (struct.session_id, struct.session_epoch) == (7, 1)
    assert struct.forgotten_topics_data == [("candles", [0])]
    assert struct.topics == [("ticks", [(0, -1, 11, -1, MAX_BYTES)])]
    decoded = FetchRequest_v11.decode(struct.encode())
    assert (decoded.session_id, decoded.session_epoch) == (7, 1)


def test_a_session_error_reopens_the_session_with_a_full_request() -> None:
    session = opened_session()
    session.request(full_request(ticks_0=11, ticks_1=20, candles_0=5))
    session.answered(answer(session_id=0, error_code=71))  # INVALID_FETCH_SESSION_EPOCH
    request = session.request(full_request(ticks_0=11, ticks_1=20, candles_0=5))
    assert isinstance(request, SessionFetchRequest)
    assert (request.session_id, request.epoch) == (7, 0)  # closes session 7 and opens a new one
    assert listed(request) == {("ticks", 0): 11, ("ticks", 1): 20, ("candles", 0): 5}
    session.answered(answer(session_id=9))
    assert (session.session_id, session.epoch) == (9, 1)


def test_a_request_without_an_answer_reopens_the_session() -> None:
    session = opened_session()
    session.request(full_request(ticks_0=12, ticks_1=20, candles_0=5))
    session.failed()
    assert session.held == {}
    request = session.request(full_request(ticks_0=12, ticks_1=20, candles_0=5))
    assert isinstance(request, SessionFetchRequest)
    assert request.epoch == 0 and len(listed(request)) == 3


def test_a_broker_without_a_free_session_slot_gets_full_requests() -> None:
    session = FetchSession(node_id=1)
    session.request(full_request(ticks_0=10))
    session.answered(answer(session_id=0))
    request = session.request(full_request(ticks_0=11))
    assert isinstance(request, SessionFetchRequest)
    assert (request.session_id, request.epoch) == (0, 0) and listed(request) == {("ticks", 0): 11}


def test_a_broker_below_fetch_v7_gets_the_fetchers_own_requests() -> None:
    session = FetchSession(node_id=1)
    first = session.request(full_request(ticks_0=10))
    assert first.build(FetchRequest_v4).topics == [("ticks", [(0, 10, MAX_BYTES)])]
    session.answered(answer(version=4))
    plain = full_request(ticks_0=11)
    assert session.request(plain) is plain


def test_the_epoch_wraps_to_one() -> None:
    session = opened_session()
    session.epoch = MAX_EPOCH
    session.request(full_request(ticks_0=10, ticks_1=20, candles_0=5))
    session.answered(answer(session_id=7))
    assert session.epoch == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_the_workers_consumer_thread_fetches_in_sessions_as_the_setting_says(tmp_path: Path, enabled: bool) -> None:
    thread = create_app(Settings(data_dir=tmp_path, worker={"fetch_sessions": enabled})).consumer._thread
    wrapped = thread.on_start.__qualname__.startswith(fetch_in_sessions_with_faust.__name__)
    assert wrapped is enabled
