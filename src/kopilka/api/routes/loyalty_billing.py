"""The tenant's loyalty module, switched on and off (SPEC P-9), exported and purged (C-7).

Owners only. A purge takes two calls: ``POST …/purge-requests`` (loyalty must be off)
answers with a secret good once for ten minutes, and ``POST …/purge`` brings it back
with the tenant's short name typed out. Switching off was the first confirmation.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from kopilka.api.deps import EngineDep, Principal, require_roles
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.billing import (
    PURGE_REQUEST_TTL,
    PurgeConfirmation,
    export_loyalty,
    loyalty_status,
    purge_loyalty,
    request_purge,
    set_loyalty_enabled,
    snapshot,
)
from kopilka.tenancy.actions import get_tenant

router = APIRouter(prefix=f"{API_PREFIX}/loyalty/billing", tags=["loyalty billing"])
OwnerPrincipal = Annotated[Principal, Depends(require_roles("owner"))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BillingStatusOut(BaseModel):
    enabled: bool = Field(description="whether the POS gateway serves this tenant's cards")
    rows: dict[str, int] = Field(description="loyalty rows by table: what a purge removes")
    total_rows: int
    crossing_accounts: list[int] = Field(
        description="accounts outside loyalty that loyalty transfers moved; a purge is "
        "refused while there are any"
    )


class PurgeRequestOut(BaseModel):
    token: str = Field(description="bring it back to `POST …/purge`; shown once")
    expires_at: datetime
    confirm_with: str = Field(description="the tenant's short name, to be typed back")


class PurgeIn(Strict):
    token: str = Field(min_length=1, max_length=100)
    tenant: str = Field(min_length=1, max_length=64, description="the tenant's short name")


class PurgeOut(BaseModel):
    removed: dict[str, int] = Field(description="rows removed, by table")
    total_rows: int


def _status(engine: EngineDep, tenant_id: int) -> BillingStatusOut:
    with read_only(engine) as conn:
        status = loyalty_status(conn, tenant_id)
    return BillingStatusOut(
        enabled=status.enabled,
        rows=status.rows,
        total_rows=status.total_rows,
        crossing_accounts=list(status.crossing_accounts),
    )


@router.get("", responses=problem_responses(401, 403, 503))
def get_status(principal: OwnerPrincipal, engine: EngineDep) -> BillingStatusOut:
    """Whether loyalty is on, and how much loyalty data the tenant has."""
    return _status(engine, principal.tenant_id)


def _switch(principal: Principal, engine: EngineDep, enabled: bool) -> BillingStatusOut:
    run_transaction(
        engine,
        lambda conn: set_loyalty_enabled(
            conn, tenant_id=principal.tenant_id, enabled=enabled, actor=principal.actor
        ),
    )
    return _status(engine, principal.tenant_id)


@router.post("/enable", responses=problem_responses(401, 403, 503))
def enable(principal: OwnerPrincipal, engine: EngineDep) -> BillingStatusOut:
    """Switch the loyalty module on: the POS gateway serves cards again."""
    return _switch(principal, engine, True)


@router.post("/disable", responses=problem_responses(401, 403, 503))
def disable(principal: OwnerPrincipal, engine: EngineDep) -> BillingStatusOut:
    """Switch the loyalty module off: the POS gateway refuses every card request
    (`loyalty_module_disabled`); the data stay until purged."""
    return _switch(principal, engine, False)


@router.get(
    "/export",
    response_class=FileResponse,
    responses={
        **problem_responses(401, 403, 503),
        200: {"content": {"application/zip": {}}, "description": "the zip"},
    },
)
def export(principal: OwnerPrincipal, engine: EngineDep) -> FileResponse:
    """All the tenant's loyalty data as a zip: a JSON-lines file per table and
    `manifest.json` (row counts, SHA-256 of each file, one checksum)."""
    handle, path = tempfile.mkstemp(prefix="kopilka-loyalty-", suffix=".zip")
    try:
        with os.fdopen(handle, "wb") as out, snapshot(engine) as conn:
            slug = get_tenant(conn, principal.tenant_id).slug
            export_loyalty(conn, principal.tenant_id, out)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"loyalty-{slug}-{utcnow():%Y%m%d-%H%M%S}.zip",
        background=BackgroundTask(os.unlink, path),
    )


@router.post("/purge-requests", status_code=201, responses=problem_responses(401, 403, 422, 503))
def post_purge_request(principal: OwnerPrincipal, engine: EngineDep) -> PurgeRequestOut:
    """The first step of a purge; refused (`loyalty_still_enabled`) while loyalty is on.
    The token is good once, for the same owner, for a few minutes."""
    request = run_transaction(
        engine,
        lambda conn: request_purge(conn, tenant_id=principal.tenant_id, actor=principal.actor),
    )
    assert request.expires_at <= utcnow() + PURGE_REQUEST_TTL
    return PurgeRequestOut(
        token=request.token, expires_at=request.expires_at, confirm_with=request.confirm_with
    )


@router.post("/purge", responses=problem_responses(401, 403, 422, 503))
def purge(body: PurgeIn, principal: OwnerPrincipal, engine: EngineDep) -> PurgeOut:
    """Remove all the tenant's loyalty data, at once and for good; nothing else of the
    tenant is touched, and the audit log records what went. Export it first."""
    report = run_transaction(
        engine,
        lambda conn: purge_loyalty(
            conn,
            tenant_id=principal.tenant_id,
            confirmation=PurgeConfirmation(body.token, body.tenant),
            actor=principal.actor,
        ),
    )
    return PurgeOut(removed=report.removed, total_rows=report.total_rows)
