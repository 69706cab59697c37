"""The `tradepulse` command's behaviour that needs no broker or database: start-up cost and bad input."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY_MODULES = ("faust", "uvicorn", "psycopg", "ccxt", "pandas", "aiokafka", "fastapi")


def _tradepulse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradepulse.cli", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )


def test_importing_the_cli_loads_no_heavy_module() -> None:
    probe = "import sys, tradepulse.cli; print(','.join(m for m in sys.argv[1:] if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe, *HEAVY_MODULES], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == ""
