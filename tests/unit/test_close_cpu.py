"""`benchmarks.close_cpu`: scheduler slices from `perf sched timehist`, summed per process over bar closes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import close_cpu
from benchmarks.close_cpu import Slice, cpu_in_windows, parse_timehist, process_names

TIMEHIST = """\
           time    cpu  task name                       wait time  sch delay   run time
                        [tid/pid]                          (msec)     (msec)     (msec)
--------------- ------  ------------------------------  ---------  ---------  ---------
      10.004000 [0001]  tradepulse[500]                     0.000      0.010      4.000
      10.006000 [0001]  <idle>                              0.000      0.000      2.000
      10.009000 [0000]  data-plane-kafk[701/700]            1.000      0.020      3.000
      10.010000 [0001]  tradepulse[520/500]                 0.000      0.000      4.000
      10.012000 [0000]  python[900]                         0.000      0.000      2.000
"""


def test_timehist_lines_become_wall_clock_slices_without_idle_time() -> None:
    slices = parse_timehist(TIMEHIST.splitlines(), monotonic_offset_ms=1_000.0)
    assert slices == [
        Slice(11_000.0, 11_004.0, 1, "tradepulse", 500, 500),
        Slice(11_006.0, 11_009.0, 0, "data-plane-kafk", 701, 700),
        Slice(11_006.0, 11_010.0, 1, "tradepulse", 520, 500),
        Slice(11_010.0, 11_012.0, 0, "python", 900, 900),
    ]


def test_processes_are_named_by_the_bench_or_by_a_thread_of_theirs() -> None:
    slices = parse_timehist(TIMEHIST.splitlines(), 0.0)
    assert process_names(slices, {"bench": 900}) == {500: "tradepulse[500]", 700: "data-plane-kafk[700]",
                                                     900: "bench"}


def test_cpu_is_counted_inside_the_windows_only_and_the_event_loop_apart() -> None:
    slices = parse_timehist(TIMEHIST.splitlines(), 0.0)
    names = process_names(slices, {"trading worker": 500})
    spent = cpu_in_windows(slices, [(10_002.0, 10_008.0), (10_011.0, 10_020.0)], names, loop_pid=500)
    assert spent == pytest.approx({
        (1, "trading worker (event loop)"): 2.0,
        (0, "data-plane-kafk[700]"): 2.0,
        (1, "trading worker (other threads)"): 2.0,
        (0, "python[900]"): 1.0,
    })


def test_samples_without_close_windows_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    timehist, samples = tmp_path / "timehist.txt", tmp_path / "run.json"
    timehist.write_text(TIMEHIST)
    samples.write_text(json.dumps({"rate": 10_000.0, "fills": [], "signals": [], "hop_reference": []}))
    monkeypatch.setattr(sys, "argv", ["close_cpu", str(timehist), str(samples)])
    with pytest.raises(SystemExit):
        close_cpu.main()
    assert "holds no bar-close windows" in capsys.readouterr().err
