"""The FastAPI application factory: the pool lives for the app's lifetime, settings come from a dependency."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from agents.strategies import load_strategy_modules
from api.routers import health, market, trading
from tradepulse import __version__
from tradepulse.db import create_pool
from tradepulse.logs import redact_url
from tradepulse.settings import Settings, get_settings

logger = logging.getLogger(__name__)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A request that needs the store while it is down gets a 503 to retry, not a 500."""
    logger.warning("%s %s: database unavailable: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": "database unavailable; retry shortly"},
        headers={"Retry-After": "5"},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; `settings` overrides the environment (tests, embedded runs)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        active = settings or get_settings()
        load_strategy_modules(active.strategy_modules)
        with create_pool(active, wait=False) as pool:
            app.state.pool = pool
            logger.info("API ready on the store at %s", redact_url(active.database.url))
            yield

    app = FastAPI(
        title="TradePulse API",
        version=__version__,
        description="Market data, strategies, paper and live trading over the TradePulse log and store.",
        lifespan=lifespan,
    )
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.include_router(health.router)
    app.include_router(market.router)
    app.include_router(trading.router)
    return app
