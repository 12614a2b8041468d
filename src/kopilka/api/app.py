"""The FastAPI application: ``create_app()`` builds one, bound to one database.

Layout of the URL space::

    /api/v1/...            JSON API (bearer auth), OpenAPI at /api/v1/openapi.json
    /api/docs              interactive docs
    /healthz /readyz /metrics   operations, no auth
    /                      the web UI (kopilka.web), /static its files

Layers, outermost first: ``ObserveMiddleware`` (request id, access log, metrics, the
last-resort 500), ``BodyLimitMiddleware`` (a body too long is refused before it is
read), then FastAPI's exception handlers (``kopilka.api.problems``), then the
routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kopilka.api.limits import BodyLimitMiddleware
from kopilka.api.observe import Metrics, ObserveMiddleware
from kopilka.api.problems import install_problem_handlers
from kopilka.api.routes import (
    API_PREFIX,
    accounts,
    auth,
    certificates,
    events,
    farcards,
    fiscal,
    holds,
    hotel,
    loyalty,
    loyalty_billing,
    loyalty_imports,
    loyalty_reports,
    ops,
    payment_types,
    pos,
    processing,
    room_charge,
    subscribers,
    transfers,
    units,
)
from kopilka.core.db import make_engine
from kopilka.core.logging import configure_logging
from kopilka.core.settings import get_settings
from kopilka.events.delivery import WebhookScheduler
from kopilka.fiscal.jobs import ReceiptScheduler
from kopilka.loyalty.scheduler import NightlyScheduler
from kopilka.mail.sender import MailScheduler
from kopilka.subscribers.scheduler import ChargingScheduler
from kopilka.web.app import install_web


def create_app(database_url: str | None = None) -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level, as_json=settings.log_json)
    engine = make_engine(database_url or settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The nightly routine's clock runs in `kopilka serve` only (it turns the setting on),
        # and with it the clocks that send fiscal receipts and webhooks and charge subscribers.
        scheduler = receipts_clock = webhooks_clock = charging_clock = None
        mail_clock: MailScheduler | None = None  # and the clock that sends e-mail
        if settings.nightly_scheduler:
            scheduler = NightlyScheduler(engine, settings.nightly_hour)
            scheduler.start()
            receipts_clock = ReceiptScheduler(engine)
            receipts_clock.start()
            webhooks_clock = WebhookScheduler(engine)
            webhooks_clock.start()
            charging_clock = ChargingScheduler(engine)
            charging_clock.start()
            mail_clock = MailScheduler(engine)
            mail_clock.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if receipts_clock is not None:
                receipts_clock.stop()
            if webhooks_clock is not None:
                webhooks_clock.stop()
            if charging_clock is not None:
                charging_clock.stop()
            if mail_clock is not None:
                mail_clock.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Kopilka API",
        version="1",
        description="Billing and loyalty on one double-entry ledger. Amounts are decimal "
        "strings next to their unit; times are ISO 8601 with an offset; errors are "
        "`application/problem+json` with a stable `code`.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
    )
    app.state.engine = engine
    app.state.metrics = Metrics.create()
    install_problem_handlers(app)
    # A request is matched against the routers in this order, route by route: the ones
    # every terminal calls many times a second come first.
    app.include_router(ops.router)
    app.include_router(pos.router)
    app.include_router(certificates.pos_router)
    app.include_router(payment_types.pos_router)
    app.include_router(farcards.router)
    app.include_router(processing.router)
    app.include_router(room_charge.router)
    for module in (auth, units, accounts, transfers, holds, loyalty, loyalty_billing):
        app.include_router(module.router)
    app.include_router(loyalty_imports.router)
    app.include_router(loyalty_reports.router)
    app.include_router(certificates.router)
    app.include_router(payment_types.router)
    app.include_router(fiscal.router)
    app.include_router(processing.centre_router)
    app.include_router(hotel.router)
    app.include_router(subscribers.router)
    app.include_router(events.router)
    install_web(app)
    # Outermost last: the access log sees every answer, a too-long body's 413 included.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(ObserveMiddleware, metrics=app.state.metrics)
    return app
