"""Shared by the pipeline tests and benchmark: reference candles, the worker process, log and store access."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from aiokafka import AIOKafkaProducer
from psycopg import sql

from streams.producer import LogProducer
from streams.records import TIMEFRAMES, Candle, Event, TickBatch, instrument_key
from streams.replay import read_candles
from streams.topics import TICKS, topic_name
from tradepulse.settings import Settings

PANDAS_RULES = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "1D"}
CANDLE_COLUMNS = ["open", "high", "low", "close", "volume", "trades"]


@dataclass(frozen=True)
class Ticks:
    """The trades of one instrument in arrival order."""

    exchange: str
    symbol: str
    times: np.ndarray
    prices: np.ndarray
    amounts: np.ndarray

    def batches(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, len(self.times), size):
            end = start + size
            yield self.times[start:end], self.prices[start:end], self.amounts[start:end]

    def without(self, start_ms: int, end_ms: int) -> Ticks:
        """The same ticks with a silent stretch: nothing traded in `[start_ms, end_ms)`."""
        keep = (self.times < start_ms) | (self.times >= end_ms)
        return Ticks(self.exchange, self.symbol, self.times[keep], self.prices[keep], self.amounts[keep])


def ticks_by_instrument(batches: Iterable[TickBatch]) -> list[Ticks]:
    """Tick batches (of any instruments, in publishing order) as one column set per instrument."""
    grouped: dict[tuple[str, str], list[TickBatch]] = {}
    for batch in batches:
        grouped.setdefault((batch.exchange, batch.symbol), []).append(batch)
    return [
        Ticks(
            exchange, symbol,
            np.concatenate([np.asarray(b.times, dtype=np.int64) for b in group]),
            np.concatenate([np.asarray(b.prices, dtype=np.float64) for b in group]),
            np.concatenate([np.asarray(b.amounts, dtype=np.float64) for b in group]),
        )
        for (exchange, symbol), group in grouped.items()
    ]


def reference_candles(ticks: Ticks, *, grace_ms: int) -> pd.DataFrame:
    """What the candle builder must emit for `ticks`, computed independently with pandas.

    Resample every timeframe from the ticks themselves (not from 1m candles), drop empty buckets and keep only the
    buckets that closed: bucket end + grace <= the greatest tick time.
    """
    frame = pd.DataFrame(
        {"price": ticks.prices, "amount": ticks.amounts},
        index=pd.to_datetime(ticks.times, unit="ms"),  # naive UTC: day buckets start at midnight UTC
    ).sort_index(kind="stable")
    watermark = int(ticks.times.max())
    parts = []
    for tf, rule in PANDAS_RULES.items():
        resampled = frame.resample(rule, origin="epoch")
        ohlc = resampled["price"].ohlc()
        ohlc["volume"] = resampled["amount"].sum()
        ohlc["trades"] = resampled["price"].count()
        ohlc = ohlc.dropna(subset=["open"])
        ts = (ohlc.index - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)
        ohlc = ohlc.assign(ts=np.asarray(ts, dtype=np.int64)).reset_index(drop=True)
        ohlc = ohlc[ohlc["ts"] + TIMEFRAMES[tf] + grace_ms <= watermark]
        parts.append(ohlc.assign(exchange=ticks.exchange, symbol=ticks.symbol, timeframe=tf))
    return _index(pd.concat(parts, ignore_index=True))


def candles_frame(candles: Iterable[Candle]) -> pd.DataFrame:
    """Candles as a frame indexed like `reference_candles`."""
    rows = [
        {
            "exchange": c.exchange, "symbol": c.symbol, "timeframe": c.timeframe, "ts": c.ts,
            "open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume, "trades": c.trades,
        }
        for c in candles
    ]
    return _index(pd.DataFrame(rows, columns=["exchange", "symbol", "timeframe", "ts", *CANDLE_COLUMNS]))


def _index(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"ts": "int64", "trades": "int64"})
    return frame.set_index(["exchange", "symbol", "timeframe", "ts"])[CANDLE_COLUMNS].sort_index()


def assert_same_candles(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Exact prices and counts; volumes equal up to float summation order."""
    assert len(expected) > 0
    assert list(actual.index) == list(expected.index), _index_diff(actual, expected)
    exact = ["open", "high", "low", "close", "trades"]
    differs = (actual[exact] != expected[exact]).any(axis=1)
    shown = 12
    assert not differs.any(), (
        f"{int(differs.sum())} candles differ; stored:\n{actual[differs].head(shown)}\n"
        f"expected:\n{expected[differs].head(shown)}"
    )
    np.testing.assert_allclose(actual["volume"].to_numpy(), expected["volume"].to_numpy(), rtol=1e-9)


def _index_diff(actual: pd.DataFrame, expected: pd.DataFrame) -> str:
    missing = expected.index.difference(actual.index)
    extra = actual.index.difference(expected.index)
    return f"missing {len(missing)} {list(missing[:5])}, unexpected {len(extra)} {list(extra[:5])}"


# ----------------------------------------------------------------------------------- the worker as a subprocess


