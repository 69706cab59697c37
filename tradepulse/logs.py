"""Process logging set-up and secret redaction: credentials never reach a log line."""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit, urlunsplit


def configure_logging(level: str | None = None) -> None:
    """Plain timestamped logs (level from TRADEPULSE_LOG_LEVEL, default INFO); safe to call twice."""
    logging.basicConfig(
        level=(level or os.environ.get("TRADEPULSE_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
