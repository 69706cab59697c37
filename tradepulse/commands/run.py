"""`tradepulse run`: the whole system on local defaults with a working offline demo.

Brings the stack up, imports the demo history, starts a worker and a synthetic (or replay/ccxt) tick feed as child
processes, and serves the API in the foreground; Ctrl-C (or `--for N`) stops the children cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING

import typer
from rich.console import Console
from rich.panel import Panel

from tradepulse.commands.output import fail

if TYPE_CHECKING:
    import uvicorn

    from tradepulse.settings import Settings

logger = logging.getLogger(__name__)
console = Console()

DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"
STOP_TIMEOUT_S = 20.0
MINUTE_MS = 60_000
RESUME_GAP_MS = 3 * MINUTE_MS
"""Past the newest stored 1m candle, beyond the still-open minute the worker may hold and its grace period."""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tradepulse.cli", *args]


class ChildProcess:
    """A long-running child with its output in a log file under the data directory."""

    def __init__(self, name: str, command: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", self.name, STOP_TIMEOUT_S)
                self.process.kill()
                self.process.wait()
        self._log.close()


def _synthetic_start(settings: Settings, exchange: str, symbols: list[str]) -> int:
    """Where the synthetic feed starts: the current minute, or past the newest stored candle after a restart.

    The worker's builder state outlives a restart, so event time must never go back: ticks before its watermark
    would all be dead-lettered as late.
    """
    from tradepulse.db import connect
    from tradepulse.store import latest_candle_ts

    now = int(time.time() * 1000)
    with connect(settings) as conn:
        stored = [latest_candle_ts(conn, exchange, symbol, "1m") for symbol in symbols]
    newest = max((ts for ts in stored if ts is not None), default=None)
    start = now if newest is None else max(now, newest + RESUME_GAP_MS + settings.worker.late_tick_grace_ms)
    return start - start % MINUTE_MS


DEMO_TIMEFRAME = "15m"
DEMO_HISTORY_DAYS = 21
DEMO_BARS = DEMO_HISTORY_DAYS * 96 - 10
"""15m bars per symbol the demo trains on: three weeks of synthetic history, built by the worker from ticks."""
DEMO_ACTIVE = 4
DEMO_ALLOCATION = 20_000.0
DEMO_ACCOUNT = "demo"
STAGE_RANK = "CASE stage WHEN 'MATURE' THEN 3 WHEN 'VALIDATION' THEN 2 WHEN 'DISCOVERY' THEN 1 ELSE 0 END"


def _stored_bars(settings: Settings, exchange: str, symbols: list[str]) -> int:
    from tradepulse.db import connect
    from tradepulse.store import candle_count

    with connect(settings) as conn:
        return min(candle_count(conn, exchange, symbol, DEMO_TIMEFRAME) for symbol in symbols)


def _prepare_paper_demo(settings: Settings, exchange: str, symbols: list[str], worker: ChildProcess) -> None:
    """Synthetic history (once), trained configurations for it, and the best few trading on paper.

    Every step is idempotent: history is published only when missing, training continues its studies, and
    configurations already active stay as they are.
    """
    import psycopg

    from tradepulse import control

    if _stored_bars(settings, exchange, symbols) < DEMO_BARS:
        now = int(time.time() * 1000)
        start = now - now % MINUTE_MS - DEMO_HISTORY_DAYS * 86_400_000
        console.print(f"publishing {DEMO_HISTORY_DAYS} days of synthetic history for {', '.join(symbols)}…")
        synth = _cli("data", "synth", "--publish", "ticks", "--exchange", exchange, "--symbols", ",".join(symbols),
                     "--days", str(DEMO_HISTORY_DAYS), "--start", str(start), "--ticks-per-minute", "12",
                     "--batch-ms", "60000", "--max-batch", "1000")
        if subprocess.run(synth).returncode != 0:
            raise fail("publishing the synthetic history failed (its error is above)")
        with console.status("the worker is building candles from the history…"):
            deadline = time.monotonic() + 600
            while _stored_bars(settings, exchange, symbols) < DEMO_BARS:
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    raise fail(f"the worker did not build the history's candles; see {worker.log_path}")
                time.sleep(2)
    console.print("training configurations on the synthetic history (resumes where it stopped)…")
    train = _cli("train", "--all", "--all-timeframes", DEMO_TIMEFRAME, "--trials", "12", "--wf-trials", "5",
                 "--wf-windows", "3", "--permutations", "20", "--top", "2", "--min-trades", "5")
    if subprocess.run(train).returncode != 0:
        raise fail("training on the demo history failed (its error is above)")
    with psycopg.connect(settings.database.url, connect_timeout=10) as conn:
        account = control.ensure_account(conn, DEMO_ACCOUNT, DEMO_ACTIVE * DEMO_ALLOCATION * 2)
        conn.commit()
        best = conn.execute(
            f"""
            SELECT id FROM trained_configurations
            WHERE exchange = %s AND timeframe = %s
            ORDER BY is_active DESC, {STAGE_RANK} DESC, (in_sample_metrics ->> 'sharpe')::float DESC NULLS LAST, id
            LIMIT %s
            """,
            (exchange, DEMO_TIMEFRAME, DEMO_ACTIVE),
        ).fetchall()
        publish = control.kafka_publisher(settings)
        active = {row["id"] for row in control.list_configurations(conn, active_only=True)}
        for (configuration_id,) in best:
            if configuration_id not in active:
                control.activate(conn, configuration_id, publish, account_id=account.account_id,
                                 allocation=DEMO_ALLOCATION)
        console.print(f"paper trading {len(best)} configurations on account {account.account_id}")


def run(
    feed: str = typer.Option("synth", help="tick source: synth (offline default), replay or ccxt"),
    symbols: str = typer.Option("BTC/USDT,ETH/USDT,SOL/USDT", help="comma-separated symbols for the feed"),
    exchange: str = typer.Option("synth", help="exchange name the feed's instruments are keyed under"),
    speed: float = typer.Option(60.0, min=0.0, help="event-time speed of the feed (60 = one hour per minute)"),
    seconds: float = typer.Option(0.0, "--for", min=0.0, help="stop after this many seconds (0 = until Ctrl-C)"),
    skip_import: bool = typer.Option(False, help="do not import the demo history in data/demo"),
    skip_paper: bool = typer.Option(False, help="no synthetic history, training or paper trading in the demo"),
) -> None:
    """Run the full stack with the demo: Kafka, PostgreSQL, demo data, a worker, a tick feed and the API."""
    import uvicorn
    from aiokafka.errors import KafkaError

    from api.app import create_app
    from tradepulse.db import MigrationError
    from tradepulse.logs import configure_logging
    from tradepulse.settings import get_settings
    from tradepulse.stack import Stack, StackError

    if feed not in ("synth", "replay", "ccxt"):
        raise typer.BadParameter("expected synth, replay or ccxt", param_hint="--feed")
    configure_logging()
    settings = get_settings()
    started = time.monotonic()
    try:
        with console.status("starting Kafka and PostgreSQL…"):
            Stack(settings).up()
    except (StackError, MigrationError, KafkaError) as exc:
        raise fail(str(exc)) from exc
    console.print(f"stack up in {time.monotonic() - started:.1f} s")

    if not skip_import:
        files = sorted(str(path) for path in DEMO_DIR.glob("*.csv"))
        console.print(f"importing {len(files)} demo files (idempotent)…")
        if subprocess.run(_cli("data", "import", *files)).returncode != 0:
            raise fail("the demo import failed (its error is above); --skip-import runs without the history")

    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    feed_args = ["data", "feed", "--source", feed, "--exchange", exchange, "--symbols", symbols, "--speed", str(speed)]
    names = [part.strip() for part in symbols.split(",") if part.strip()]
    if feed == "synth":
        feed_args += ["--start", str(_synthetic_start(settings, exchange, names))]
    launched: list[ChildProcess] = []
    with ExitStack() as children:
        def start(name: str, command: list[str]) -> ChildProcess:
            child = ChildProcess(name, command, log_dir, env)
            children.callback(child.stop)
            launched.append(child)
            console.print(f"started {name} (pid {child.process.pid}, log {child.log_path})")
            return child

        worker = start("worker", _cli("worker"))
        if feed == "synth" and not skip_paper:
            _prepare_paper_demo(settings, exchange, names, worker)
            feed_args[feed_args.index("--start") + 1] = str(_synthetic_start(settings, exchange, names))
        start("feed", _cli(*feed_args))
        base = f"http://{settings.api.host}:{settings.api.port}"
        console.print(Panel.fit(
            f"API        {base}/docs\nhealth     {base}/health\n"
            f"candles    {base}/api/market/candles?exchange={exchange}&symbol={symbols.split(',')[0]}&timeframe=1m\n"
            f"history    {base}/api/market/candles?exchange=bitfinex&symbol=BTC/USD&timeframe=1h\n"
            f"portfolio  {base}/api/portfolio?account=paper-{DEMO_ACCOUNT}\n"
            f"trades     {base}/api/trades?account=paper-{DEMO_ACCOUNT}\n"
            f"strategies {base}/api/strategies/performance\n"
            "Ctrl-C stops the worker, the feed and the API; `tradepulse stack down` stops Kafka and PostgreSQL.",
            title="TradePulse is running",
        ))
        server = uvicorn.Server(uvicorn.Config(
            create_app(settings), host=settings.api.host, port=settings.api.port, log_config=None
        ))
        with suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after its shutdown: a normal stop here
            asyncio.run(_serve(server, seconds, launched))
        died = [child.name for child in launched if child.process.poll() is not None]
    console.print("stopped the worker, the feed and the API")
    if died:
        raise fail(f"{', '.join(died)} stopped unexpectedly; see the logs in {log_dir}")


async def _serve(server: uvicorn.Server, seconds: float, children: list[ChildProcess]) -> None:
    """Serve the API while watching the children; stop when one dies or when `seconds` have passed."""
    deadline = time.monotonic() + seconds if seconds else None

    async def watchdog() -> None:
        while not server.should_exit:
            await asyncio.sleep(0.5)
            for child in children:
                if child.process.poll() is not None:
                    logger.error("%s exited with code %s; see %s", child.name, child.process.returncode, child.log_path)
                    server.should_exit = True
            if deadline is not None and time.monotonic() >= deadline:
                server.should_exit = True

    await asyncio.gather(server.serve(), watchdog())
