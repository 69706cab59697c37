"""Counters of one worker process, shared by its agents and written by the heartbeat.

They describe this process since it started (they are not state of the stream and are not restored after a
restart), so they live in a plain object handed to the agents of one worker, not in a Table.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class WorkerStats:
    """What one worker did: messages and ticks in, candles out, dead letters by reason code, rows written."""

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    messages: int = 0
    ticks: int = 0
    redelivered_batches: int = 0
    candles: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    sink_rows: Counter[str] = field(default_factory=Counter)
    paper: Counter[str] = field(default_factory=Counter)
    """Messages each paper-trading stage processed."""
    running: bool = True

    @classmethod
    def for_this_process(cls, app_id: str) -> WorkerStats:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{app_id}@{host}:{pid}", host, pid, datetime.now(UTC))

    def snapshot(self) -> dict[str, Any]:
        """The JSON written to worker_heartbeats.stats."""
        return {
            "running": self.running,
            "messages": self.messages,
            "ticks": self.ticks,
            "redelivered_batches": self.redelivered_batches,
            "candles": dict(self.candles),
            "dead_letters": dict(self.dead_letters),
            "sink_rows": dict(self.sink_rows),
            "paper": dict(self.paper),
        }
