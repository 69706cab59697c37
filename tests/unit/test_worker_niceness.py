"""The sinks worker lowers its CPU priority once, before its threads start, and never raises it."""

from __future__ import annotations

import os
import subprocess
import sys

REPORT = """
import os, threading
from tradepulse.commands.worker import yield_cores_to_trading
yield_cores_to_trading({target})
seen = []
thread = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
thread.start(); thread.join()
print(os.getpriority(os.PRIO_PROCESS, 0), seen[0])
"""


def niceness_after(target: int, start: int) -> tuple[int, int]:
    """(the calling thread's, a thread started afterwards') niceness in a process begun at `start`."""
    result = subprocess.run([sys.executable, "-c", REPORT.format(target=target)], capture_output=True, text=True,
                            check=True, preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, start))
    own, started = result.stdout.split()
    return int(own), int(started)


def test_the_process_and_its_later_threads_run_at_the_given_niceness() -> None:
    current = os.getpriority(os.PRIO_PROCESS, 0)
    target = min(19, current + 5)
    assert niceness_after(target, current) == (target, target)


def test_a_process_already_running_nicer_keeps_its_niceness() -> None:
    start = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 8)
    assert niceness_after(start - 3, start) == (start, start)
