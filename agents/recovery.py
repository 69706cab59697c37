"""Table recovery that cannot wait forever for changelog records Faust fetched and dropped.

On a rebalance Faust seeks each active changelog partition to where its table needs to start, resumes the flow
and waits until every changelog record up to the partition's highwater has been applied. Around overlapping
rebalances it can drop records it has already fetched (the consumer generation changes while a fetched batch is
being handed out, or the flow is paused), and the consumer's position is then past them: nothing ever asks for
them again and recovery waits for them forever, logging "No event received for active tp … since recovery start"
while the worker processes nothing. The watchdog here notices a partition whose table still needs records the
consumer has already read past, while nothing arrives for `STALL_S`, and seeks it back to the first record the
table has not applied, the same seek Faust makes when recovery starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import faust
from faust.types import TP

logger = logging.getLogger(__name__)

STALL_S = 15.0
"""How long recovery may receive nothing for a partition it has read past what its table needs."""


@dataclass(frozen=True)
class ChangelogProgress:
    """What recovery knows of one active changelog partition (offsets are Kafka offsets, -1 for none)."""

    applied: int
    needed: int
    position: int | None
    quiet_since: float


def stalled_changelogs(progress: Mapping[TP, ChangelogProgress], now: float, stall_s: float = STALL_S) -> dict[TP, int]:
    """The partitions to seek back, with the offset to seek to: those whose table still needs records the
    consumer has already read past, with nothing received for `stall_s`."""
    return {
        tp: part.applied + 1
        for tp, part in progress.items()
        if part.needed > part.applied
        and part.position is not None
        and part.position > part.needed
        and now - part.quiet_since >= stall_s
    }


def register_recovery_watchdog(app: faust.App) -> None:
    """Seek back changelog partitions whose recovery stalled (see the module docstring).

    Faust starts `app.task`s only once the first recovery has completed, so the watchdog starts with the first
    partition assignment instead, before that recovery."""
    started: list[asyncio.Future[None]] = []

    @app.on_partitions_assigned.connect
    async def start_watchdog(sender: faust.App, assigned: object, **kwargs: object) -> None:
        if not started:
            started.append(app.add_future(_watch(app)))


async def _watch(app: faust.App) -> None:
    sought_at: dict[TP, float] = {}
    while True:
        await asyncio.sleep(STALL_S / 3)
        started = app.tables.recovery._recovery_started_at
        if not app.in_recovery or started is None:
            sought_at.clear()
            continue
        if not app.tables.changelog_queue.empty():
            continue
        progress = await _active_progress(app, started, sought_at)
        for tp, offset in stalled_changelogs(progress, time.monotonic()).items():
            logger.warning("%s[%d]: table recovery needs offsets up to %d, the consumer has read to %s but nothing "
                           "arrived; seeking back to %d", tp.topic, tp.partition, progress[tp].needed,
                           progress[tp].position, offset)
            sought_at[tp] = time.monotonic()
            try:
                await app.consumer.seek_wait({tp: offset})
            except Exception as exc:  # a rebalance or broker away: the next round looks again
                logger.warning("%s[%d]: seeking back failed, will retry: %r", tp.topic, tp.partition, exc)


async def _active_progress(app: faust.App, started: float,
                           sought_at: Mapping[TP, float]) -> dict[TP, ChangelogProgress]:
    recovery = app.tables.recovery
    received = recovery._active_events_received_at
    progress = {}
    for tp in list(recovery.active_tps):
        applied = recovery.active_offsets.get(tp)
        needed = recovery.active_highwaters.get(tp)
        if needed is None:
            continue
        try:
            position = await app.consumer.position(tp)
        except Exception as exc:  # not assigned any more: the next rebalance starts recovery afresh
            logger.debug("%s[%d]: no position: %r", tp.topic, tp.partition, exc)
            continue
        progress[tp] = ChangelogProgress(
            applied=-1 if applied is None else applied,
            needed=needed,
            position=position,
            quiet_since=max(started, received.get(tp, started), sought_at.get(tp, started)),
        )
    return progress
