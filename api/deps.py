"""Request dependencies: settings and the database pool, swappable in tests via `dependency_overrides`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from tradepulse.settings import Settings, get_settings

DB_TIMEOUT_S = 5.0
"""How long a request waits for a database connection before it is answered with 503."""


def get_pool(request: Request) -> ConnectionPool:
    """The pool opened by the app's lifespan."""
    pool: ConnectionPool = request.app.state.pool
    return pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[ConnectionPool, Depends(get_pool)]
