"""The API over the real store and broker: health and candles, including its answers to bad requests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from streams.records import SCHEMA_VERSION, Candle, stable_id
from tradepulse.db import connect
from tradepulse.settings import Settings
from tradepulse.store import upsert_candles

HOUR = 3_600_000
START = 1_561_939_200_000  # 2019-07-01T00:00:00Z


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def hourly(count: int) -> list[Candle]:
    return [
        Candle(
            event_id=stable_id("candle", "bitfinex", "BTC/USD", "1h", START + i * HOUR), ts=START + i * HOUR,
            schema_version=SCHEMA_VERSION, exchange="bitfinex", symbol="BTC/USD", timeframe="1h",
            open=10_000.0 + i, high=10_050.0 + i, low=9_950.0 + i, close=10_010.0 + i, volume=5.0 + i, trades=i,
        )
        for i in range(count)
    ]


def test_candles_come_back_in_order_within_the_range(settings: Settings, client: TestClient) -> None:
    with connect(settings) as conn:
        upsert_candles(conn, hourly(48))
    response = client.get("/api/market/candles", params={
        "exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "1h",
        "from": "2019-07-01T10:00:00Z", "to": "2019-07-02T00:00:00Z",
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 14
    assert [c["open"] for c in body["candles"]] == [10_000.0 + i for i in range(10, 24)]
    assert body["candles"][0]["ts"].startswith("2019-07-01T10:00:00")

    latest = client.get("/api/market/candles", params={
        "exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "1h", "limit": 5,
    }).json()
    assert [c["open"] for c in latest["candles"]] == [10_000.0 + i for i in range(43, 48)]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"exchange": "bitfinex", "symbol": "BTC/USD", "timeframe": "7m"}, 422, "timeframe"),
        ({"exchange": "bitfinex", "timeframe": "1h"}, 422, "symbol"),
        ({"exchange": "bitfinex", "symbol": "BTC/USD", "from": "yesterday-ish"}, 422, "from"),
        ({"exchange": "bitfinex", "symbol": "BTC/USD", "limit": 0}, 422, "limit"),
        ({"exchange": "bitfinex", "symbol": "BTC/USD", "from": "2019-07-02", "to": "2019-07-01"}, 400,
         "'from' must be earlier than 'to'"),
    ],
)
def test_bad_candle_requests_get_a_clear_4xx(
    client: TestClient, params: dict[str, object], status: int, message: str
) -> None:
    response = client.get("/api/market/candles", params=params)
    assert response.status_code == status
    assert message in response.text


def test_health_reports_each_component_and_is_503_without_a_live_worker(
    settings: Settings, client: TestClient
) -> None:
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["broker"]["ok"] and body["database"]["ok"]
    assert body["workers"] == []

    with connect(settings) as conn:
        conn.execute(
            "INSERT INTO worker_heartbeats (worker_id, host, pid, started_at, last_seen, stats)"
            " VALUES (%s, %s, %s, now(), now(), %s::jsonb)",
            ("w-1", socket.gethostname(), os.getpid(), '{"ticks": 10}'),
        )
    healthy = client.get("/health")
    assert healthy.status_code == 200
    assert healthy.json()["status"] == "ok"
    assert healthy.json()["workers"][0]["stats"] == {"ticks": 10}

    with connect(settings) as conn:
        conn.execute("""UPDATE worker_heartbeats SET stats = '{"running": false, "ticks": 12}'::jsonb""")
    stopped = client.get("/health")
    assert stopped.status_code == 503
    assert stopped.json()["workers"][0]["alive"] is False


def test_health_names_the_broker_when_it_is_unreachable(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    broken = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{dead_port}"})
    })
    with TestClient(create_app(broken)) as test_client:
        response = test_client.get("/health")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False
    assert response.json()["database"]["ok"] is True


def test_openapi_documents_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/api/market/candles"} <= set(paths)


def test_the_api_starts_without_its_database_and_answers_503(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    no_database = settings.model_copy(update={"database": settings.database.model_copy(update={
        "url": f"postgresql://tradepulse:tradepulse@127.0.0.1:{dead_port}/tradepulse"
    })})
    with TestClient(create_app(no_database)) as test_client:
        candles = test_client.get("/api/market/candles", params={"exchange": "kraken", "symbol": "BTC/USDT"})
        health = test_client.get("/health")
    assert candles.status_code == 503
    assert candles.json() == {"detail": "database unavailable; retry shortly"}
    assert health.status_code == 503
    assert health.json()["database"]["ok"] is False and health.json()["broker"]["ok"] is True
