"""Operations, outside ``/api/v1`` and without auth: liveness, readiness, metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from kopilka.api.deps import EngineDep
from kopilka.api.problems import problem_responses, service_unavailable
from kopilka.api.schemas import StatusOut
from kopilka.core.migrate import is_current

router = APIRouter(tags=["operations"])
log = logging.getLogger("kopilka.api")


@router.get("/healthz")
async def healthz() -> StatusOut:
    """The process is alive (it does not look at the database)."""
    return StatusOut(status="ok")


@router.get("/readyz", response_model=StatusOut, responses=problem_responses(503))
def readyz(request: Request, engine: EngineDep) -> Response:
    """The database answers and its schema is at the latest migration."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = is_current(engine)
    except SQLAlchemyError as error:
        log.warning("not ready: %s", type(error).__name__)
        return service_unavailable(request.url.path, "the database cannot be reached")
    if not current:
        return service_unavailable(
            request.url.path,
            "the database schema is not at the latest migration; run 'kopilka db upgrade'",
        )
    return JSONResponse({"status": "ok"})


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
