"""Progress of long training jobs: a rich progress bar in the terminal and `training.progress` events for the
dashboard.

Training code is synchronous (optuna calls the objective in the caller's thread), so events go through a queue to
a background thread that owns an asyncio loop and a Kafka producer. Events are throttled per stage (the last one
of a stage always goes out) and publishing is best effort: an unreachable broker costs a warning, never the job.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from streams.keys import stable_id
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.5


class ProgressSink(Protocol):
    def update(self, job_id: str, stage: str, done: int, total: int, message: str) -> None: ...


class KafkaProgress:
    """Publishes `TrainingProgress` records from any thread; close() waits for the last ones."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._queue: queue.Queue[tuple[str, str, int, int, str] | None] = queue.Queue()
        self._last: dict[tuple[str, str], float] = {}
        self._thread = threading.Thread(target=self._run, name="training-progress", daemon=True)
        self._thread.start()

    def update(self, job_id: str, stage: str, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        key = (job_id, stage)
        if done < total and now - self._last.get(key, 0.0) < MIN_INTERVAL_S:
            return
        self._last[key] = now
        self._queue.put((job_id, stage, done, total, message))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        asyncio.run(self._publish())

    async def _publish(self) -> None:
        from streams.producer import LogProducer
        from streams.records import SCHEMA_VERSION, TrainingProgress
        from streams.topics import TRAINING_PROGRESS

        loop = asyncio.get_running_loop()
        try:
            producer = await LogProducer(self._settings).__aenter__()
        except Exception as exc:  # progress is for the dashboard; the job goes on without it
            logger.warning("training progress will not be published: Kafka at %s is not usable (%s)",
                           self._settings.kafka.bootstrap_servers, exc)
            producer = None
        try:
            while (item := await loop.run_in_executor(None, self._queue.get)) is not None:
                if producer is None:
                    continue
                job_id, stage, done, total, message = item
                event = TrainingProgress(
                    event_id=stable_id("training-progress", job_id, stage, done, total), ts=int(time.time() * 1000),
                    schema_version=SCHEMA_VERSION, job_id=job_id, stage=stage, done=done, total=total,
                    message=message,
                )
                await producer.send(TRAINING_PROGRESS, job_id, event)
        finally:
            if producer is not None:
                await producer.__aexit__(None, None, None)


class Reporter:
    """One object the training code reports to; it fans out to the terminal bar and the event sinks."""

    def __init__(self, job_id: str, *, console: Console | None = None, sinks: list[ProgressSink] | None = None) -> None:
        self.job_id = job_id
        self._sinks = sinks or []
        self._bar = (
            Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     TimeRemainingColumn(), TextColumn("{task.fields[note]}"), console=console, transient=False)
            if console is not None else None
        )

    def __enter__(self) -> Reporter:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    @contextmanager
    def stage(self, stage: str, total: int, description: str) -> Iterator[StageProgress]:
        task = self._bar.add_task(description, total=total, note="") if self._bar is not None else None
        progress = StageProgress(self, stage, total, task)
        progress.advance(0)
        yield progress

    def _emit(self, stage: str, done: int, total: int, message: str, task: int | None) -> None:
        if self._bar is not None and task is not None:
            self._bar.update(task, completed=done, note=message)  # type: ignore[arg-type]
        for sink in self._sinks:
            sink.update(self.job_id, stage, done, total, message)


class StageProgress:
    def __init__(self, reporter: Reporter, stage: str, total: int, task: int | None) -> None:
        self._reporter = reporter
        self.stage = stage
        self.total = total
        self.done = 0
        self._task = task

    def advance(self, count: int = 1, message: str = "") -> None:
        self.done = min(self.total, self.done + count)
        self._reporter._emit(self.stage, self.done, self.total, message, self._task)
