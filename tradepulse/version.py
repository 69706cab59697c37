"""What version of the code produced a result: the package version and a hash of the code that decides trades."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DECIDING_CODE = ("agents/bars.py", "agents/state.py", "agents/indicators", "agents/strategies", "agents/execution",
                 "streams/keys.py", "training")
"""Sources whose change can change a backtest or a trained configuration."""


@cache
def code_version() -> str:
    """`<package version>+<12 hex of the sources' hash>`, stable across machines and checkouts."""
    digest = hashlib.blake2b(digest_size=6)
    for entry in DECIDING_CODE:
        path = ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(file.relative_to(ROOT).as_posix().encode())
            digest.update(file.read_bytes())
    try:
        package = version("tradepulse")
    except PackageNotFoundError:
        package = "0+unknown"
    return f"{package}+{digest.hexdigest()}"
