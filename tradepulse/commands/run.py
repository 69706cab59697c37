"""`tradepulse run`: the whole system on local defaults with a working offline demo.

Brings the stack up, imports the demo history, starts the workers (a trading and a sinks worker), trains
configurations and activates the best few, starts a tick feed (a replay of the held-out history by default, or
synthetic or live ccxt ticks) as child processes, and serves the API in the foreground; Ctrl-C (or `--for N`)
stops the children cleanly.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

import typer
from rich.console import Console
from rich.panel import Panel

from streams.keys import TIMEFRAMES
from tradepulse.commands.output import fail

if TYPE_CHECKING:
    import uvicorn

    from tradepulse.settings import Settings

logger = logging.getLogger(__name__)
console = Console()

DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"
STOP_TIMEOUT_S = 20.0
MINUTE_MS = TIMEFRAMES["1m"]
DAY_MS = TIMEFRAMES["1d"]
CCXT_HISTORY_DAYS = 90
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
        self.may_finish = False
        """Whether exiting with code 0 is the child's normal end (a replay that played everything)."""

    def died(self) -> bool:
        """Whether the child stopped other than by finishing normally."""
        code = self.process.poll()
        return code is not None and not (self.may_finish and code == 0)

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


SYNTH_TIMEFRAME = "15m"
SYNTH_HISTORY_DAYS = 21
SYNTH_BARS = SYNTH_HISTORY_DAYS * 96 - 10
"""15m bars per symbol the synthetic demo trains on: three weeks of history, built by the worker from ticks."""
REPLAY_EXCHANGE = "bitfinex"
REPLAY_SYMBOLS = "BTC/USD"
REPLAY_TIMEFRAME = "1h"
REPLAY_HELD_OUT_DAYS = 60
"""The newest days of the demo history that training never sees and the replay feed plays to paper trading."""
DEMO_ACTIVE = 4
DEMO_ALLOCATION = 20_000.0
DEMO_ACCOUNT = "demo"
STAGE_RANK = "CASE stage WHEN 'MATURE' THEN 3 WHEN 'VALIDATION' THEN 2 WHEN 'DISCOVERY' THEN 1 ELSE 0 END"
FEED_DEFAULTS: dict[str, tuple[str | None, str, float]] = {
    "replay": (REPLAY_EXCHANGE, REPLAY_SYMBOLS, 1200.0),
    "synth": ("synth", "BTC/USDT,ETH/USDT,SOL/USDT", 60.0),
    "ccxt": (None, "BTC/USDT", 1.0),
}
"""Per feed: the exchange its instruments are keyed under (None: the configured exchange), its symbols and its
event-time speed."""


def _stored_bars(settings: Settings, exchange: str, symbols: list[str], timeframe: str) -> int:
    from tradepulse.db import connect
    from tradepulse.store import candle_count

    with connect(settings) as conn:
        return min(candle_count(conn, exchange, symbol, timeframe) for symbol in symbols)


def _held_out_start(settings: Settings, exchange: str, symbols: list[str]) -> int:
    """Where the replay's held-out period starts: `REPLAY_HELD_OUT_DAYS` before the newest stored candle."""
    from tradepulse.db import connect
    from tradepulse.store import latest_candle_ts

    with connect(settings) as conn:
        stored = [latest_candle_ts(conn, exchange, symbol, REPLAY_TIMEFRAME) for symbol in symbols]
    if any(ts is None for ts in stored):
        raise fail(f"no {REPLAY_TIMEFRAME} history of {', '.join(symbols)} on {exchange} to replay: import it "
                   "(tradepulse data import FILE) or run without --skip-import")
    newest = min(ts for ts in stored if ts is not None)
    start = newest - REPLAY_HELD_OUT_DAYS * DAY_MS
    return start - start % TIMEFRAMES[REPLAY_TIMEFRAME]


def _publish_synthetic_history(settings: Settings, exchange: str, symbols: list[str], worker: ChildProcess) -> None:
    """Three weeks of synthetic ticks before now (once), and their candles built by the worker."""
    if _stored_bars(settings, exchange, symbols, SYNTH_TIMEFRAME) >= SYNTH_BARS:
        return
    now = int(time.time() * 1000)
    start = now - now % MINUTE_MS - SYNTH_HISTORY_DAYS * DAY_MS
    console.print(f"publishing {SYNTH_HISTORY_DAYS} days of synthetic history for {', '.join(symbols)}…")
    synth = _cli("data", "synth", "--publish", "ticks", "--exchange", exchange, "--symbols", ",".join(symbols),
                 "--days", str(SYNTH_HISTORY_DAYS), "--start", str(start), "--ticks-per-minute", "12",
                 "--batch-ms", "60000", "--max-batch", "1000")
    if subprocess.run(synth).returncode != 0:
        raise fail("publishing the synthetic history failed (its error is above)")
    with console.status("the worker is building candles from the history…"):
        deadline = time.monotonic() + 600
        while _stored_bars(settings, exchange, symbols, SYNTH_TIMEFRAME) < SYNTH_BARS:
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise fail(f"the worker did not build the history's candles; see {worker.log_path}")
            time.sleep(2)


