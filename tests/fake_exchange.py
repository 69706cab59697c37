"""A fake exchange on 127.0.0.1 that speaks binance's public spot API, for the real ccxt classes to talk to.

Endpoints: `/api/v3/exchangeInfo` (and empty futures `exchangeInfo`s, which ccxt also loads), `/api/v3/klines`,
`/api/v3/aggTrades`, and the `/ws` trade stream. ccxt is pointed at it with `create_exchange(..., api_url=url)`,
which rewrites every entry of the exchange's `urls['api']`.

It behaves like the real thing where the tests need it to: klines honour `startTime`/`endTime`/`limit` but never
return more than `page_limit` rows (so a client must paginate), the newest candle may still be open, unknown
symbols get binance's `-1121 Invalid symbol` error. Faults are injected on demand: an HTTP status (429 rate limit,
another 4xx refusal, 5xx) or a dropped connection for the next N requests to a path, and `drop_websockets()` cuts
every stream.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from aiohttp import WSMsgType, web

from streams.records import TIMEFRAMES

PORTS = range(26_000, 27_000)
DROP = 0
"""`fail(DROP, ...)`: close the connection without answering."""


@dataclass
class Fault:
    status: int
    path: str
    remaining: int
    skip: int = 0


@dataclass(frozen=True)
class Trade:
    id: int
    ts: int
    price: float
    amount: float


def free_port() -> int:
    """A free port of the scratch range."""
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def market_id(symbol: str) -> str:
    return symbol.replace("/", "")


class FakeBinance:
    """The server and its data; thread-safe so tests can change data and faults while clients run."""

    def __init__(self, *, page_limit: int = 1000) -> None:
        self.page_limit = page_limit
        self.candles: dict[str, list[tuple[int, float, float, float, float, float]]] = {}
        self.trades: dict[str, list[Trade]] = {}
        self.markets: dict[str, str] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._sockets: dict[web.WebSocketResponse, set[str]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------------------------------------------ set-up

    def add_market(self, symbol: str, candles: Iterable[tuple[int, float, float, float, float, float]] = ()) -> None:
        """A spot market with its 1-minute candles `(ts, open, high, low, close, volume)`."""
        with self._lock:
            self.markets[market_id(symbol)] = symbol
            self.candles[market_id(symbol)] = sorted(candles)
            self.trades.setdefault(market_id(symbol), [])

    def add_trades(self, symbol: str, trades: Iterable[Trade]) -> None:
        """New trades: visible to polling at once and pushed to websocket subscribers."""
        new = list(trades)
        with self._lock:
            self.trades[market_id(symbol)].extend(new)
        stream = f"{market_id(symbol).lower()}@trade"
        for trade in new:
            message = {
                "e": "trade", "E": trade.ts, "s": market_id(symbol), "t": trade.id, "p": str(trade.price),
                "q": str(trade.amount), "T": trade.ts, "m": False, "M": True,
            }
            asyncio.run_coroutine_threadsafe(self._push(stream, message), self._loop).result(5)

    def fail(self, status: int, *, times: int = 1, path: str = "/api/v3/klines", after: int = 0) -> None:
        """Let `after` requests to `path` through, then answer the next `times` with `status` (or drop them, for
        `DROP`)."""
        with self._lock:
            self._faults.append(Fault(status, path, times, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """Faults still to be injected."""
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def drop_websockets(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close_sockets(), self._loop).result(5)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for p, _ in self.requests if p == path)

    @property
    def subscriptions(self) -> int:
        """Streams subscribed over open websockets."""
        return sum(len(streams) for ws, streams in list(self._sockets.items()) if not ws.closed)

    # --------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> str:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fake-exchange", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake exchange did not start")
        return self.url

    def stop(self) -> None:
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> FakeBinance:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        ready.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._faults_middleware])
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/fapi/v1/exchangeInfo", self._empty_exchange_info)
        app.router.add_get("/dapi/v1/exchangeInfo", self._empty_exchange_info)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/aggTrades", self._agg_trades)
        app.router.add_get("/ws/{stream}", self._websocket)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        await self._close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _close_sockets(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        self._sockets.clear()

    # ---------------------------------------------------------------------------------------------- handlers

    @web.middleware
    async def _faults_middleware(self, request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        with self._lock:
            self.requests.append((request.path, dict(request.query)))
            fault = next((f for f in self._faults if f.path == request.path and f.remaining > 0), None)
            if fault is not None and fault.skip > 0:
                fault.skip -= 1
                fault = None
            elif fault is not None:
                fault.remaining -= 1
        if fault is None:
            return await handler(request)
        if fault.status == DROP:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if fault.status == 429:
            return web.json_response({"code": -1003, "msg": "Too many requests."}, status=429)
        if fault.status < 500:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=fault.status)
        return web.Response(status=fault.status, text="Service Unavailable")

    async def _exchange_info(self, request: web.Request) -> web.Response:
        with self._lock:
            markets = dict(self.markets)
        symbols = [
            {
                "symbol": mid, "status": "TRADING", "baseAsset": symbol.split("/")[0],
                "baseAssetPrecision": 8, "quoteAsset": symbol.split("/")[1], "quotePrecision": 8,
                "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": True,
                "ocoAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "permissions": ["SPOT"], "permissionSets": [["SPOT"]],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.00001", "maxPrice": "1000000", "tickSize": "0.00001"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
                ],
            }
            for mid, symbol in markets.items()
        ]
        return web.json_response({"timezone": "UTC", "serverTime": 0, "rateLimits": [], "symbols": symbols})

    async def _empty_exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response({"timezone": "UTC", "serverTime": 0, "rateLimits": [], "symbols": []})

    def _market(self, request: web.Request) -> str:
        mid = request.query.get("symbol", "")
        if mid not in self.markets:
            raise web.HTTPBadRequest(
                text=json.dumps({"code": -1121, "msg": "Invalid symbol."}), content_type="application/json"
            )
        return mid

    async def _klines(self, request: web.Request) -> web.Response:
        mid = self._market(request)
        span = TIMEFRAMES.get(request.query.get("interval", ""))
        if span is None:
            raise web.HTTPBadRequest(
                text=json.dumps({"code": -1120, "msg": "Invalid interval."}), content_type="application/json"
            )
        limit = min(int(request.query.get("limit", 500)), self.page_limit)
        with self._lock:
            rows = _aggregate(self.candles[mid], span)
        if "startTime" in request.query:
            start = int(request.query["startTime"])
            end = int(request.query.get("endTime", 2**62))
            rows = [row for row in rows if start <= row[0] <= end][:limit]
        else:
            rows = rows[-limit:]
        return web.json_response([
            [ts, str(o), str(h), str(lo), str(c), str(v), ts + span - 1, str(v * c), 1, "0", "0", "0"]
            for ts, o, h, lo, c, v in rows
        ])

    async def _agg_trades(self, request: web.Request) -> web.Response:
        mid = self._market(request)
        limit = min(int(request.query.get("limit", 500)), 1000)
        with self._lock:
            trades = list(self.trades[mid])
        if "startTime" in request.query:
            start = int(request.query["startTime"])
            end = int(request.query.get("endTime", 2**62))
            trades = [t for t in trades if start <= t.ts <= end][:limit]
        else:
            trades = trades[-limit:]
        return web.json_response([
            {"a": t.id, "p": str(t.price), "q": str(t.amount), "f": t.id, "l": t.id, "T": t.ts, "m": False, "M": True}
            for t in trades
        ])

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets[ws] = set()
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            if body.get("method") == "SUBSCRIBE":
                self._sockets.get(ws, set()).update(body.get("params", []))
                await ws.send_json({"result": None, "id": body.get("id")})
        self._sockets.pop(ws, None)
        return ws

    async def _push(self, stream: str, message: dict[str, object]) -> None:
        for ws, streams in list(self._sockets.items()):
            if stream in streams and not ws.closed:
                await ws.send_json(message)


def _aggregate(
    rows: list[tuple[int, float, float, float, float, float]], span: int
) -> list[tuple[int, float, float, float, float, float]]:
    """1-minute candles rolled up to `span`."""
    if span == TIMEFRAMES["1m"]:
        return rows
    out: list[tuple[int, float, float, float, float, float]] = []
    for ts, o, h, lo, c, v in rows:
        bucket = ts - ts % span
        if out and out[-1][0] == bucket:
            b, bo, bh, bl, _, bv = out[-1]
            out[-1] = (b, bo, max(bh, h), min(bl, lo), c, bv + v)
        else:
            out.append((bucket, o, h, lo, c, v))
    return out
