"""The trading API over the real store and broker: portfolio, trades, performance views, and the configuration
lifecycle with its answers to bad requests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api.app import create_app
from streams.records import ConfigChange
from streams.replay import read_records
from streams.topics import CONFIGS
from tradepulse import control
from tradepulse.settings import Settings

DAY = "2024-03-01"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def stored(settings: Settings) -> None:
    """An account, two configurations, three closed trades, snapshots and an open position."""
    with psycopg.connect(settings.database.url) as conn:
        control.create_account(conn, "alice", 50_000.0)
        for config_id, params in (("cfg-a", {"fast": 5, "slow": 20}), ("cfg-bad", {"fast": 30, "slow": 20})):
            conn.execute(
                "INSERT INTO trained_configurations (id, strategy, params, exchange, symbols, timeframe, account_id, "
                "allocation, stage) VALUES (%s, 'sma_cross', %s, 'kraken', ARRAY['BTC/USDT'], '1h', 'paper-alice', "
                "10000, 'VALIDATION')", (config_id, Jsonb(params)))
        for i, pnl in enumerate((120.0, -40.0, 10.0)):
            conn.execute(
                "INSERT INTO trades (trade_id, configuration_id, account_id, exchange, symbol, side, quantity, "
                "entry_ts, entry_price, exit_ts, exit_price, pnl, fees, exit_reason) VALUES (%s, 'cfg-a', "
                "'paper-alice', 'kraken', 'BTC/USDT', 'long', 0.1, %s::timestamptz, 60000, "
                "%s::timestamptz, 61000, %s, 2.5, 'signal')",
                (f"t{i}", f"{DAY} 0{i}:00+00", f"{DAY} 0{i}:30+00", pnl))
        for sid, config, equity in (("s1", "cfg-a", 10_090.0), ("s2", None, 10_090.0)):
            conn.execute(
                "INSERT INTO portfolio_history (snapshot_id, ts, account_id, configuration_id, cash, equity, "
                "realized_pnl, unrealized_pnl, positions) VALUES (%s, %s::timestamptz, 'paper-alice', %s, 4000, %s, "
                "90, 0, %s)", (sid, f"{DAY} 03:00+00", config, equity, Jsonb({"kraken:BTC/USDT": 0.1})))
        conn.execute(
            "INSERT INTO positions (account_id, configuration_id, exchange, symbol, quantity, avg_entry_price, "
            "stop_loss, take_profit, opened_at) VALUES ('paper-alice', 'cfg-a', 'kraken', 'BTC/USDT', 0.1, 60900, "
            "59000, NULL, %s::timestamptz)", (f"{DAY} 02:00+00",))


def test_portfolio_trades_and_performance(client: TestClient, stored: None) -> None:
    body = client.get("/api/portfolio", params={"account": "paper-alice"}).json()
    assert body["account"]["equity"] == 10_090.0 and body["account"]["configuration_id"] is None
    assert [c["configuration_id"] for c in body["configurations"]] == ["cfg-a"]
    assert body["positions"][0]["quantity"] == 0.1 and body["positions"][0]["stop_loss"] == 59_000.0
    trades = client.get("/api/trades", params={"configuration": "cfg-a"}).json()
    assert [t["trade_id"] for t in trades] == ["t2", "t1", "t0"]
    daily = client.get("/api/strategies/performance", params={"period": "daily"}).json()
    assert len(daily) == 1
    assert (daily[0]["trade_count"], daily[0]["wins"], daily[0]["total_pnl"]) == (3, 2, 90.0)
    assert daily[0]["win_rate"] == pytest.approx(2 / 3)
    hourly = client.get("/api/strategies/performance", params={"period": "hourly"}).json()
    assert sorted(row["total_pnl"] for row in hourly) == [-40.0, 10.0, 120.0]


def test_unknown_account_and_bad_queries_are_4xx(client: TestClient, stored: None) -> None:
    assert client.get("/api/portfolio", params={"account": "paper-nobody"}).status_code == 404
    assert client.get("/api/portfolio").status_code == 422
    assert client.get("/api/strategies/performance", params={"period": "weekly"}).status_code == 422
    assert client.get("/api/trades", params={"limit": 0}).status_code == 422


def test_activation_and_deactivation(settings: Settings, client: TestClient, stored: None) -> None:
    missing = client.post("/api/configurations/cfg-none/activate")
    assert missing.status_code == 404 and "no configuration" in missing.json()["detail"]
    invalid = client.post("/api/configurations/cfg-bad/activate")
    assert invalid.status_code == 422 and "must be shorter" in invalid.json()["detail"]
    too_big = client.post("/api/configurations/cfg-a/activate", json={"allocation": 60_000})
    assert too_big.status_code == 422 and "unallocated" in too_big.json()["detail"]
    assert client.post("/api/configurations/cfg-a/activate", json={"allocation": -1}).status_code == 422
    ok = client.post("/api/configurations/cfg-a/activate", json={"allocation": 5_000})
    assert ok.status_code == 200, ok.text
    assert ok.json()["is_active"] and ok.json()["status"] == "starting" and ok.json()["allocation"] == 5_000
    off = client.post("/api/configurations/cfg-a/deactivate", json={"on_deactivate": "keep"})
    assert off.status_code == 200 and not off.json()["is_active"]
    changes = [c for _, _, c in asyncio.run(read_records(settings, CONFIGS, ConfigChange))]
    assert [(c.configuration_id, c.action, c.on_deactivate) for c in changes] == [
        ("cfg-a", "activate", "close"), ("cfg-a", "deactivate", "keep")]
    assert changes[0].allocation == 5_000
    listed = client.get("/api/configurations", params={"active": "true"}).json()
    assert listed == []
    with psycopg.connect(settings.database.url) as conn:
        bad = conn.execute("SELECT is_active FROM trained_configurations WHERE id = 'cfg-bad'").fetchone()
    assert bad == (False,)  # a refused activation changes nothing
