"""``kopilka serve``: the HTTP API (and web UI) under uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from kopilka.cli.common import CliErrorCode, console, state_of, warn
from kopilka.core.db import make_engine
from kopilka.core.errors import KopilkaError
from kopilka.core.migrate import is_current
from kopilka.core.settings import get_settings

APP_FACTORY = "kopilka.api.app:create_app"


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: KOPILKA_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: KOPILKA_PORT).")
    ] = None,
    reload: Annotated[
        bool, typer.Option(help="Restart when the code changes (development).")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(help="Proxies whose X-Forwarded-* headers are trusted (uvicorn's option)."),
    ] = None,
    nightly: Annotated[
        bool,
        typer.Option(
            help="Run the nightly routine by itself at KOPILKA_NIGHTLY_HOUR (02:00) of each "
            "tenant's time zone, and send fiscal receipts and webhooks as they fall due."
        ),
    ] = True,
) -> None:
    """Run the HTTP API and web UI."""
    state = state_of(ctx)
    if state.database_url:
        # Workers and the reloader build the app in other processes: they read this.
        os.environ["KOPILKA_DATABASE_URL"] = state.database_url
    os.environ["KOPILKA_NIGHTLY_SCHEDULER"] = "true" if nightly else "false"
    get_settings.cache_clear()
    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    try:
        from kopilka.api.app import create_app
    except ImportError as error:
        raise KopilkaError(
            CliErrorCode.API_UNAVAILABLE, f"the HTTP API cannot be loaded: {error}"
        ) from error

    engine = make_engine(settings.database_url)
    try:
        if not is_current(engine):
            warn("the database is not at the newest migration: run `kopilka db upgrade`")
    finally:
        engine.dispose()

    import uvicorn

    base = f"http://{host}:{port}"
    console.print(f"Kopilka on [bold]{base}[/]  (API docs: {base}/api/docs)")
    log_level = settings.log_level.lower()
    if reload or workers > 1:
        # The reloader and the workers import the app themselves, by name.
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            reload=reload,
            workers=workers,
            log_level=log_level,
            forwarded_allow_ips=forwarded_allow_ips,
            access_log=False,  # kopilka.api.access logs every request, as JSON
        )
    else:
        uvicorn.run(
            create_app(settings.database_url),
            host=host,
            port=port,
            log_level=log_level,
            forwarded_allow_ips=forwarded_allow_ips,
            access_log=False,  # kopilka.api.access logs every request, as JSON
        )
