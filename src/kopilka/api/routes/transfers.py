"""Transfers: posting, reading back, reversing. Every POST needs an Idempotency-Key."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from kopilka.api import actions
from kopilka.api.deps import (
    CurrentPrincipal,
    EngineDep,
    IdempotencyKey,
    PageDep,
    TransferId,
    encode_cursor,
)
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.schemas import ReverseIn, TransferIn, TransferList, TransferOut, transfer_out
from kopilka.core.db import read_only
from kopilka.ledger.posting import PostedTransfer, get_transfer, run_transaction

router = APIRouter(prefix=f"{API_PREFIX}/transfers", tags=["transfers"])
REPLAYED_HEADER = "Idempotent-Replayed"


def reply(
    request: Request, response: Response, posted: PostedTransfer, replayed: bool
) -> TransferOut:
    """The reply to a posting; a replay differs from the first only by a header."""
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    else:
        request.app.state.metrics.postings.labels(posted.kind).inc()
    return transfer_out(posted)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def post_transfer(
    body: TransferIn,
    principal: CurrentPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    request: Request,
    response: Response,
) -> TransferOut:
    """Post a transfer: a simple move between two accounts, or explicit signed entries."""
    posted, replayed = run_transaction(
        engine,
        lambda conn: actions.post_transfer(
            conn, tenant_id=principal.tenant_id, key=key, body=body, actor=principal.actor
        ),
    )
    return reply(request, response, posted, replayed)


@router.get("", responses=problem_responses(401, 422, 503))
def list_transfers(principal: CurrentPrincipal, engine: EngineDep, page: PageDep) -> TransferList:
    """The tenant's transfers, newest first."""
    with read_only(engine) as conn:
        found = actions.transfer_page(
            conn, principal.tenant_id, before_id=page.after_id, limit=page.limit + 1
        )
    more = len(found) > page.limit
    found = found[: page.limit]
    return TransferList(
        items=[transfer_out(t) for t in found],
        next_cursor=encode_cursor(found[-1].id) if more else None,
    )


@router.get("/{transfer_id}", responses=problem_responses(401, 404, 422, 503))
def read_transfer(
    transfer_id: TransferId, principal: CurrentPrincipal, engine: EngineDep
) -> TransferOut:
    with read_only(engine) as conn:
        return transfer_out(get_transfer(conn, principal.tenant_id, transfer_id))


@router.post(
    "/{transfer_id}/reverse",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def reverse(
    transfer_id: TransferId,
    principal: CurrentPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    request: Request,
    response: Response,
    body: ReverseIn | None = None,
) -> TransferOut:
    """Post the mirror image of a transfer (kind `reversal`); a transfer is reversed once."""
    posted, replayed = run_transaction(
        engine,
        lambda conn: actions.reverse_transfer(
            conn,
            tenant_id=principal.tenant_id,
            transfer_id=transfer_id,
            key=key,
            body=body or ReverseIn(),
            actor=principal.actor,
        ),
    )
    return reply(request, response, posted, replayed)
