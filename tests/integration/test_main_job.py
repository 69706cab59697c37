"""The README's main job, end to end: `tradepulse run` brings everything up and the API serves live candles."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.integration.conftest import free_port
from tests.pipeline_helpers import settings_env
from tradepulse.settings import Settings


def poll(
    url: str, params: dict[str, object], ready: Callable[[httpx.Response], bool], timeout_s: float,
    process: subprocess.Popen[str],
) -> dict[str, Any]:
    """GET `url` until `ready` accepts the answer, failing early if the run process died."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"tradepulse run exited early:\n{process.stdout.read() if process.stdout else ''}")
        try:
            response = httpx.get(url, params=params, timeout=10)
            last = response.text
            if ready(response):
                result: dict[str, Any] = response.json()
                return result
        except httpx.TransportError as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"{url} not ready within {timeout_s} s; last answer: {last}")


def test_run_serves_demo_history_and_live_candles(settings: Settings) -> None:
    port = free_port()
    isolated = settings.model_copy(update={"api": settings.api.model_copy(update={"port": port})})
    process = subprocess.Popen(
        [sys.executable, "-m", "tradepulse.cli", "run", "--speed", "1200"],
        env=settings_env(isolated), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        health = poll(f"{base}/health", {}, lambda r: r.status_code == 200, 600, process)
        assert health["broker"]["ok"] and health["database"]["ok"]
        assert any(worker["alive"] for worker in health["workers"])

        # the demo import finishes before the API starts
        history = httpx.get(f"{base}/api/market/candles", params={
            "exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "1h", "limit": 10_000,
            "from": "2017-01-01T00:00:00Z",
        }).json()
        assert history["count"] == 10_000
        assert history["candles"][-1]["ts"].startswith("2019-07-04T01:00:00")

        live = poll(f"{base}/api/market/candles", {"exchange": "synth", "symbol": "ETH/USDT", "timeframe": "5m"},
                    lambda r: r.status_code == 200 and r.json()["count"] >= 3, 90, process)
        closes = [candle["close"] for candle in live["candles"]]
        assert all(price > 0 for price in closes)

        # trained configurations trade on paper from the live feed
        configs = httpx.get(f"{base}/api/configurations", params={"active": "true"}).json()
        assert len(configs) == 4 and all(c["exchange"] == "synth" and c["timeframe"] == "15m" for c in configs)
        portfolio = poll(f"{base}/api/portfolio", {"account": "paper-demo"},
                         lambda r: r.status_code == 200 and len(r.json()["configurations"]) == 4, 120, process)
        assert portfolio["account"]["equity"] > 0
        assert httpx.get(f"{base}/api/trades", params={"account": "paper-demo"}).status_code == 200
        assert httpx.get(f"{base}/api/strategies/performance").status_code == 200
        process.send_signal(signal.SIGINT)  # Ctrl-C: the API stops, then the worker and the feed
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
    output = process.stdout.read() if process.stdout else ""
    assert "TradePulse is running" in output
    assert "stopped the worker, the feed and the API" in output