def _train_and_activate(settings: Settings, exchange: str, symbols: list[str], timeframe: str,
                        until: int | None) -> None:
    """Trained configurations for the demo history (before `until`), and the best few trading on paper.

    Idempotent: training continues its studies, and configurations already active stay as they are. Only
    configurations trained on data that ends by `until` qualify, so none has seen what the feed will play.
    """
    import psycopg

    from agents.strategies import STRATEGIES
    from tradepulse import control

    span = "" if until is None else f" before {datetime.fromtimestamp(until / 1000, UTC):%Y-%m-%d %H:%M}"
    console.print(f"training configurations on the {timeframe} history{span} (resumes where it stopped)…")
    train = _cli("train", *(arg for name in sorted(STRATEGIES) for arg in ("-s", name)), "--exchange", exchange,
                 "--symbols", ",".join(symbols), "--timeframe", timeframe, "--trials", "12", "--wf-trials", "5",
                 "--wf-windows", "3", "--permutations", "20", "--top", "2", "--min-trades", "5",
                 *(("--to", str(until)) if until is not None else ()))
    if subprocess.run(train).returncode != 0:
        raise fail("training on the demo history failed (its error is above)")
    with psycopg.connect(settings.database.url, connect_timeout=10) as conn:
        account = control.ensure_account(conn, DEMO_ACCOUNT, DEMO_ACTIVE * DEMO_ALLOCATION * 2)
        conn.commit()
        best = conn.execute(
            f"""
            SELECT id FROM trained_configurations
            WHERE exchange = %s AND timeframe = %s AND symbols <@ %s
              AND (%s::bigint IS NULL OR data_end <= TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 millisecond')
            ORDER BY is_active DESC, {STAGE_RANK} DESC, (in_sample_metrics ->> 'sharpe')::float DESC NULLS LAST, id
            LIMIT %s
            """,
            (exchange, timeframe, symbols, until, until, DEMO_ACTIVE),
        ).fetchall()
        publish = control.kafka_publisher(settings)
        chosen = [configuration_id for (configuration_id,) in best]
        active = control.list_configurations(conn, active_only=True)
        try:
            for row in active:
                if row["account_id"] == account.account_id and row["id"] not in chosen:
                    control.deactivate(conn, row["id"], publish, on_deactivate="close")
                    console.print(f"deactivated {row['id'][:8]} ({row['strategy']} on {row['exchange']} "
                                  f"{row['timeframe']}): the demo account now trades the {exchange} feed")
            for configuration_id in set(chosen) - {row["id"] for row in active}:
                control.activate(conn, configuration_id, publish, account_id=account.account_id,
                                 allocation=DEMO_ALLOCATION)
        except control.ControlError as exc:
            raise fail(f"activating the demo configurations failed: {exc}") from exc
        console.print(f"paper trading {len(chosen)} configurations on account {account.account_id}")


def _feed_args(settings: Settings, feed: str, exchange: str, symbols: list[str], speed: float,
               held_out: int | None) -> list[str]:
    args = ["data", "feed", "--source", feed, "--exchange", exchange, "--symbols", ",".join(symbols),
            "--speed", str(speed)]
    if feed == "synth":
        args += ["--start", str(_synthetic_start(settings, exchange, symbols))]
    elif feed == "replay":
        args += ["--timeframe", REPLAY_TIMEFRAME, "--resume", *(("--since", str(held_out)) if held_out else ())]
    return args