def settings_env(settings: Settings) -> dict[str, str]:
    """The process environment with `settings` as TRADEPULSE_* variables (and no stray ones from outside)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRADEPULSE_")}

    def flatten(prefix: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if isinstance(value, dict):
                flatten(f"{prefix}{name.upper()}__", value)
            elif isinstance(value, list):
                env[f"{prefix}{name.upper()}"] = json.dumps(value)
            elif value is not None:
                env[f"{prefix}{name.upper()}"] = str(value)

    flatten("TRADEPULSE_", settings.model_dump(mode="json"))
    return env


class WorkerProcess:
    """`tradepulse worker --role ROLE` run as a real process, so tests can SIGTERM or SIGKILL it."""

    def __init__(self, settings: Settings, log_dir: Path, role: str = "all") -> None:
        self._env = settings_env(settings)
        self._log_dir = log_dir
        self._role = role
        self._runs = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self._log_dir / f"worker-{self._role}-{self._runs}.log"

    def start(self) -> None:
        self._runs += 1
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("tradepulse")), "worker", "--role", self._role],
                env=self._env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush or commit anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        """Whether Faust logged "Worker ready" in this run: the group is joined and the tables are recovered."""
        return self.log_path.exists() and "Worker ready" in self.log_path.read_text(errors="replace")

    def diagnostics(self) -> str:
        """Ask a live worker where its tasks wait and what its consumer holds (SIGUSR1), for a failure message."""
        if not self.alive():
            return ""
        assert self.process is not None
        before = len(self.log_path.read_text(errors="replace").splitlines())
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and "end of diagnostics" not in self.log_path.read_text(errors="replace"):
            time.sleep(0.2)
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[before:])

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.alive():
            self.kill()


@contextmanager
def trading_workers(settings: Settings, log_dir: Path, split: bool) -> Iterator[WorkerProcess]:
    """The worker that trades, started (and killed at the end if still alive): with `split`, a `trading` worker and
    a `sinks` worker beside it (without a web server, whose port the first one holds), as `tradepulse run` deploys
    them; otherwise one worker running every agent."""
    with ExitStack() as started:
        trading = started.enter_context(WorkerProcess(settings, log_dir, "trading" if split else "all"))
        if split:
            quiet = settings.model_copy(update={"worker": settings.worker.model_copy(update={"web_port": 0})})
            started.enter_context(WorkerProcess(quiet, log_dir, "sinks"))
        yield trading


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, worker: WorkerProcess | None = None) -> None:
    """Poll `check` until it holds; on timeout fail with the worker's log tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if worker is not None and not worker.alive():
            raise AssertionError(f"the worker exited while waiting for {what}:\n{worker.log_tail()}")
        time.sleep(0.5)
    tail = f"\nworker log:\n{worker.log_tail()}\nworker diagnostics:\n{worker.diagnostics()}" if worker else ""
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{tail}")


# ------------------------------------------------------------------------------------------ the log and the store


def produce(settings: Settings, topic: str, keyed_records: Iterable[tuple[str, Event]]) -> int:
    async def send() -> int:
        async with LogProducer(settings) as producer:
            return await producer.send_many(topic, keyed_records)

    return asyncio.run(send())


def produce_raw(settings: Settings, topic: str, keyed_values: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    """Arbitrary bytes, as a broken producer would publish them."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for key, value in keyed_values:
                await producer.send_and_wait(topic_name(settings.kafka.topic_prefix, topic), value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def produce_ticks(settings: Settings, batches: Iterable[TickBatch]) -> int:
    return produce(settings, TICKS, ((instrument_key(b.exchange, b.symbol), b) for b in batches))


def stored_candles(settings: Settings) -> pd.DataFrame:
    """Everything in market_data, indexed like `reference_candles`."""
    with psycopg.connect(settings.database.url) as conn:
        rows = conn.execute(
            "SELECT exchange, symbol, timeframe, (extract(epoch FROM ts) * 1000)::bigint AS ts,"
            " open, high, low, close, volume, trades FROM market_data"
        ).fetchall()
    return _index(pd.DataFrame(rows, columns=["exchange", "symbol", "timeframe", "ts", *CANDLE_COLUMNS]))


def count_rows(settings: Settings, table: str) -> int:
    with psycopg.connect(settings.database.url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row[0])


def topic_candles(settings: Settings) -> pd.DataFrame:
    """Every timeframe's topic read back, deduplicated by event id."""
    candles = [c for tf in TIMEFRAMES for c in asyncio.run(read_candles(settings, tf))]
    return candles_frame(candles)


def expected_candles(batches: Iterable[TickBatch], grace_ms: int) -> pd.DataFrame:
    """The pandas reference for a whole set of tick batches, every instrument and timeframe."""
    return pd.concat([reference_candles(t, grace_ms=grace_ms) for t in ticks_by_instrument(batches)]).sort_index()


def heartbeat_stats(settings: Settings) -> list[dict[str, Any]]:
    """The stats of every worker that ever beat in this database, oldest first."""
    with psycopg.connect(settings.database.url) as conn:
        return [row[0] for row in conn.execute("SELECT stats FROM worker_heartbeats ORDER BY started_at")]


def messages_seen(settings: Settings) -> int:
    """Messages the newest worker reported in its last heartbeat (0 before its first)."""
    stats = heartbeat_stats(settings)
    return int(stats[-1]["messages"]) if stats else 0
