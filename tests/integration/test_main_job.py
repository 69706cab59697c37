"""The README's main job, end to end: `tradepulse run` brings everything up, trains, activates the best
configurations and paper trades them from a feed while the API serves the views."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.fake_exchange import FakeBinance, Trade
from tests.integration.conftest import free_port
from tests.pipeline_helpers import settings_env
from tradepulse.commands.run import CCXT_HISTORY_DAYS
from tradepulse.marketdata.synth import generate_candles
from tradepulse.settings import Settings

MINUTE = 60_000
HOUR = 60 * MINUTE


@dataclass
class Run:
    base: str
    process: subprocess.Popen[str]
    app_id: str

    def poll(self, path: str, params: dict[str, object], ready: Callable[[httpx.Response], bool],
             timeout_s: float) -> Any:
        """GET `path` until `ready` accepts the answer (returned decoded), failing early if the run died."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise AssertionError(f"tradepulse run exited early:\n{output}")
            try:
                response = httpx.get(f"{self.base}{path}", params=params, timeout=10)
                last = response.text
                if ready(response):
                    return response.json()
            except httpx.TransportError as exc:
                last = exc
            time.sleep(1)
        raise AssertionError(f"{path} not ready within {timeout_s} s; last answer: {last}")

    def healthy(self, timeout_s: float) -> None:
        health = self.poll("/health", {}, lambda r: r.status_code == 200, timeout_s)
        assert health["broker"]["ok"] and health["database"]["ok"]
        alive = {worker["worker_id"].partition("@")[0] for worker in health["workers"] if worker["alive"]}
        assert {self.app_id, f"{self.app_id}-sinks"} <= alive, f"the trading and sinks workers, not all of {alive}"

    def paper_trading(self, timeout_s: float) -> list[dict[str, Any]]:
        """The demo account's configurations once all four report, and its first trades."""
        portfolio = self.poll("/api/portfolio", {"account": "paper-demo"},
                              lambda r: r.status_code == 200 and len(r.json()["configurations"]) == 4
                              and r.json()["account"] is not None, timeout_s)  # the account's own snapshot follows
        assert portfolio["account"]["equity"] > 0
        assert httpx.get(f"{self.base}/api/strategies/performance").status_code == 200
        trades: list[dict[str, Any]] = self.poll("/api/trades", {"account": "paper-demo"},
                                                 lambda r: r.status_code == 200 and len(r.json()) > 0, timeout_s)
        return trades


