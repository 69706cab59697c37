"""The Faust application factory: one place that turns `Settings` into a configured `faust.App`."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import types
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any

import faust
import uvloop
from aiokafka import TopicPartition
from faust.types import TP
from mode import Service
from mode.services import WaitResults

from streams.fetch_sessions import fetch_in_sessions
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    """A Faust app for the worker described by `settings`; agents are registered on it separately.

    Values stay raw bytes so every agent decodes with `streams.codecs` and can dead-letter what does not decode,
    instead of Faust's deserialiser failing inside the stream. Tables live in memory and are rebuilt from their
    changelog topics on start. Faust's web server (stats pages) listens on 127.0.0.1:`worker.web_port`, or not at
    all when that is 0. Session and rebalance timeouts are short because workers run on one machine or a
    LAN: a restarted worker rejoins in seconds rather than Faust's default minute.

    A stop or rebalance commits what is acknowledged without first waiting for every fetched message to be
    acknowledged (`stream_wait_empty`): agents acknowledge a batch only once it is handled (`agents.batches`), so
    the committed offsets are safe either way, and the wait can last forever when a fetched message was dropped
    from the stream buffers (a rebalance clears them) and will never be acknowledged.
    """
    worker = settings.worker
    session_timeout = worker.session_timeout_s
    datadir = settings.data_dir / "faust" / worker.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    web: dict[str, object] = (
        {"web_enabled": True, "web_port": worker.web_port, "web_bind": "127.0.0.1", "web_host": "127.0.0.1"}
        if worker.web_port > 0
        else {"web_enabled": False}
    )
    app = faust.App(
        worker.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")],
        datadir=str(datadir),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 5),
        broker_rebalance_timeout=session_timeout,
        broker_commit_interval=1.0,
        stream_recovery_delay=0.0,
        stream_wait_empty=False,
        producer_acks=-1,
        **web,
    )
    pause_fetching_with_faust(app)
    deliver_without_tasks(app)
    if worker.fetch_sessions:
        fetch_in_sessions_with_faust(app)
    return app


GC_THRESHOLDS = (20_000, 20, 20)
"""Young-generation collections after 20,000 allocations instead of 700: each then finds the short-lived records
and states of many batches already freed by reference counting, at a fraction of the collections."""


def spare_long_lived_objects_from_gc(app: faust.App) -> None:
    """Keep what a worker holds for good out of the collector's full passes.

    A worker keeps hundreds of thousands of objects for its whole life: the modules it imported, and its tables,
    rebuilt from the changelogs after each rebalance. A full collection walks all of them, 100-130 ms on one core
    here, three times in a few minutes, each time stalling every stage. They are collected once, then frozen
    (`gc.freeze`: exempt from collection) once the agents are declared (and the views caught up) and after each
    rebalance; what they later let go of is still freed by reference counting, and what is created since is
    collected as before.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    freeze_survivors()

    @app.on_rebalance_complete.connect
    async def freeze_recovered_tables(sender: faust.App, **kwargs: object) -> None:
        freeze_survivors()


def freeze_survivors() -> None:
    gc.collect()
    gc.freeze()
    logger.info("%d long-lived objects exempted from garbage collection", gc.get_freeze_count())


def use_event_loop(settings: Settings) -> None:
    """Run every event loop the worker creates from here on (its own, Faust's consumer thread's) on uvloop, unless
    `worker.event_loop` says asyncio. uvloop runs the loops' machinery (callbacks, socket reads and writes, the
    wake-ups between the two threads) in C; in alternating bench runs it lowered the tick-to-fill p99."""
    if settings.worker.event_loop == "uvloop":
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def switch_threads_sooner(settings: Settings) -> None:
    """Let Faust's consumer thread take the interpreter lock sooner while an agent works.

    Faust runs its aiokafka consumer in a thread of its own, beside the event loop's thread where the agents work.
    Each step of taking a fetch response and handing its records over needs the interpreter lock, and while an
    agent works a bar close the consumer thread waits for it up to the switch interval at every step: 5 ms by
    default. At 0.5 ms the bench's ticks→candle p99 was 25-32 ms against 26-40 ms, with no loss of ticks/s
    (docs/paper-trading.md).
    """
    sys.setswitchinterval(settings.worker.thread_switch_interval_s)


