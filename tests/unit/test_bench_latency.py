"""The paper bench's workload and its latency report: distinct strategies per symbol, and runs pooled by
`benchmarks.pool_latency` with the bar closes their tail rests on."""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from benchmarks import pool_latency
from benchmarks.bench_bar_step import machine_reference_ms
from benchmarks.bench_paper import MINUTE_MS, STRATEGIES, bar_closes, configuration_plan


def test_each_symbols_configurations_run_different_strategies() -> None:
    symbols = [f"SYM{i}/USDT" for i in range(10)]
    plan = configuration_plan(symbols, 50)
    by_symbol: dict[str, list[str]] = defaultdict(list)
    for symbol, strategy, _ in plan:
        by_symbol[symbol].append(strategy)
    assert set(by_symbol) == set(symbols)
    for strategies in by_symbol.values():
        assert sorted(strategies) == sorted(name for name, _ in STRATEGIES)


def fake_run(rng: random.Random, closes: int, rate: float = 10_000.0) -> dict[str, Any]:
    """A `bench_paper --samples` file's content: fills of `closes` bar closes, two instruments filling per close."""
    fills = [[rng.uniform(10, 60), 12.0, 0.0, 4.0, float(close * MINUTE_MS), float(place)]
             for close in range(closes) for place in (0, 7)]
    return {"rate": rate, "fills": fills, "signals": [rng.uniform(10, 90) for _ in range(100)],
            "hop_reference": [rng.uniform(1, 3) for _ in range(100)]}


def test_bar_closes_counts_the_closes_the_fills_came_from() -> None:
    run = fake_run(random.Random(1), closes=19)
    assert bar_closes(run["fills"]) == 19


def write_runs(directory: Path, runs: list[dict[str, Any]]) -> list[str]:
    paths = []
    for index, run in enumerate(runs):
        path = directory / f"run{index}.json"
        path.write_text(json.dumps(run))
        paths.append(str(path))
    return paths


def test_pooled_runs_report_every_fill_and_every_bar_close(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    files = write_runs(tmp_path, [fake_run(rng, closes=19) for _ in range(4)])
    monkeypatch.setattr(sys, "argv", ["pool_latency", *files])
    pool_latency.main()
    report = capsys.readouterr().out
    assert report.startswith("4 runs pooled")
    fill_line = next(line for line in report.splitlines() if line.startswith("tick-to-fill"))
    assert "over 152 fills from 76 bar closes" in fill_line
    assert "over 400 signals" in report


def test_pooled_runs_report_the_range_of_their_machine_references(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    runs = [fake_run(rng, closes=3) | {"bar_step_ms": step} for step in (0.512, 0.446, 0.471)]
    older = fake_run(rng, closes=3)  # written before the bench kept a machine reference
    monkeypatch.setattr(sys, "argv", ["pool_latency", *write_runs(tmp_path, [*runs, older])])
    pool_latency.main()
    machine_line = capsys.readouterr().out.splitlines()[-1]
    assert machine_line.startswith("machine reference")
    assert "0.446 to 0.512 ms a bar" in machine_line


def test_runs_without_a_machine_reference_print_none(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["pool_latency", *write_runs(tmp_path, [fake_run(random.Random(6), 3)])])
    pool_latency.main()
    assert "machine reference" not in capsys.readouterr().out


def test_machine_reference_times_a_bar_of_the_five_configurations() -> None:
    step = machine_reference_ms(bars=40, repeat=1)
    # in milliseconds, not seconds: a bar of five strategies takes 0.4-0.9 ms on the hosts seen, never 10 µs
    assert 0.01 < step < 100.0


def test_runs_fed_at_different_rates_are_not_pooled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(2)
    files = write_runs(tmp_path, [fake_run(rng, 5, rate=10_000.0), fake_run(rng, 5, rate=5_000.0)])
    monkeypatch.setattr(sys, "argv", ["pool_latency", *files])
    with pytest.raises(SystemExit):
        pool_latency.main()
