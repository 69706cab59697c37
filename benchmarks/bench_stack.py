"""Cold and warm `stack up` times on a fresh data directory and private ports, beside a reference measured in the
same run: one Kafka tool JVM (`StorageTool random-uuid`), the floor any start of the broker's code pays here.

    python -m benchmarks.bench_stack [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tradepulse.settings import DatabaseSettings, KafkaSettings, Settings
from tradepulse.stack import Stack, ensure_kafka_libs, find_java

KAFKA_PORT, CONTROLLER_PORT, POSTGRES_PORT = 23092, 23093, 23432


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def kafka_tool_s(java: str, libs: Path) -> float:
    """One short Kafka tool run: JVM start plus loading the broker's classes, without any broker work."""
    command = [java, "-cp", f"{libs}/*", "kafka.tools.StorageTool", "random-uuid"]
    return timed(lambda: subprocess.run(command, capture_output=True, check=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    libs = ensure_kafka_libs()
    java = find_java()
    cold, warm, restart, down, jvm = [], [], [], [], []
    for _ in range(args.runs):
        data_dir = Path(tempfile.mkdtemp(prefix="tp-bench-stack-", dir="/tmp"))
        data_dir.chmod(0o755)
        settings = Settings(
            data_dir=data_dir,
            kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{KAFKA_PORT}", controller_port=CONTROLLER_PORT),
            database=DatabaseSettings(url=f"postgresql://tradepulse:tradepulse@127.0.0.1:{POSTGRES_PORT}/tradepulse"),
        )
        stack = Stack(settings)
        try:
            jvm.append(kafka_tool_s(java, libs))
            cold.append(timed(stack.up))
            warm.append(timed(stack.up))
            down.append(timed(stack.down))
            restart.append(timed(stack.up))
        finally:
            stack.down()
            shutil.rmtree(data_dir, ignore_errors=True)

    def row(name: str, values: list[float]) -> None:
        print(f"{name:<42} median {statistics.median(values):6.2f} s  "
              f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)")

    row("one Kafka tool JVM (reference)", jvm)
    row("cold stack up (fresh data dir, jars cached)", cold)
    row("stack up when already running", warm)
    row("stack down", down)
    row("stack up on existing data", restart)
    print(f"cold up / Kafka tool JVM = {statistics.median(cold) / statistics.median(jvm):.1f}")


if __name__ == "__main__":
    main()