def pause_fetching_with_faust(app: faust.App) -> None:
    """Make Faust's partition pauses stop the fetcher too, not only the hand-out of what it fetched.

    Faust pauses a partition by leaving it out of the set it asks the fetcher for; aiokafka keeps fetching it.
    After recovery that is every changelog partition of the worker's own tables, which the agents write to at
    every batch: each fetch brings back records nobody takes, and while fetched records wait, aiokafka sends the
    broker no fetch for any partition for up to `prefetch_backoff` (100 ms). Ticks and candles waited behind them.
    Mirroring the pauses (and the resumes, so recovery still reads the changelogs) into the aiokafka consumer, on
    its own thread and in the order Faust made them, keeps those partitions out of the fetch requests. Faust's
    livelock check then skips the paused partitions: no fetch for them is expected, and it would log an error for
    each, every few seconds.
    """
    consumer = app.consumer
    faust_pause, faust_resume = consumer.pause_partitions, consumer.resume_partitions

    def mirror(action: str, tps: set[TP]) -> None:
        thread = consumer._thread  # type: ignore[attr-defined]
        fetching = thread._consumer
        if fetching is None:
            return
        wanted = {TopicPartition(tp.topic, tp.partition) for tp in tps}

        def apply() -> None:
            assigned = fetching.assignment()
            getattr(fetching, action)(*(tp for tp in wanted if tp in assigned))

        thread.thread_loop.call_soon_threadsafe(apply)

    def pause_partitions(tps: Iterable[TP]) -> None:
        chosen = set(tps)
        faust_pause(chosen)
        mirror("pause", chosen)

    def resume_partitions(tps: Iterable[TP]) -> None:
        chosen = set(tps)
        faust_resume(chosen)
        mirror("resume", chosen)

    faust_verify = consumer.verify_event_path

    def verify_event_path(now: float, tp: TP) -> None:
        if tp not in consumer._paused_partitions:  # type: ignore[attr-defined]
            faust_verify(now, tp)

    consumer.pause_partitions = pause_partitions  # type: ignore[method-assign]
    consumer.resume_partitions = resume_partitions  # type: ignore[method-assign]
    consumer.verify_event_path = verify_event_path  # type: ignore[method-assign]


def fetch_in_sessions_with_faust(app: faust.App) -> None:
    """Have the aiokafka consumer in Faust's consumer thread fetch in incremental sessions once it has started
    (`streams.fetch_sessions`): a trading worker reads 42 partitions, a handful of which carry ticks."""
    thread = app.consumer._thread  # type: ignore[attr-defined]
    faust_on_start = thread.on_start

    async def on_start() -> None:
        await faust_on_start()
        fetch_in_sessions(thread._consumer)

    thread.on_start = on_start


def deliver_without_tasks(app: faust.App) -> None:
    """Hand each fetched message to its streams at once when nothing makes it wait.

    Faust's consumer delivers every fetched message by racing the delivery against a suspension of the flow
    (`wait_first`): four tasks and at least two turns of the event loop per message, and while an agent works a
    bar close each turn waits for the agent's next await. A closing tick a few places down a fetch response
    reached trade_paper only after several of those turns. The delivery almost never waits (it puts the message
    in a stream buffer with room), so it now runs at once, in the consumer's own task; one that does wait (a
    full buffer, a paused flow) goes on in Faust's race from where it stopped, and a suspension still cuts it
    short.
    """
    app.consumer.wait_first = first_without_tasks(app.consumer)  # type: ignore[method-assign]


def first_without_tasks(service: Service) -> Callable[..., Awaitable[WaitResults]]:
    """`service.wait_first` that first runs its first awaitable, if a coroutine, up to where it would wait: one
    that finishes there wins without a task or a turn of the event loop, and the others are never started (as if
    they had lost the race). One that waits, or a service that is stopping, goes through the race unchanged."""
    race = service.wait_first

    async def wait_first(*awaitables: Any, timeout: float | None = None) -> WaitResults:
        first, others = awaitables[0], awaitables[1:]
        if not asyncio.iscoroutine(first) or service.should_stop:
            return await race(*awaitables, timeout=timeout)
        try:
            waits_on = first.send(None)
        except StopIteration as finished:
            _close(others)
            return WaitResults([first], [finished.value], False)
        except BaseException:
            _close(others)
            raise
        return await race(_going_on(first, waits_on), *others, timeout=timeout)

    return wait_first


async def _going_on(coroutine: Any, waits_on: Any) -> Any:
    """`_resumed` as a native coroutine, which Faust's race takes."""
    return await _resumed(coroutine, waits_on)


@types.coroutine
def _resumed(coroutine: Any, waits_on: Any) -> Generator[Any, Any, Any]:
    """Go on with `coroutine`, which was run by hand until it yielded `waits_on`: the task running this waits for
    `waits_on` as it would have for the coroutine, then the coroutine resumes. What is thrown in here (a
    cancellation) is thrown into the coroutine."""
    try:
        yield waits_on
    except BaseException as thrown:
        try:
            waits_on = coroutine.throw(thrown)
        except StopIteration as finished:
            return finished.value
        return (yield from _resumed(coroutine, waits_on))
    return (yield from coroutine)


def _close(awaitables: tuple[Any, ...]) -> None:
    """Close the coroutines among `awaitables` that will never run (no "never awaited" warning)."""
    for awaitable in awaitables:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
