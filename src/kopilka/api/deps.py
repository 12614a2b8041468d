"""What every route may ask for: the engine, the caller, an idempotency key, a page.

The caller is a ``Principal``: a staff user (bearer token ``kps_…``) or a POS terminal
(bearer key ``kpt_…``), always bound to one tenant. Every query a route makes is scoped
to ``principal.tenant_id``; another tenant's ids simply do not exist for it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from kopilka.api.problems import ApiErrorCode
from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.errors import (
    CommonErrorCode,
    Forbidden,
    InvalidInput,
    KopilkaError,
    Unauthenticated,
)
from kopilka.ledger.error_codes import LedgerErrorCode
from kopilka.ledger.posting import MAX_KEY_LENGTH
from kopilka.loyalty.billing import is_loyalty_enabled
from kopilka.loyalty.programs import LoyaltyErrorCode
from kopilka.tenancy.actions import (
    STAFF_TOKEN_PREFIX,
    TERMINAL_KEY_PREFIX,
    actor_for_terminal,
    actor_for_user,
    resolve_staff_token,
    sign_in_terminal_cached,
)

TERMINAL_ROLE = "terminal"
# Ids are 64-bit; a larger number is refused as malformed rather than sent to the database.
MAX_ID = 2**63 - 1
MANAGERS = ("owner", "administrator")
EVERYONE = ("owner", "administrator", "cashier", "front_desk", TERMINAL_ROLE)


def engine_of(request: Request) -> Engine:
    engine = request.app.state.engine
    assert isinstance(engine, Engine)
    return engine


# The dependencies here are coroutines: FastAPI runs a plain function in its thread pool, a
# hand-off per dependency that costs more than their work (and, with several at once, the
# threads' contention for the GIL). The one query a sign-in may make runs on the loop.
async def get_engine(request: Request) -> Engine:
    return engine_of(request)


EngineDep = Annotated[Engine, Depends(get_engine)]


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: int
    actor: Actor
    role: str  # owner, administrator, cashier, front_desk or terminal
    # The tenant's loyalty switch, read with a terminal's key (None: not read yet).
    loyalty_enabled: bool | None = None

    @property
    def label(self) -> str:
        return f"{self.actor.type.value}:{self.actor.id}"


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A staff token (`kps_…`, from `POST /api/v1/auth/token`) or a terminal key "
    "(`kpt_…`).",
)


def _not_authenticated(detail: str) -> Unauthenticated:
    return Unauthenticated(CommonErrorCode.NOT_AUTHENTICATED, detail)


async def get_principal(
    request: Request,
    engine: EngineDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _not_authenticated("send 'Authorization: Bearer <staff token or terminal key>'")
    token = credentials.credentials.strip()
    source_ip = request.client.host if request.client else None
    principal: Principal | None = None
    if token.startswith(STAFF_TOKEN_PREFIX):
        with read_only(engine) as conn:
            user = resolve_staff_token(conn, token)
        if user is not None:
            principal = Principal(user.tenant_id, actor_for_user(user, source_ip), user.role)
    elif token.startswith(TERMINAL_KEY_PREFIX):
        signed_in = sign_in_terminal_cached(engine, token)
        if signed_in is not None:
            terminal = signed_in.terminal
            principal = Principal(
                terminal.tenant_id,
                actor_for_terminal(terminal, source_ip),
                TERMINAL_ROLE,
                signed_in.loyalty_enabled,
            )
    if principal is None:
        raise _not_authenticated("the token or key is unknown, expired or revoked")
    assert principal.role in EVERYONE
    # The access log line names who asked.
    request.state.tenant_id = principal.tenant_id
    request.state.actor = principal.label
    return principal


def require_roles(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    assert roles and all(role in EVERYONE for role in roles)

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles:
            raise Forbidden(
                CommonErrorCode.FORBIDDEN,
                f"the role {principal.role!r} may not do this; it needs one of {', '.join(roles)}",
                role=principal.role,
            )
        return principal

    return check


async def require_loyalty_enabled(
    principal: Annotated[Principal, Depends(get_principal)], engine: EngineDep
) -> Principal:
    """Refuses every request of a tenant whose loyalty module is off (SPEC P-9).

    For the POS gateway's routers. A terminal's switch came with its key's query, so this
    costs the hot path nothing; for staff it is one more query.
    """
    enabled = principal.loyalty_enabled
    if enabled is None:
        with read_only(engine) as conn:
            enabled = is_loyalty_enabled(conn, principal.tenant_id)
    if not enabled:
        raise Forbidden(
            LoyaltyErrorCode.LOYALTY_MODULE_DISABLED,
            "the loyalty module of this tenant is switched off: cards can be neither looked "
            "up nor charged until the tenant switches it on again",
        )
    return principal


# Anyone signed in to the tenant: staff of every role and terminals.
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
# Owners and administrators: configuration (units, accounts, credit limits).
ManagerPrincipal = Annotated[Principal, Depends(require_roles(*MANAGERS))]


def get_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Required on every money-moving POST: a client-chosen key, 1 to "
            f"{MAX_KEY_LENGTH} characters. A repeat with the same body answers with the first "
            "reply (and `Idempotent-Replayed: true`); with another body, 409.",
        ),
    ] = None,
) -> str:
    if idempotency_key is None or not idempotency_key.strip():
        raise KopilkaError(
            CommonErrorCode.IDEMPOTENCY_KEY_REQUIRED,
            "this request moves money; send an 'Idempotency-Key' header so a retry "
            "cannot post it twice",
        )
    if len(idempotency_key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            LedgerErrorCode.INVALID_IDEMPOTENCY_KEY,
            f"an idempotency key has at most {MAX_KEY_LENGTH} characters",
        )
    return idempotency_key


IdempotencyKey = Annotated[str, Depends(get_idempotency_key)]


AccountId = Annotated[int, Path(ge=1, le=MAX_ID)]
TransferId = Annotated[int, Path(ge=1, le=MAX_ID)]
HoldId = Annotated[int, Path(ge=1, le=MAX_ID)]


# --------------------------------------------------------------------------- pages

MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    after_id: int | None  # None: from the start


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "id" or not (number.isascii() and number.isdigit()):
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidInput(
            ApiErrorCode.INVALID_CURSOR,
            "the cursor is not one this API gave out; pass next_cursor from a previous page",
        ) from error


def get_page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page")
    ] = None,
) -> Page:
    return Page(limit, decode_cursor(cursor) if cursor else None)


PageDep = Annotated[Page, Depends(get_page)]
