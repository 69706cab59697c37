"""Incremental fetch sessions (KIP-227) for aiokafka's consumer, which sends every fetch in full.

Without a session each fetch request lists every partition the consumer is assigned, and each response answers
for each of them, records or not; aiokafka encodes and decodes both in Python. A trading worker reads 42
partitions of which a handful carry ticks, and fetches about 250 times a second, so most of its consumer thread
went to partitions with nothing new. In a session the broker remembers the partitions and their fetch offsets:
a request lists only the partitions whose offset changed (and those added or forgotten), and the response only
the partitions with something new. The records, offsets and errors a consumer sees are the same.

`FetchSession` is the protocol's bookkeeping for one broker; `SessionClient` applies it to the fetch requests a
consumer's fetcher sends, and `fetch_in_sessions` installs it in an aiokafka consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest, FetchRequestStruct

logger = logging.getLogger(__name__)

NO_SESSION = 0
CREATE_EPOCH = 0
"""A full request at epoch 0 asks the broker for a new session (and closes the one it names, if any)."""
SESSION_VERSION = 7
"""The first FetchRequest version with session fields."""
MAX_EPOCH = 2**31 - 1

Partition = tuple[str, int]
Wanted = dict[Partition, tuple[int, int]]
"""Partition → (fetch offset, partition max bytes)."""


class SessionFetchRequest(FetchRequest):
    """A FetchRequest carrying a session's id, epoch and forgotten partitions; `topics` lists only what the
    broker must be told."""

    def __init__(
        self,
        full: FetchRequest,
        topics: list[tuple[str, list[tuple[int, int, int]]]],
        session_id: int,
        epoch: int,
        forgotten: list[tuple[str, list[int]]],
    ) -> None:
        super().__init__(full._max_wait_ms, full._min_bytes, full._max_bytes, full._isolation_level, topics,
                         rack_id=full._rack_id)
        self.session_id, self.epoch, self.forgotten = session_id, epoch, forgotten

    def build(self, request_struct_class: type[FetchRequestStruct]) -> FetchRequestStruct:
        struct = super().build(request_struct_class)
        if request_struct_class.API_VERSION >= SESSION_VERSION:
            struct.session_id = self.session_id  # type: ignore[union-attr]
            struct.session_epoch = self.epoch  # type: ignore[union-attr]
            struct.forgotten_topics_data = self.forgotten  # type: ignore[union-attr]
        return struct


@dataclass
class FetchSession:
    """What one broker holds of this consumer's session: its id, the epoch the next request carries, and the
    partitions with the offsets it fetches them from.

    The broker applies a request's changes when it answers without a session error, so `held` changes only then.
    Any failure (a session error, no answer, a cancelled request whose fate is unknown) makes the next request a
    full one that closes the session and opens a new one, as the Java consumer does.
    """

    node_id: int
    session_id: int = NO_SESSION
    epoch: int = CREATE_EPOCH
    held: Wanted = field(default_factory=dict)
    supported: bool = True
    sent: Wanted | None = None

    def request(self, full: FetchRequest) -> FetchRequest:
        """The request to send in place of `full`, which lists every partition the fetcher wants now."""
        if not self.supported:
            return full
        wanted = {(topic, partition): (offset, max_bytes)
                  for topic, partitions in full.topics for partition, offset, max_bytes in partitions}
        self.sent = wanted
        if self.epoch == CREATE_EPOCH:
            return SessionFetchRequest(full, full.topics, self.session_id, CREATE_EPOCH, [])
        changed = [(topic, partition, *wanted[topic, partition])
                   for topic, partition in wanted if self.held.get((topic, partition)) != wanted[topic, partition]]
        forgotten = [key for key in self.held if key not in wanted]
        return SessionFetchRequest(full, by_topic(changed), self.session_id, self.epoch, by_topic(forgotten))

    def answered(self, response: Any) -> None:
        """Take the broker's answer to the last request: the session it opened or went on with, or an error."""
        wanted, self.sent = self.sent or {}, None
        if not self.supported:
            return
        if response.API_VERSION < SESSION_VERSION:
            logger.info("broker %d answers fetches below v%d: no fetch sessions", self.node_id, SESSION_VERSION)
            self.supported = False
            return
        if response.error_code:
            logger.info("fetch session %d with broker %d ended by error code %d; opening a new one",
                        self.session_id, self.node_id, response.error_code)
            self.reopen()
            return
        if self.epoch == CREATE_EPOCH:
            self.session_id = response.session_id
            if self.session_id == NO_SESSION:
                return
            logger.debug("fetch session %d opened with broker %d", self.session_id, self.node_id)
        self.held = wanted
        self.epoch = 1 if self.epoch >= MAX_EPOCH else self.epoch + 1

    def failed(self) -> None:
        """The last request got no answer: whether the broker applied it is unknown."""
        self.sent = None
        self.reopen()

    def reopen(self) -> None:
        self.epoch, self.held = CREATE_EPOCH, {}


def by_topic(entries: Iterable[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
    """(topic, partition, *rest) entries grouped as the protocol lists them: per topic, the partitions' rest
    after their number, or the bare numbers when there is no rest."""
    grouped: dict[str, list[Any]] = {}
    for topic, partition, *rest in entries:
        grouped.setdefault(topic, []).append((partition, *rest) if rest else partition)
    return list(grouped.items())


class SessionClient:
    """The consumer's client as its fetcher sees it: fetch requests go in sessions, one per broker, everything
    else through unchanged. aiokafka's fetcher keeps at most one fetch in flight per broker, so each session's
    requests go one after the other. The cluster's metadata, which the fetcher looks up for every partition at
    every fetch, is the client's own object (never replaced), held here to spare those lookups the delegation."""

    def __init__(self, client: AIOKafkaClient) -> None:
        self._client = client
        self.cluster = client.cluster
        self._sessions: dict[int, FetchSession] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, FetchRequest):
            return await self._client.send(node_id, request, **kwargs)
        session = self._sessions.setdefault(node_id, FetchSession(node_id))
        try:
            response = await self._client.send(node_id, session.request(request), **kwargs)
        except BaseException:
            session.failed()
            raise
        session.answered(response)
        return response


def fetch_in_sessions(consumer: AIOKafkaConsumer) -> None:
    """Make a started consumer's fetcher fetch in sessions from its next request on."""
    fetcher = consumer._fetcher
    if fetcher is None:
        raise RuntimeError("the consumer must be started first")
    if not isinstance(fetcher._client, SessionClient):
        fetcher._client = SessionClient(fetcher._client)
