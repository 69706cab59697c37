"""market_data access on the real PostgreSQL: round trips, idempotent upserts, range reads, speed, retries."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from streams.records import SCHEMA_VERSION, TIMEFRAMES, Candle, stable_id
from tradepulse.db import connect, create_pool, with_retry
from tradepulse.settings import Settings
from tradepulse.store import UPSERT_CHUNK, candle_count, fetch_candles, latest_candle_ts, upsert_candles

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MINUTE = TIMEFRAMES["1m"]


def make_candles(n: int, *, symbol: str = "BTC/USDT", start: int = T0, bump: float = 0.0) -> list[Candle]:
    """n consecutive, valid 1m candles; `bump` shifts every price (a revised copy of the same candles)."""
    candles = []
    for i in range(n):
        ts = start + i * MINUTE
        open_ = 100.0 + (i % 50) + bump
        close = open_ + 0.25
        candles.append(
            Candle(
                event_id=stable_id("candle", "kraken", symbol, "1m", ts), ts=ts, schema_version=SCHEMA_VERSION,
                exchange="kraken", symbol=symbol, timeframe="1m", open=open_, high=close + 1.0, low=open_ - 1.0,
                close=close, volume=1.5 + i % 7, trades=i % 11, source="test",
            )
        )
    return candles


def as_tuples(candles: list[Candle]) -> list[tuple[object, ...]]:
    return [
        (c.event_id, c.ts, c.exchange, c.symbol, c.timeframe, c.open, c.high, c.low, c.close, c.volume, c.trades,
         c.source)
        for c in candles
    ]


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection]:
    with connect(settings) as connection:
        yield connection


def test_round_trip_is_exact(conn: psycopg.Connection) -> None:
    candles = make_candles(30)
    assert upsert_candles(conn, candles) == 30
    conn.commit()
    stored = fetch_candles(conn, "kraken", "BTC/USDT", "1m", T0, T0 + 30 * MINUTE)
    assert as_tuples(stored) == as_tuples(candles)
    stored_ts = conn.execute("SELECT min(ts), max(ts) FROM market_data").fetchone()
    assert stored_ts is not None
    assert [int(t.timestamp() * 1000) for t in stored_ts] == [T0, T0 + 29 * MINUTE]


def test_upsert_is_idempotent_and_applies_revisions(conn: psycopg.Connection) -> None:
    candles = make_candles(100)
    assert upsert_candles(conn, candles) == 100
    assert upsert_candles(conn, candles) == 0  # a replay changes nothing
    assert candle_count(conn, "kraken", "BTC/USDT", "1m") == 100

    revised = make_candles(10, start=T0 + 50 * MINUTE, bump=0.5)
    assert upsert_candles(conn, revised) == 10
    assert candle_count(conn, "kraken", "BTC/USDT", "1m") == 100
    stored = fetch_candles(conn, "kraken", "BTC/USDT", "1m", T0 + 50 * MINUTE, T0 + 60 * MINUTE)
    assert as_tuples(stored) == as_tuples(revised)


def test_duplicates_within_one_batch_keep_the_last(conn: psycopg.Connection) -> None:
    first, second = make_candles(1), make_candles(1, bump=2.0)
    assert upsert_candles(conn, first + second) == 1
    [stored] = fetch_candles(conn, "kraken", "BTC/USDT", "1m", T0, T0 + MINUTE)
    assert stored.open == second[0].open


def test_range_reads_are_half_open_per_instrument_with_newest_limit(conn: psycopg.Connection) -> None:
    upsert_candles(conn, make_candles(60) + make_candles(60, symbol="ETH/USDT"))
    window = fetch_candles(conn, "kraken", "BTC/USDT", "1m", T0 + 10 * MINUTE, T0 + 20 * MINUTE)
    assert [c.ts for c in window] == [T0 + i * MINUTE for i in range(10, 20)]
    assert {c.symbol for c in window} == {"BTC/USDT"}

    newest = fetch_candles(conn, "kraken", "BTC/USDT", "1m", T0, T0 + 60 * MINUTE, limit=5)
    assert [c.ts for c in newest] == [T0 + i * MINUTE for i in range(55, 60)]  # newest five, oldest first

    assert fetch_candles(conn, "kraken", "BTC/USDT", "5m", T0, T0 + 60 * MINUTE) == []
    assert candle_count(conn, "kraken", "ETH/USDT", "1m", T0 + 30 * MINUTE, None) == 30
    assert candle_count(conn, "kraken", "ETH/USDT", "1m", None, T0 + 30 * MINUTE) == 30
    assert candle_count(conn, "kraken", "ETH/USDT", "1m", T0 + 5 * MINUTE, T0 + 7 * MINUTE) == 2


def test_latest_candle_ts(conn: psycopg.Connection) -> None:
    assert latest_candle_ts(conn, "kraken", "BTC/USDT", "1m") is None
    upsert_candles(conn, make_candles(42))
    assert latest_candle_ts(conn, "kraken", "BTC/USDT", "1m") == T0 + 41 * MINUTE
    assert latest_candle_ts(conn, "kraken", "BTC/USDT", "1h") is None


def test_upsert_speed_and_batches_larger_than_one_statement(conn: psycopg.Connection) -> None:
    """10k rows in well under a second; above UPSERT_CHUNK rows the batch spans several statements."""
    candles = make_candles(10_000)
    started = time.perf_counter()
    assert upsert_candles(conn, candles) == 10_000
    conn.commit()
    elapsed = time.perf_counter() - started
    print(f"upsert of 10,000 new candles: {elapsed * 1000:.0f} ms ({10_000 / elapsed:,.0f} rows/s)")
    assert elapsed < 1.0

    started = time.perf_counter()
    assert upsert_candles(conn, candles) == 0
    conn.commit()
    print(f"replay of the same 10,000 candles: {(time.perf_counter() - started) * 1000:.0f} ms")

    larger = make_candles(UPSERT_CHUNK * 2 + 5, symbol="ETH/USDT")
    assert upsert_candles(conn, larger) == len(larger)
    assert candle_count(conn, "kraken", "ETH/USDT", "1m") == len(larger)


def test_a_failed_batch_writes_nothing(conn: psycopg.Connection) -> None:
    good = make_candles(5)
    broken = make_candles(1, start=T0 + 10 * MINUTE)
    broken[0].low = -1.0  # violates the table's CHECK: the whole batch must be refused
    with pytest.raises(psycopg.errors.CheckViolation):
        upsert_candles(conn, good + broken)
    conn.rollback()
    assert candle_count(conn, "kraken", "BTC/USDT", "1m") == 0


def test_with_retry_survives_a_terminated_backend(settings: Settings) -> None:
    """A write whose connection dies (server restart, admin kill) is retried on a healthy pooled connection."""
    candles = make_candles(20)
    attempts: list[int] = []
    with create_pool(settings) as pool, connect(settings, autocommit=True) as admin:

        def write() -> int:
            attempts.append(1)
            with pool.connection() as conn:
                if len(attempts) == 1:  # the backend dies under the first attempt, as in a server restart
                    admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
                return upsert_candles(conn, candles)

        assert with_retry(write, attempts=3, base_delay=0.05) == 20
        assert len(attempts) == 2
        with pool.connection() as conn:
            assert candle_count(conn, "kraken", "BTC/USDT", "1m") == 20
