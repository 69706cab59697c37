"""Process logging set-up and secret redaction: credentials never reach a log line."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

REPEAT_WINDOW_S = 10.0
MAX_TRACKED_MESSAGES = 1_000


class RepeatFilter(logging.Filter):
    """Lets one record per (logger, level, message template) through per window and counts the rest.

    While a broker is unreachable the Kafka client logs the same connection error thousands of times a second;
    collapsing the repeats keeps the log readable and the disk from filling, and the count says how bad it was.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        shown_at, suppressed = self._seen.get(key, (float("-inf"), 0))
        if now - shown_at < self._window_s:
            self._seen[key] = (shown_at, suppressed + 1)
            return False
        if len(self._seen) >= MAX_TRACKED_MESSAGES:  # messages formatted before logging would grow it forever
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._window_s}
        self._seen[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} [repeated {suppressed} more times in {self._window_s:.0f} s]"
        return True


def configure_logging(level: str | None = None) -> None:
    """Plain timestamped logs (level from TRADEPULSE_LOG_LEVEL, default INFO) with repeats collapsed."""
    logging.basicConfig(
        level=(level or os.environ.get("TRADEPULSE_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RepeatFilter) for existing in handler.filters):
            handler.addFilter(RepeatFilter())


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
