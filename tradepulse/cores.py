"""A CPU core of its own for a trading worker's threads.

A worker runs two busy threads: the event loop, where the agents work, and Faust's consumer thread, which fetches.
They share one interpreter lock, so they never run Python at the same time anyway; spread over two cores, a
hand-over of the lock can wake the other thread on another core, and the scheduler moves both between cores as the
broker, PostgreSQL and the sinks worker come and go. On one core of their own neither happens (the reason
inferred; the runs measured the effect). In alternating runs of `python -m benchmarks.bench_paper` on a
two-core machine the tick-to-fill p99 was lower with the trading worker on one core in eight pairs of nine
(docs/paper-trading.md).

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

logger = logging.getLogger(__name__)

CLAIMS_DIR = Path(tempfile.gettempdir()) / "tradepulse-cores"
"""Where the claims are: one directory per machine, whichever project or user started the worker."""


@dataclass
class CoreClaim:
    """The core this process runs on alone, held while the file descriptor `lock` stays open."""

    core: int
    lock: int


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
        _shared_directory(claims_dir)
    except OSError as exc:
        logger.warning("no core claimed: cannot create %s: %s", claims_dir, exc)
        return None
    for core in cores:
        try:  # read-only: a lock file another user created can be locked all the same
            lock = os.open(claims_dir / f"cpu{core}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            logger.warning("core %d not claimed: %s", core, exc)
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another live process holds this core
            os.close(lock)
            continue
        try:
            os.sched_setaffinity(0, {core})
        except OSError as exc:
            os.close(lock)
            logger.warning("core %d not claimed: cannot pin to it: %s", core, exc)
            return None
        return CoreClaim(core, lock)
    return None


def _shared_directory(path: Path) -> None:
    """Make `path` if missing, so that any user can add a lock file to it and none can remove another's (as /tmp);
    one that exists, made by whichever worker came first, is left as it is."""
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        return
    path.chmod(0o1777)
