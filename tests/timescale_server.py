"""Start and stop the PGlite TimescaleDB server (deploy/pglite/server.mjs) for the Timescale tests.

The server is the only TimescaleDB these machines can run. Its npm packages are installed by the test set-up
(`npm ci --prefix deploy/pglite`, done by deploy/bootstrap.sh); when they are missing the tests fail and say so,
because a silent skip would leave the Timescale SQL unproven.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PGLITE_DIR = Path(__file__).resolve().parent.parent / "deploy" / "pglite"
INSTALL_COMMAND = "npm ci --prefix deploy/pglite"
READY_LINE = "ready:"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(log: Path, lines: int = 30) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def timescale_server(log_dir: Path, *, ready_timeout_s: float = 90.0) -> Iterator[str]:
    """Run one in-memory PGlite TimescaleDB server on a free port; yields its URL and stops it afterwards.

    The URL sends a password and disables TLS, as the server requires. It serves one connection at a time.
    """
    if not (PGLITE_DIR / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        pytest.fail(f"the PGlite TimescaleDB server is not installed: run `{INSTALL_COMMAND}`", pytrace=False)
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js 18+ to run the TimescaleDB tests", pytrace=False)

    port = _free_port()
    log = log_dir / f"pglite-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [node, "server.mjs", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PGLITE_DIR, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not (READY_LINE in log.read_text(errors="replace") and _accepts(port)):
            if process.poll() is not None:
                pytest.fail(f"the PGlite server exited with {process.returncode}:\n{_tail(log)}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"the PGlite server was not ready within {ready_timeout_s:.0f}s:\n{_tail(log)}",
                            pytrace=False)
            time.sleep(0.2)
        yield f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
