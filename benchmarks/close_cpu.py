"""Where the machine's cores go while bar closes are worked: a scheduler trace taken beside a `bench_paper` run,
summed over the run's bar closes.

    perf record -k CLOCK_MONOTONIC -e sched:sched_switch -e sched:sched_wakeup -a -o sched.data -- sleep 150 &
    python -m benchmarks.bench_paper --samples run.json
    perf sched timehist -i sched.data > timehist.txt
    python -m benchmarks.close_cpu timehist.txt run.json

A bar close's window runs from the moment the feed sent its first closing message to the moment the bench received
its last signal or fill (`bench_paper.CloseWindows`). Every slice of CPU time the trace shows inside a window is
counted for its process (the trading worker's event loop thread apart from its other threads), as a share of one
core over all windows together, and per CPU. The trading worker holds one core of its own (`worker.own_core`);
whatever else runs on that core, and how full the other one is, is what a close's queue waits for.
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

TIMEHIST_LINE = re.compile(
    r"\s*(?P<time>\d+\.\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<task>.*?)\[(?P<tid>\d+)(?:/(?P<pid>\d+))?\]"
    r"\s+[\d.]+\s+[\d.]+\s+(?P<run>[\d.]+)")
IDLE = "<idle>"


@dataclass(frozen=True)
class Slice:
    """A thread's time on a CPU, in wall-clock milliseconds."""

    start_ms: float
    end_ms: float
    cpu: int
    task: str
    tid: int
    pid: int


def parse_timehist(lines: Iterable[str], monotonic_offset_ms: float) -> list[Slice]:
    """The run slices of `perf sched timehist` output (each line ends a slice: its time, CPU, task and run time),
    moved from the trace's monotonic clock to the wall clock by `monotonic_offset_ms`; idle time is left out."""
    slices = []
    for line in lines:
        match = TIMEHIST_LINE.match(line)
        if match is None or match["task"].strip() == IDLE:
            continue
        end = float(match["time"]) * 1000 + monotonic_offset_ms
        tid = int(match["tid"])
        slices.append(Slice(end - float(match["run"]), end, int(match["cpu"]), match["task"].strip(), tid,
                            int(match["pid"] or tid)))
    return sorted(slices, key=lambda piece: piece.start_ms)


def process_names(slices: Iterable[Slice], known: dict[str, int]) -> dict[int, str]:
    """A name for each process of the trace: the bench's own label where given, else its main thread's name, else
    the name of a thread of it."""
    names: dict[int, str] = {}
    for piece in slices:
        if piece.tid == piece.pid or piece.pid not in names:
            names[piece.pid] = f"{piece.task}[{piece.pid}]"
    for label, pid in known.items():
        names[pid] = label
    return names


def cpu_in_windows(slices: Sequence[Slice], windows: Sequence[tuple[float, float]],
                   label: dict[int, str], loop_pid: int | None) -> dict[tuple[int, str], float]:
    """Milliseconds of CPU per (CPU, process label) inside the windows, `label` naming every process of `slices`
    (`process_names`); the thread whose id is `loop_pid` (the trading worker's event loop) is counted apart from
    the rest of its process."""
    starts = [piece.start_ms for piece in slices]
    longest = max((piece.end_ms - piece.start_ms for piece in slices), default=0.0)
    spent: dict[tuple[int, str], float] = defaultdict(float)
    for begin, end in windows:
        for piece in slices[bisect.bisect_left(starts, begin - longest):]:
            if piece.start_ms >= end:
                break
            overlap = min(piece.end_ms, end) - max(piece.start_ms, begin)
            if overlap <= 0:
                continue
            name = label[piece.pid]
            if piece.pid == loop_pid:
                name += " (event loop)" if piece.tid == loop_pid else " (other threads)"
            spent[(piece.cpu, name)] += overlap
    return spent


def report(spent: dict[tuple[int, str], float], windows: Sequence[tuple[float, float]], top: int = 8) -> None:
    total = sum(end - begin for begin, end in windows)
    by_process: dict[str, float] = defaultdict(float)
    by_cpu: dict[int, dict[str, float]] = defaultdict(dict)
    for (cpu, name), ms in spent.items():
        by_process[name] += ms
        by_cpu[cpu][name] = ms
    print(f"{len(windows)} bar closes, {statistics.median(end - begin for begin, end in windows):.0f} ms each at "
          f"the median; the cores were busy {sum(spent.values()) / total * 100:.0f}% of one core over them")
    for name, ms in sorted(by_process.items(), key=lambda item: -item[1])[:top]:
        print(f"  {name:<40} {ms / total * 100:5.1f}% of a core ({ms / len(windows):5.1f} ms a close)")
    for cpu, names in sorted(by_cpu.items()):
        shares = sorted(names.items(), key=lambda item: -item[1])[:4]
        print(f"  cpu {cpu}: busy {sum(names.values()) / total * 100:3.0f}%: "
              + ", ".join(f"{name} {ms / total * 100:.0f}%" for name, ms in shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("timehist", type=Path, help="`perf sched timehist` output of a trace taken with "
                                                    "-k CLOCK_MONOTONIC during the run")
    parser.add_argument("samples", type=Path, help="the run's file written by bench_paper --samples")
    args = parser.parse_args()
    run = json.loads(args.samples.read_text())
    if "close_windows" not in run:
        parser.error(f"{args.samples} holds no bar-close windows: it was written by an older bench_paper")
    with args.timehist.open() as lines:
        slices = parse_timehist(lines, run["monotonic_offset_ms"])
    if not slices:
        parser.error(f"{args.timehist} holds no scheduler slices")
    traced = [(begin, end) for begin, end in run["close_windows"]
              if begin >= slices[0].start_ms and end <= slices[-1].end_ms]
    if not traced:
        parser.error("the trace covers none of the run's bar closes: start perf before the latency phase")
    known = {label: pid for label, pid in run["processes"].items() if pid is not None}
    spent = cpu_in_windows(slices, traced, process_names(slices, known), known.get("trading worker"))
    report(spent, traced)


if __name__ == "__main__":
    main()
