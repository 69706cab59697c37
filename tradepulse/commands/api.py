"""`tradepulse api`: serve the FastAPI app."""

from __future__ import annotations

import typer


def serve(
    host: str | None = typer.Option(None, help="bind address (default from settings: 127.0.0.1)"),
    port: int | None = typer.Option(None, help="port (default from settings: 8000)"),
) -> None:
    """Serve the API and its OpenAPI docs (/docs)."""
    import uvicorn

    from api.app import create_app
    from tradepulse.logs import configure_logging
    from tradepulse.settings import get_settings

    settings = get_settings()
    configure_logging()
    uvicorn.run(
        create_app(settings), host=host or settings.api.host, port=port or settings.api.port, log_config=None
    )
