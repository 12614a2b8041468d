"""Units: the tenant's currencies and point types."""

from __future__ import annotations

from fastapi import APIRouter, status

from kopilka.api.deps import CurrentPrincipal, EngineDep, ManagerPrincipal
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.schemas import UnitIn, UnitList, UnitOut, unit_out
from kopilka.core.db import read_only
from kopilka.ledger.accounts import create_unit, list_units
from kopilka.ledger.posting import run_transaction

router = APIRouter(prefix=f"{API_PREFIX}/units", tags=["units"])


@router.get("", responses=problem_responses(401, 503))
def get_units(principal: CurrentPrincipal, engine: EngineDep) -> UnitList:
    """Every unit of the tenant, by code."""
    with read_only(engine) as conn:
        return UnitList(items=[unit_out(u) for u in list_units(conn, principal.tenant_id)])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422, 503),
)
def post_unit(body: UnitIn, principal: ManagerPrincipal, engine: EngineDep) -> UnitOut:
    """Enable an ISO 4217 currency or define a point unit (owner, administrator)."""
    unit = run_transaction(
        engine,
        lambda conn: create_unit(
            conn,
            tenant_id=principal.tenant_id,
            code=body.code,
            kind=body.kind,
            name=body.name,
            exponent=body.exponent,
            actor=principal.actor,
        ),
    )
    return unit_out(unit)
