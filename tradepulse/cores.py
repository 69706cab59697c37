"""A CPU core of its own for a trading worker's threads.

A worker runs two busy threads: the event loop, where the agents work, and Faust's consumer thread, which fetches.
They share one interpreter lock, so they never run Python at the same time anyway; spread over two cores, each
hand-over of the lock wakes the other thread on another core, and the scheduler moves both between cores as the
broker, PostgreSQL and the sinks worker come and go. On one core of their own the lock changes hands without a
cross-core wake-up, and at a bar close, when every process wants a core at once, the trading worker keeps one. In
alternating runs of `python -m benchmarks.bench_paper` on a two-core machine the tick-to-fill p99 was lower with
the trading worker on one core in every pair (docs/paper-trading.md).

Each worker claims a core by an exclusive lock on a file named after it (the highest free core first: the first
cores tend to take the machine's interrupts). The lock lives as long as the process, even one killed by SIGKILL,
so workers on one machine never share a claimed core, and a worker that finds every core claimed runs unpinned.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

CLAIMS_DIR = Path(tempfile.gettempdir()) / "tradepulse-cores"
"""Where the claims are: one directory per machine, whichever project or user started the worker."""


@dataclass
class CoreClaim:
    """The core this process runs on alone, held while `lock` stays open."""

    core: int
    lock: IO[str]


def claim_core(claims_dir: Path = CLAIMS_DIR) -> CoreClaim | None:
    """Pin this process to the highest core it may run on that no other live process has claimed; None (and the
    process left as it was) when it may run on one core only, every core is claimed, or the system cannot pin.

    Call it before the process starts any thread: threads inherit their creator's affinity."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0), reverse=True)
    if len(cores) < 2:
        return None
    try:
        claims_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("no core claimed: cannot create %s: %s", claims_dir, exc)
        return None
    for core in cores:
        lock = (claims_dir / f"cpu{core}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another live process holds this core
            lock.close()
            continue
        os.sched_setaffinity(0, {core})
        return CoreClaim(core, lock)
    return None
