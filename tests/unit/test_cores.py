"""Core claims, in child processes (a claim pins the process that makes it): distinct cores while the claimants
live, none once every core is claimed, and a core free again once its claimant is killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLAIMANT = """
import json, os, sys
from pathlib import Path
from tradepulse.cores import claim_core
os.sched_setaffinity(0, set(json.loads(sys.argv[2])))
claim = claim_core(Path(sys.argv[1]))
print(json.dumps({"core": claim.core if claim else None, "affinity": sorted(os.sched_getaffinity(0))}), flush=True)
sys.stdin.readline()
"""

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                                reason="needs a system that pins processes to cores, with two cores at least")


class Claimant:
    """A child process that claims a core among `cores` and holds it until it ends."""

    def __init__(self, claims_dir: Path, cores: list[int]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CLAIMANT, str(claims_dir), json.dumps(cores)], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the claimant ended without an answer (exit {self.process.wait(timeout=10)})"
        answer = json.loads(line)
        self.core: int | None = answer["core"]
        self.affinity: list[int] = answer["affinity"]

    def end(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def two_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))[:2]


@pytest.fixture
def claimants() -> Iterator[list[Claimant]]:
    started: list[Claimant] = []
    yield started
    for claimant in started:
        if claimant.process.poll() is None:
            claimant.kill()


def test_live_workers_get_distinct_cores_highest_first_and_the_next_runs_unpinned(
        tmp_path: Path, two_cores: list[int], claimants: list[Claimant]) -> None:
    low, high = two_cores
    claims = tmp_path / "claims"
    first = Claimant(claims, two_cores)
    claimants.append(first)
    assert (first.core, first.affinity) == (high, [high])
    assert claims.stat().st_mode & 0o7777 == 0o1777, "every user can claim, none can take another's claim away"
    second = Claimant(claims, two_cores)
    claimants.append(second)
    assert (second.core, second.affinity) == (low, [low])
    third = Claimant(claims, two_cores)
    claimants.append(third)
    assert (third.core, third.affinity) == (None, two_cores)


def test_a_killed_workers_core_is_free_again_and_an_ended_ones_too(
        tmp_path: Path, two_cores: list[int], claimants: list[Claimant]) -> None:
    killed = Claimant(tmp_path, two_cores)
    claimants.append(killed)
    killed.kill()
    after_kill = Claimant(tmp_path, two_cores)
    claimants.append(after_kill)
    assert after_kill.core == killed.core == two_cores[1]
    after_kill.end()
    after_end = Claimant(tmp_path, two_cores)
    claimants.append(after_end)
    assert after_end.core == two_cores[1]


def test_a_process_allowed_one_core_claims_nothing(tmp_path: Path, two_cores: list[int],
                                                   claimants: list[Claimant]) -> None:
    alone = Claimant(tmp_path, two_cores[:1])
    claimants.append(alone)
    assert (alone.core, alone.affinity) == (None, two_cores[:1])
    assert not list(tmp_path.iterdir())
