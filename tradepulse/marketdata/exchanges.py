"""ccxt exchanges for the backfill and the live feed: construction, endpoint override, and retry with backoff.

ccxt is imported inside the functions that need it: it is heavy, and the CLI must start fast.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ExchangeRequestError(RuntimeError):
    """A request the exchange refused for good (bad symbol, bad request) or that kept failing after retries."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits `base * factor**n` capped at `cap`, scaled by a random
    factor in [1 - jitter, 1] so many clients do not retry in lockstep."""

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.5
    attempts: int = 6

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        raw = min(self.cap_s, self.base_s * self.factor**attempt)
        return raw * (1.0 - self.jitter * (rng or random).random())


def create_exchange(exchange_id: str, *, api_url: str | None = None, pro: bool = False) -> Any:
    """An async ccxt exchange with rate limiting on; `pro` gives the websocket-capable class.

    `api_url` sends every REST and websocket endpoint to one base URL instead (a proxy, a mirror, a test server):
    scheme and host are replaced, paths kept.
    """
    import ccxt.async_support
    import ccxt.pro

    module = ccxt.pro if pro else ccxt.async_support
    exchange_class = getattr(module, exchange_id, None)
    if exchange_class is None or exchange_id not in module.exchanges:
        raise ExchangeRequestError(f"unknown exchange {exchange_id!r}")
    exchange = exchange_class({"enableRateLimit": True, "timeout": 15_000})
    if api_url:
        exchange.urls["api"] = rebase_urls(exchange.urls["api"], api_url)
    return exchange


def rebase_urls(urls: Any, base_url: str) -> Any:
    """`urls` (a string or nested dict of strings) with scheme and host replaced by `base_url`'s; websocket URLs get
    ws:// (or wss:// for an https base)."""
    base = urlsplit(base_url)
    if isinstance(urls, dict):
        return {key: rebase_urls(value, base_url) for key, value in urls.items()}
    if not isinstance(urls, str):
        return urls
    parts = urlsplit(urls)
    if parts.scheme in ("ws", "wss"):
        scheme = "wss" if base.scheme == "https" else "ws"
    else:
        scheme = base.scheme
    return urlunsplit((scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, parts.fragment))


async def with_backoff(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff,
    rng: random.Random | None = None,
) -> T:
    """Run an exchange request, retrying transient failures (network errors, rate limits, DDoS protection, 5xx).

    Errors the exchange means (ccxt.ExchangeError: bad symbol, bad request, ...) are not retried: they become an
    `ExchangeRequestError` with the exchange's message, as does a transient failure that outlasts the attempts.
    """
    import ccxt

    attempt = 0
    while True:
        try:
            return await operation()
        except ccxt.NetworkError as exc:
            attempt += 1
            if attempt >= backoff.attempts:
                raise ExchangeRequestError(f"{what} still failing after {attempt} attempts: {exc}") from exc
            delay = backoff.delay(attempt - 1, rng)
            logger.warning("%s failed (%s: %s), retrying in %.2fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
        except ccxt.BaseError as exc:
            raise ExchangeRequestError(f"{what} refused by the exchange: {type(exc).__name__}: {exc}") from exc
