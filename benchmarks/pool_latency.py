"""The latency figures of several `bench_paper --samples FILE` runs, pooled.

    python -m benchmarks.pool_latency runs/a1.json runs/a2.json runs/a3.json runs/a4.json

A default run's tail rests on about 40 bar closes (the fills of one close share its queue), so its p99 is close to
its worst close and moves by tens of milliseconds between identical runs; pooled runs give the tail more closes to
rest on. The raw hop is pooled the same way, so the ratio to it stays a ratio to measurements taken beside the
worker's, and the machine references the runs kept are printed as their range: pool runs from one host.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.bench_paper import bar_closes, report_latencies, report_machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, nargs="+", help="files written by bench_paper --samples")
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in args.samples]
    rates = {run["rate"] for run in runs}
    if len(rates) != 1:
        parser.error(f"the runs were fed at different rates ({', '.join(map(str, sorted(rates)))} ticks/s)")
    print(f"{len(runs)} runs pooled")
    report_latencies([fill for run in runs for fill in run["fills"]], [s for run in runs for s in run["signals"]],
                     [hop for run in runs for hop in run["hop_reference"]], rates.pop(),
                     sum(bar_closes(run["fills"]) for run in runs))
    report_machine([run["bar_step_ms"] for run in runs if "bar_step_ms" in run])


if __name__ == "__main__":
    main()
