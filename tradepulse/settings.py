"""One settings class for every process; built on demand, never at import time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    """Where the log lives. `managed` means `tradepulse stack` runs the broker itself."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="", description="namespace prepended to every topic name")
    controller_port: int = 9093
    managed: bool = True
    partitions: int = Field(default=6, ge=1, description="partitions of every instrument-keyed topic")
    heap: str = "512m"
    ready_timeout_s: float = 60.0


class DatabaseSettings(BaseModel):
    """PostgreSQL (with TimescaleDB where installed). `managed` means the stack runs the server itself."""

    url: str = "postgresql://tradepulse:tradepulse@127.0.0.1:5432/tradepulse"
    managed: bool = True
    pool_min: int = 1
    pool_max: int = 8
    ready_timeout_s: float = 60.0


class WorkerSettings(BaseModel):
    """Faust worker tuning; local defaults favour fast joins over WAN tolerance."""

    app_id: str = "tradepulse"
    late_tick_grace_ms: int = Field(default=5_000, ge=0)
    tick_batch_messages: int = Field(default=200, ge=1, description="messages trade_paper takes at once")
    batch_wait_s: float = Field(
        default=0.0, ge=0,
        description="how long trade_paper's partial batch waits for more messages after its first arrived: latency "
                    "added to every tick; messages that arrive while it is busy form the next batch anyway",
    )
    portfolio_batch_wait_s: float = Field(
        default=0.05, ge=0,
        description="how long track_portfolio's partial batch waits: account snapshots are off the tick-to-fill "
                    "path, and a few larger batches at a bar close leave the event loop to trade_paper",
    )
    thread_switch_interval_s: float = Field(
        default=0.0005, gt=0,
        description="how long the event loop's thread may hold the interpreter lock while Faust's consumer thread "
                    "waits for it (Python's default is 0.005; see streams.app.switch_threads_sooner)",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="the worker's event loops (its own and Faust's consumer thread's): uvloop, or asyncio's own "
                    "(see streams.app.use_event_loop)",
    )
    fetch_sessions: bool = Field(
        default=True,
        description="fetch in incremental fetch sessions (KIP-227): each fetch lists only the partitions whose "
                    "offset changed and brings back only those with news (see streams.fetch_sessions)",
    )
    sinks_niceness: int = Field(
        default=10, ge=0, le=19,
        description="CPU niceness of a `--role sinks` worker, so that at a bar close the trading worker gets the "
                    "cores first (see tradepulse.commands.worker.yield_cores_to_trading); 0 leaves it alone",
    )
    own_core: bool = Field(
        default=True,
        description="run a `--role trading` worker's threads on one CPU core that no other trading worker on the "
                    "machine has claimed (see tradepulse.cores); off, the system places them",
    )
    sink_batch_size: int = Field(default=1_000, ge=1)
    sink_flush_s: float = Field(default=0.5, ge=0, description="how long a sink's partial batch waits for more rows")
    session_timeout_s: float = 10.0
    heartbeat_s: float = 2.0
    web_port: int = Field(default=6066, ge=0, description="Faust web server port on 127.0.0.1; 0 turns it off")


class TrainingSettings(BaseModel):
    """Optimisation studies shared through PostgreSQL."""

    heartbeat_s: int = Field(default=10, ge=1, description="how often a running trial reports it is alive")
    grace_s: int = Field(default=30, ge=2, description="silence after which a trial counts as dead and is retried")


class PaperSettings(BaseModel):
    """Paper trading: account-wide limits on new entries (agents.execution.risk.RiskLimits)."""

    max_open_positions: int = Field(default=20, ge=1)
    max_positions_per_symbol: int = Field(default=5, ge=1)
    max_exposure: float = Field(default=1.0, gt=0, description="open notional over account equity")
    daily_loss_limit: float = Field(default=0.05, gt=0, le=1, description="share of the day's starting equity")


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000


class Settings(BaseSettings):
    """All configuration, from `TRADEPULSE_*` environment variables (nested with `__`)."""

    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path(".tradepulse")
    strategy_modules: list[str] = Field(default_factory=list,
                                        description="modules with more strategies, registered at start")
    exchange: str = "kraken"
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()
    training: TrainingSettings = TrainingSettings()
    paper: PaperSettings = PaperSettings()
    api: ApiSettings = ApiSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` or override this dependency."""
    return Settings()
