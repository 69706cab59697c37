"""A worker's event loops, its own and those its threads create (Faust's consumer thread), are uvloop's unless the
settings ask for asyncio's."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from tradepulse.settings import Settings

REPORT = """
import asyncio, threading
from streams.app import use_event_loop
from tradepulse.settings import Settings
use_event_loop(Settings(worker={{"event_loop": "{choice}"}}))
seen = []
thread = threading.Thread(target=lambda: seen.append(type(asyncio.new_event_loop()).__module__))
thread.start(); thread.join()
print(type(asyncio.new_event_loop()).__module__, seen[0])
"""


def loop_modules(choice: str) -> list[str]:
    """The modules of the loop classes a fresh process gets, on its main thread and on a thread it starts."""
    result = subprocess.run([sys.executable, "-c", REPORT.format(choice=choice)], capture_output=True, text=True,
                            check=True)
    return result.stdout.split()


def test_uvloop_runs_every_loop_of_the_worker() -> None:
    assert loop_modules("uvloop") == ["uvloop", "uvloop"]


def test_asyncio_can_be_chosen_instead() -> None:
    assert loop_modules("asyncio") == ["asyncio.unix_events", "asyncio.unix_events"]


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValidationError, match="event_loop"):
        Settings(worker={"event_loop": "gevent"})
