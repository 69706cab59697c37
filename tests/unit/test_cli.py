"""The `tradepulse` command's behaviour that needs no broker or database: start-up cost and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_invalid_setting_names_the_variable_without_a_traceback() -> None:
    result = _tradepulse("stack", "status", env={"TRADEPULSE_KAFKA__PARTITIONS": "many"})
    assert result.returncode == 1
    assert "invalid settings: TRADEPULSE_KAFKA__PARTITIONS" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_synth_to_an_unwritable_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "candles.csv"
    result = _tradepulse("data", "synth", "--days", "0.01", "--out", str(target))
    assert result.returncode == 1
    assert f"cannot write {target}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_malformed_database_url_is_a_clear_error_that_hides_the_password() -> None:
    result = _tradepulse("db", "status", env={"TRADEPULSE_DATABASE__URL": "postgresql://u:s3cret@127.0.0.1:1/db?bad=1"})
    assert result.returncode == 1
    assert "PostgreSQL at postgresql://u:***@127.0.0.1:1/db?bad=1 is not usable" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
