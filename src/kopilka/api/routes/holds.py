"""Holds: reserve, then capture or void. Every POST needs an Idempotency-Key."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from kopilka.api import actions
from kopilka.api.deps import CurrentPrincipal, EngineDep, HoldId, IdempotencyKey
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.routes.transfers import REPLAYED_HEADER, reply
from kopilka.api.schemas import CaptureIn, CaptureOut, HoldIn, HoldOut, hold_out
from kopilka.core.db import read_only
from kopilka.ledger.holds import get_hold
from kopilka.ledger.posting import run_transaction

router = APIRouter(prefix=f"{API_PREFIX}/holds", tags=["holds"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def place_hold(
    body: HoldIn,
    principal: CurrentPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> HoldOut:
    """Reserve an amount of the debit account for a later capture to the credit account.

    A replay answers with the hold as it stands now (it may have been captured since).
    """
    hold = run_transaction(
        engine,
        lambda conn: actions.place(
            conn, tenant_id=principal.tenant_id, key=key, body=body, actor=principal.actor
        ),
    )
    if hold.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return hold_out(hold)


@router.get("/{hold_id}", responses=problem_responses(401, 404, 422, 503))
def read_hold(hold_id: HoldId, principal: CurrentPrincipal, engine: EngineDep) -> HoldOut:
    with read_only(engine) as conn:
        return hold_out(get_hold(conn, principal.tenant_id, hold_id))


@router.post(
    "/{hold_id}/capture",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def capture(
    hold_id: HoldId,
    principal: CurrentPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    request: Request,
    response: Response,
    body: CaptureIn | None = None,
) -> CaptureOut:
    """Post the held amount, or less (the rest is released), as a transfer."""
    hold, posted, replayed = run_transaction(
        engine,
        lambda conn: actions.capture(
            conn,
            tenant_id=principal.tenant_id,
            hold_id=hold_id,
            key=key,
            body=body or CaptureIn(),
            actor=principal.actor,
        ),
    )
    transfer = reply(request, response, posted, replayed)
    return CaptureOut(hold=hold_out(hold), transfer=transfer)


@router.post("/{hold_id}/void", responses=problem_responses(400, 401, 403, 404, 422, 503))
def void(
    hold_id: HoldId,
    principal: CurrentPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> HoldOut:
    """Release the whole hold. Voiding it again answers as the first time."""
    hold = run_transaction(
        engine,
        lambda conn: actions.void(
            conn, tenant_id=principal.tenant_id, hold_id=hold_id, key=key, actor=principal.actor
        ),
    )
    if hold.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return hold_out(hold)
