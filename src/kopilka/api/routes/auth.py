"""Staff sign-in for the API: a password for a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from sqlalchemy import Connection

from kopilka.api.deps import EngineDep
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.schemas import TokenIn, TokenOut
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import actor_for_user, issue_staff_token
from kopilka.tenancy.sessions import authenticate_throttled

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])


@router.post(
    "/token",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 422, 429, 503),
)
def issue_token(body: TokenIn, request: Request, engine: EngineDep) -> TokenOut:
    """Exchange a staff login and password for a bearer token (`kps_…`)."""
    source_ip = request.client.host if request.client else None

    user = authenticate_throttled(
        engine,
        tenant_slug=body.tenant,
        login=body.login,
        password=body.password,
        source_ip=source_ip,
    )

    def work(conn: Connection) -> TokenOut:
        secret, expires_at = issue_staff_token(
            conn, user=user, actor=actor_for_user(user, source_ip)
        )
        request.state.tenant_id = user.tenant_id
        request.state.actor = f"user:{user.id}"
        return TokenOut(access_token=secret, expires_at=expires_at)

    return run_transaction(engine, work)