@contextmanager
def running(settings: Settings, *args: str) -> Iterator[Run]:
    """`tradepulse run ARGS` on a free API port; stopped with Ctrl-C at the end, which must be a clean exit."""
    port = free_port()
    isolated = settings.model_copy(update={"api": settings.api.model_copy(update={"port": port})})
    process = subprocess.Popen([sys.executable, "-m", "tradepulse.cli", "run", *args], env=settings_env(isolated),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield Run(f"http://127.0.0.1:{port}", process, settings.worker.app_id)
        process.send_signal(signal.SIGINT)  # Ctrl-C: the API stops, then the workers and the feed
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.terminate()  # stops like Ctrl-C: each child gets up to 20 s
            process.wait(90)
    output = process.stdout.read() if process.stdout else ""
    assert "TradePulse is running" in output
    assert "paper trading 4 configurations on account paper-demo" in output
    assert "stopped the workers, the feed and the API" in output


def test_run_trains_activates_and_paper_trades_the_replayed_held_out_history(settings: Settings) -> None:
    with running(settings, "--speed", "36000") as run:
        run.healthy(900)
        # the demo import finishes before the API starts
        history = run.poll("/api/market/candles", {
            "exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "1h", "limit": 10_000,
            "from": "2017-01-01T00:00:00Z",
        }, lambda r: r.status_code == 200, 10)
        assert history["count"] == 10_000
        assert history["candles"][-1]["ts"].startswith("2019-07-04T01:00:00")

        # configurations trained before the held-out period trade it on paper from the replay feed
        configs = httpx.get(f"{run.base}/api/configurations", params={"active": "true"}).json()
        assert len(configs) == 4
        assert all(c["exchange"] == "bitfinex" and c["timeframe"] == "1h" for c in configs)
        held_out = datetime(2019, 5, 5, 1, tzinfo=UTC)  # 60 days before the newest stored hour, 2019-07-04 01:00
        assert all(datetime.fromisoformat(c["data_end"]) <= held_out for c in configs), configs
        trades = run.paper_trading(300)
        assert all(datetime.fromisoformat(t["entry_ts"]) >= held_out for t in trades), trades


def test_run_with_the_synthetic_feed_trades_a_live_synthetic_market(settings: Settings) -> None:
    with running(settings, "--feed", "synth", "--speed", "1200") as run:
        run.healthy(600)
        live = run.poll("/api/market/candles", {"exchange": "synth", "symbol": "ETH/USDT", "timeframe": "5m"},
                        lambda r: r.status_code == 200 and r.json()["count"] >= 3, 90)
        assert all(candle["close"] > 0 for candle in live["candles"])
        configs = httpx.get(f"{run.base}/api/configurations", params={"active": "true"}).json()
        assert len(configs) == 4 and all(c["exchange"] == "synth" and c["timeframe"] == "15m" for c in configs)
        run.paper_trading(300)


def test_run_with_the_ccxt_feed_backfills_trains_and_trades_the_live_market(settings: Settings) -> None:
    now = int(time.time() * 1000)
    first = now - now % HOUR - CCXT_HISTORY_DAYS * 24 * HOUR - HOUR
    minutes = (now - first) // MINUTE
    candles = list(generate_candles(["BTC/USDT"], first, minutes, seed=11, ticks_per_minute=4))
    with FakeBinance() as fake, LiveTrades(fake, "BTC/USDT", candles[-1].close):
        fake.add_market("BTC/USDT", [(c.ts, c.open, c.high, c.low, c.close, c.volume) for c in candles])
        with running(settings, "--feed", "ccxt", "--exchange", "binance", "--symbols", "BTC/USDT",
                     "--exchange-url", fake.url, "--skip-import") as run:
            run.healthy(600)
            configs = httpx.get(f"{run.base}/api/configurations", params={"active": "true"}).json()
            assert len(configs) == 4 and all(c["exchange"] == "binance" and c["timeframe"] == "1h" for c in configs)
            run.poll("/api/configurations", {"active": "true"},
                     lambda r: all(c["status"] == "running" for c in r.json()), 60)
            live = run.poll("/api/market/candles", {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m",
                                                    "from": datetime.fromtimestamp(now / 1000, UTC).isoformat()},
                            lambda r: r.status_code == 200 and r.json()["count"] >= 1, 180)
            assert all(candle["close"] > 0 for candle in live["candles"])


class LiveTrades:
    """A thread trading on the fake exchange at the current time, a few trades a second, around `price`."""

    def __init__(self, fake: FakeBinance, symbol: str, price: float) -> None:
        self._fake, self._symbol, self._price = fake, symbol, price
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trade, daemon=True)

    def __enter__(self) -> LiveTrades:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _trade(self) -> None:
        trade_id = 1
        while not self._stop.wait(0.25):
            if self._symbol in self._fake.markets.values():
                price = self._price * (1 + 0.001 * ((trade_id % 7) - 3))
                self._fake.add_trades(self._symbol, [Trade(trade_id, int(time.time() * 1000), price, 0.01)])
                trade_id += 1


def test_a_sigterm_during_start_up_stops_the_children_too(settings: Settings) -> None:
    port = free_port()
    isolated = settings.model_copy(update={"api": settings.api.model_copy(update={"port": port})})
    process = subprocess.Popen([sys.executable, "-m", "tradepulse.cli", "run", "--feed", "synth", "--skip-import"],
                               env=settings_env(isolated), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        workers: dict[str, int] = {}
        for line in process.stdout:
            match = re.search(r"started (worker|sinks) \(pid (\d+)", line)
            if match:
                workers[match.group(1)] = int(match.group(2))
            if len(workers) == 2:
                break
        assert set(workers) == {"worker", "sinks"}, f"run started only {sorted(workers)}"
        process.send_signal(signal.SIGTERM)  # still preparing the demo: the API is not up yet
        process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers.values()):
            time.sleep(0.5)
        assert not [name for name, pid in workers.items() if _alive(pid)], "a worker outlived run"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited: only its exit status is left to collect
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