def run(
    feed: str = typer.Option("replay", help="tick source: replay (the held-out demo history), synth or ccxt"),
    symbols: str | None = typer.Option(None, help="comma-separated symbols for the feed (default: the feed's own)"),
    exchange: str | None = typer.Option(None, help="exchange the feed's instruments are keyed under"),
    speed: float | None = typer.Option(None, min=0.0, help="event-time speed of a replay or synthetic feed "
                                       "(1200 = twenty hours per minute)"),
    seconds: float = typer.Option(0.0, "--for", min=0.0, help="stop after this many seconds (0 = until Ctrl-C)"),
    skip_import: bool = typer.Option(False, help="do not import the demo history in data/demo"),
    skip_paper: bool = typer.Option(False, help="no training or paper trading in the demo"),
    exchange_url: str | None = typer.Option(None, hidden=True, help="ccxt: send every exchange request here"),
) -> None:
    """Run the full stack with the demo: Kafka, PostgreSQL, demo data, the workers, a tick feed and the API.

    The default replay feed plays the newest `REPLAY_HELD_OUT_DAYS` of the demo's hourly history, which training
    never sees, to configurations trained on what came before; `synth` trades a synthetic live market, `ccxt` a
    real exchange's live trades (where the network allows), with configurations trained on its backfilled candles.
    """
    import uvicorn
    from aiokafka.errors import KafkaError

    from api.app import create_app
    from tradepulse.commands.data import parse_symbols
    from tradepulse.db import MigrationError
    from tradepulse.logs import configure_logging
    from tradepulse.settings import get_settings
    from tradepulse.stack import Stack, StackError

    if feed not in FEED_DEFAULTS:
        raise typer.BadParameter(f"expected {', '.join(FEED_DEFAULTS)}", param_hint="--feed")
    default_exchange, default_symbols, default_speed = FEED_DEFAULTS[feed]
    names = parse_symbols(symbols or default_symbols)
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    configure_logging()
    settings = get_settings()
    exchange = exchange or default_exchange or settings.exchange
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
    held_out = _held_out_start(settings, exchange, names) if feed == "replay" else None
    exchange_args = ("--api-url", exchange_url) if exchange_url else ()
    if feed == "ccxt" and not skip_paper:
        _backfill(exchange, names, exchange_args)

    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    launched: list[ChildProcess] = []
    with ExitStack() as children:
        def start(name: str, command: list[str], child_env: dict[str, str] = env) -> ChildProcess:
            child = ChildProcess(name, command, log_dir, child_env)
            children.callback(child.stop)
            launched.append(child)
            console.print(f"started {name} (pid {child.process.pid}, log {child.log_path})")
            return child

        worker = start("worker", _cli("worker", "--role", "trading"))
        # the store's writers apart from the trading path (see `tradepulse worker --role`); one web server is enough
        start("sinks", _cli("worker", "--role", "sinks"), {**env, "TRADEPULSE_WORKER__WEB_PORT": "0"})
        if not skip_paper:
            if feed == "synth":
                _publish_synthetic_history(settings, exchange, names, worker)
            timeframe = {"synth": SYNTH_TIMEFRAME}.get(feed, REPLAY_TIMEFRAME)
            _train_and_activate(settings, exchange, names, timeframe, held_out)
        feed_args = _feed_args(settings, feed, exchange, names, default_speed if speed is None else speed, held_out)
        feed_child = start("feed", _cli(*feed_args, *(exchange_args if feed == "ccxt" else ())))
        feed_child.may_finish = feed == "replay"
        base = f"http://{settings.api.host}:{settings.api.port}"
        console.print(Panel.fit(
            f"API        {base}/docs\nhealth     {base}/health\n"
            f"candles    {base}/api/market/candles?exchange={exchange}&symbol={names[0]}&timeframe=1h\n"
            f"portfolio  {base}/api/portfolio?account=paper-{DEMO_ACCOUNT}\n"
            f"trades     {base}/api/trades?account=paper-{DEMO_ACCOUNT}\n"
            f"strategies {base}/api/strategies/performance\n"
            "Ctrl-C stops the workers, the feed and the API; `tradepulse stack down` stops Kafka and PostgreSQL.",
            title="TradePulse is running",
        ))
        server = uvicorn.Server(uvicorn.Config(
            create_app(settings), host=settings.api.host, port=settings.api.port, log_config=None
        ))
        with suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after its shutdown: a normal stop here
            asyncio.run(_serve(server, seconds, launched))
        died = [child.name for child in launched if child.died()]
    console.print("stopped the workers, the feed and the API")
    if died:
        raise fail(f"{', '.join(died)} stopped unexpectedly; see the logs in {log_dir}")


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM (a service manager, a test's terminate) stops `run` as Ctrl-C does, children included; without
    this a SIGTERM during training or start-up would end `run` and leave the worker and the feed running."""
    raise KeyboardInterrupt


def _backfill(exchange: str, symbols: list[str], exchange_args: tuple[str, ...]) -> None:
    """The live exchange's recent hourly candles (resumable), which the ccxt demo trains on."""
    now = int(time.time() * 1000)
    since = now - now % TIMEFRAMES[REPLAY_TIMEFRAME] - CCXT_HISTORY_DAYS * DAY_MS
    console.print(f"backfilling {CCXT_HISTORY_DAYS} days of {REPLAY_TIMEFRAME} candles from {exchange}…")
    backfill = _cli("data", "backfill", "--exchange", exchange, "--symbols", ",".join(symbols), "--timeframe",
                    REPLAY_TIMEFRAME, "--since", str(since), *exchange_args)
    if subprocess.run(backfill).returncode != 0:
        raise fail(f"backfilling from {exchange} failed (its error is above); is the exchange reachable?")


async def _serve(server: uvicorn.Server, seconds: float, children: list[ChildProcess]) -> None:
    """Serve the API while watching the children; stop when one dies or when `seconds` have passed."""
    deadline = time.monotonic() + seconds if seconds else None

    async def watchdog() -> None:
        finished: set[str] = set()
        while not server.should_exit:
            await asyncio.sleep(0.5)
            for child in children:
                if child.died():
                    logger.error("%s exited with code %s; see %s", child.name, child.process.returncode, child.log_path)
                    server.should_exit = True
                elif child.process.poll() is not None and child.name not in finished:
                    finished.add(child.name)
                    logger.info("%s finished; the API and the other processes go on", child.name)
            if deadline is not None and time.monotonic() >= deadline:
                server.should_exit = True

    await asyncio.gather(server.serve(), watchdog())
