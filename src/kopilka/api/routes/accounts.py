"""Accounts: opening them, reading their figures, history and turnovers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import Field
from sqlalchemy import Connection

from kopilka.api.deps import (
    MAX_ID,
    AccountId,
    CurrentPrincipal,
    EngineDep,
    ManagerPrincipal,
    PageDep,
    encode_cursor,
)
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.schemas import (
    AccountIn,
    AccountList,
    AccountOut,
    BalanceOut,
    CreditLimitIn,
    EntryLineList,
    Moment,
    TurnoverOut,
    account_out,
    entry_line_out,
    turnover_out,
)
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.money import parse_amount
from kopilka.ledger.accounts import (
    AccountView,
    create_account,
    find_accounts,
    get_account,
    get_unit,
    set_credit_limit,
)
from kopilka.ledger.balances import balance_at, history, turnovers
from kopilka.ledger.posting import run_transaction

router = APIRouter(prefix=API_PREFIX, tags=["accounts"])

From = Annotated[Moment, Query(alias="from", description="Start of the period, inclusive")]
To = Annotated[Moment, Query(alias="to", description="End of the period, exclusive")]


@router.get("/accounts", responses=problem_responses(401, 422, 503))
def list_accounts(
    principal: CurrentPrincipal,
    engine: EngineDep,
    page: PageDep,
    owner_type: Annotated[str | None, Query(max_length=32)] = None,
    owner_id: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    unit: Annotated[str | None, Query(max_length=16)] = None,
) -> AccountList:
    """The tenant's accounts in id order, optionally filtered."""
    with read_only(engine) as conn:
        found = find_accounts(
            conn,
            principal.tenant_id,
            after_id=page.after_id or 0,
            limit=page.limit + 1,
            owner_type=owner_type,
            owner_id=owner_id,
            kind=kind,
            unit_code=unit,
        )
    more = len(found) > page.limit
    items = found[: page.limit]
    return AccountList(
        items=[account_out(a) for a in items],
        next_cursor=encode_cursor(items[-1].id) if more else None,
    )


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422, 503),
)
def open_account(body: AccountIn, principal: ManagerPrincipal, engine: EngineDep) -> AccountOut:
    """Open an account in one of the tenant's units (owner, administrator)."""

    def work(conn: Connection) -> AccountView:
        unit = get_unit(conn, principal.tenant_id, body.unit)
        limit = 0
        if body.credit_limit is not None:
            limit = parse_amount(body.credit_limit, unit.exponent, unit_code=unit.code)
        return create_account(
            conn,
            tenant_id=principal.tenant_id,
            unit_code=unit.code,
            kind=body.kind,
            policy=body.policy,
            name=body.name,
            code=body.code,
            owner_type=body.owner_type,
            owner_id=body.owner_id,
            credit_limit_minor=limit,
            uses_lots=body.uses_lots,
            actor=principal.actor,
        )

    return account_out(run_transaction(engine, work))


@router.get("/accounts/{account_id}", responses=problem_responses(401, 404, 422, 503))
def read_account(
    account_id: AccountId, principal: CurrentPrincipal, engine: EngineDep
) -> AccountOut:
    """An account's figures now: balance, held, available, credit limit."""
    with read_only(engine) as conn:
        return account_out(get_account(conn, principal.tenant_id, account_id))


@router.post(
    "/accounts/{account_id}/credit-limit",
    responses=problem_responses(401, 403, 404, 422, 503),
)
def change_credit_limit(
    account_id: AccountId, body: CreditLimitIn, principal: ManagerPrincipal, engine: EngineDep
) -> AccountOut:
    """Set a credit_limit account's limit from now on (owner, administrator)."""

    def work(conn: Connection) -> AccountView:
        account = get_account(conn, principal.tenant_id, account_id)
        limit = parse_amount(body.credit_limit, account.unit.exponent, unit_code=account.unit.code)
        return set_credit_limit(
            conn,
            tenant_id=principal.tenant_id,
            account_id=account.id,
            credit_limit_minor=limit,
            reason=body.reason,
            actor=principal.actor,
        )

    return account_out(run_transaction(engine, work))


@router.get("/accounts/{account_id}/balance", responses=problem_responses(401, 404, 422, 503))
def read_balance(
    account_id: AccountId,
    principal: CurrentPrincipal,
    engine: EngineDep,
    at: Annotated[
        Moment | None, Query(description="The moment (default: now), with offset")
    ] = None,
) -> BalanceOut:
    """The balance after every entry posted at or before ``at``."""
    moment: datetime = at or utcnow()
    with read_only(engine) as conn:
        account = get_account(conn, principal.tenant_id, account_id)
        minor = balance_at(conn, principal.tenant_id, account_id, moment)
    return BalanceOut(
        account_id=account_id, at=moment, balance=account.fmt(minor), unit=account.unit.code
    )


@router.get("/accounts/{account_id}/entries", responses=problem_responses(401, 404, 422, 503))
def read_entries(
    account_id: AccountId,
    principal: CurrentPrincipal,
    engine: EngineDep,
    page: PageDep,
    start: Annotated[Moment | None, Query(alias="from", description="Posted at or after")] = None,
    end: Annotated[Moment | None, Query(alias="to", description="Posted before")] = None,
) -> EntryLineList:
    """The account's entries, oldest first, each with the running balance after it."""
    with read_only(engine) as conn:
        account = get_account(conn, principal.tenant_id, account_id)
        lines = history(
            conn,
            principal.tenant_id,
            account_id,
            after_entry_id=page.after_id or 0,
            limit=page.limit + 1,
            start=start,
            end=end,
        )
    more = len(lines) > page.limit
    lines = lines[: page.limit]
    return EntryLineList(
        items=[entry_line_out(line, account.unit) for line in lines],
        next_cursor=encode_cursor(lines[-1].entry_id) if more else None,
    )


@router.get("/accounts/{account_id}/turnovers", responses=problem_responses(401, 404, 422, 503))
def read_account_turnovers(
    account_id: AccountId, principal: CurrentPrincipal, engine: EngineDep, start: From, end: To
) -> TurnoverOut:
    """Opening, debit, credit and closing of one account over ``[from, to)``."""
    with read_only(engine) as conn:
        return turnover_out(turnovers(conn, principal.tenant_id, [account_id], start, end))


@router.get("/turnovers", responses=problem_responses(401, 404, 422, 503))
def read_group_turnovers(
    principal: CurrentPrincipal,
    engine: EngineDep,
    account_id: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_ID)]], Query(min_length=1, max_length=500)
    ],
    start: From,
    end: To,
) -> TurnoverOut:
    """Turnovers of a group of accounts of one unit, summed, over ``[from, to)``."""
    with read_only(engine) as conn:
        return turnover_out(turnovers(conn, principal.tenant_id, account_id, start, end))
