"""Loyalty reports for owners and administrators (SPEC C-10, C-11).

* ``GET /loyalty/reports/balances``: balances and turnovers of cards over days of the
  tenant's time zone, by program and by branch; JSON (paged), CSV or XLSX (whole, streamed).
* ``GET /loyalty/cards/{number}/history``: every change of a card, explained.
* ``POST /loyalty/reconciliation``: what a POS holds against the server, and the
  corrections to send back; a JSON body or a CSV file. It reads only.

Amounts are decimal strings, points in the card's point unit, purchases in the program's
currency. The work is ``kopilka.loyalty.reports``, ``card_history`` and
``reconciliation``; this module only shapes it.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from kopilka.api.deps import MAX_ID, EngineDep, ManagerPrincipal
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput
from kopilka.core.money import format_amount
from kopilka.loyalty import card_history as histories
from kopilka.loyalty import reconciliation as reconciliations
from kopilka.loyalty import reports
from kopilka.loyalty.cards import find_card
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.tenancy.actions import get_tenant

router = APIRouter(prefix=f"{API_PREFIX}/loyalty", tags=["loyalty reports"])

CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_JSON_ROWS = 1_000
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"


# --------------------------------------------------------------------------- balances


class FiguresOut(BaseModel):
    opening: str
    accrued: str = Field(description="credited by checks, manual documents and imports")
    returned: str = Field(description="credited back by refunds (points spent on the check)")
    other_credit: str
    spent: str = Field(description="paid with points on checks, and hold captures")
    reversed: str = Field(description="accruals taken back by refunds")
    written_off: str = Field(description="manual write-off documents")
    expired: str
    other_debit: str
    outside: str = Field(description="with a branch filter: the net of everything else")
    closing: str
    credit: str
    debit: str
    purchases: str = Field(description="money paid on checks less refunds, in the currency")
    checks: int


def figures_out(figures: reports.Figures, exponent: int, currency_exponent: int) -> FiguresOut:
    def points(value: int) -> str:
        return format_amount(value, exponent)

    return FiguresOut(
        opening=points(figures.opening_minor),
        accrued=points(figures.accrued_minor),
        returned=points(figures.returned_minor),
        other_credit=points(figures.other_credit_minor),
        spent=points(figures.spent_minor),
        reversed=points(figures.reversed_minor),
        written_off=points(figures.written_off_minor),
        expired=points(figures.expired_minor),
        other_debit=points(figures.other_debit_minor),
        outside=points(figures.outside_minor),
        closing=points(figures.closing_minor),
        credit=points(figures.credit_minor),
        debit=points(figures.debit_minor),
        purchases=format_amount(figures.purchases_minor, currency_exponent),
        checks=figures.checks,
    )


class TurnoverRowOut(FiguresOut):
    card: str
    holder_name: str | None
    status: str
    program_id: int
    program: str
    tier: str | None
    unit: str
    currency: str


class TurnoverTotalOut(FiguresOut):
    unit: str
    currency: str
    cards: int


class TurnoverReportOut(BaseModel):
    start: datetime
    end: datetime
    items: list[TurnoverRowOut]
    totals: list[TurnoverTotalOut] = Field(description="of the items of this page")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


def _row_out(row: reports.TurnoverRow) -> TurnoverRowOut:
    return TurnoverRowOut(
        card=row.number,
        holder_name=row.holder_name,
        status=row.status,
        program_id=row.program_id,
        program=row.program,
        tier=row.tier,
        unit=row.unit_code,
        currency=row.currency,
        **figures_out(row.figures, row.exponent, row.currency_exponent).model_dump(),
    )


def _total_out(total: reports.TurnoverTotal) -> TurnoverTotalOut:
    return TurnoverTotalOut(
        unit=total.unit_code,
        currency=total.currency,
        cards=total.cards,
        **figures_out(total.figures, total.exponent, total.currency_exponent).model_dump(),
    )


@router.get(
    "/reports/balances",
    responses={
        **problem_responses(401, 403, 404, 422, 503),
        200: {
            "description": "JSON, or the whole report as CSV or XLSX",
            "content": {"text/csv": {}, XLSX_TYPE: {}},
        },
    },
    response_model=TurnoverReportOut,
)
def balances(
    principal: ManagerPrincipal,
    engine: EngineDep,
    first: Annotated[date, Query(alias="from", description="first day, tenant's time")],
    last: Annotated[date, Query(alias="to", description="last day, included")],
    program_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    branch_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="operations of its terminals only")
    ] = None,
    format: Annotated[Format, Query(description="json (paged), csv or xlsx")] = Format.JSON,
    include_idle: Annotated[bool, Query(description="also cards with nothing at all")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_JSON_ROWS, description="json: rows a page")] = 200,
    cursor: Annotated[str | None, Query(max_length=32, description="json: next page")] = None,
) -> Any:
    """SPEC C-11, "balances and turnovers": per card, the opening balance, what was
    accrued, returned, spent, reversed, written off and expired, the closing balance,
    and the purchases and checks of the period; totals per unit. CSV is UTF-8 with a BOM,
    `;` and decimal commas (Excel in Russia opens it as is); XLSX has numeric cells."""
    with read_only(engine) as conn:
        tenant = get_tenant(conn, principal.tenant_id)
        start, end = reports.day_period(first, last, tenant.timezone)
        options: dict[str, Any] = {
            "start": start,
            "end": end,
            "program_id": program_id,
            "branch_id": branch_id,
            "include_idle": include_idle,
        }
        if format is Format.JSON:
            after = _after_card(cursor)
            report = reports.balances_and_turnovers(
                conn, tenant.id, **options, after_card_id=after, limit=limit
            )
            more = report.next_after_card_id
            return TurnoverReportOut(
                start=report.start,
                end=report.end,
                items=[_row_out(row) for row in report.rows],
                totals=[_total_out(total) for total in report.totals],
                next_cursor=None if more is None else str(more),
            )
        reports.iter_turnovers(conn, tenant.id, **options)  # the filters, checked now
    name = f"balances-{first.isoformat()}-{last.isoformat()}"
    if format is Format.CSV:
        return StreamingResponse(
            reports.turnovers_csv(engine, tenant.id, locale=tenant.locale, **options),
            media_type=CSV_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    title = f"{tenant.name}: {first:%d.%m.%Y}–{last:%d.%m.%Y}"
    path = reports.turnovers_xlsx_file(
        engine, tenant.id, locale=tenant.locale, title=title, **options
    )
    return FileResponse(
        path,
        media_type=XLSX_TYPE,
        filename=f"{name}.xlsx",
        background=BackgroundTask(os.unlink, path),
    )


def _after_card(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    # isascii: "¹" is a digit to isdigit, not to int.
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise InvalidInput(E.INVALID_REPORT, "the cursor is not one this report gave out")
    return int(cursor)


# --------------------------------------------------------------------------- history


class HistoryItemOut(BaseModel):
    at: datetime
    kind: str = Field(
        description="check_accrual, check_spend, refund, accrual_reversal, manual_accrual, "
        "manual_write_off, opening_balance, expiry, capture, hold, hold_voided, "
        "hold_expired, check, card_issue, card_block, card_unblock, ..."
    )
    title: str
    amount: str | None = Field(description="the change of the card's points, if any")
    balance_after: str
    details: dict[str, Any]
    transfer_id: int | None


class CardHistoryOut(BaseModel):
    card: str
    unit: str
    items: list[HistoryItemOut]
    next_cursor: str | None


@router.get("/cards/{number}/history", responses=problem_responses(401, 403, 404, 422, 503))
def card_history(
    principal: ManagerPrincipal,
    engine: EngineDep,
    number: Annotated[str, Path(min_length=1, max_length=64)],
    limit: Annotated[int, Query(ge=1, le=histories.MAX_HISTORY_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    newest_first: bool = False,
) -> CardHistoryOut:
    """SPEC C-11: every change of the card, explained (checks with their terminal, rate
    and tier; refunds with the share refunded; documents with reason and author; expiry
    with the lot; holds; blocks and other changes of the card), each with the balance
    after it. Amounts in `details` are in minor units (`*_minor`)."""
    with read_only(engine) as conn:
        card = find_card(conn, principal.tenant_id, number=number)
        page = histories.card_history(
            conn,
            principal.tenant_id,
            card.id,
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
        )
    return CardHistoryOut(
        card=page.number,
        unit=page.unit_code,
        items=[
            HistoryItemOut(
                at=item.at,
                kind=item.kind,
                title=item.title,
                amount=None
                if item.amount_minor is None
                else format_amount(item.amount_minor, page.exponent),
                balance_after=format_amount(item.balance_after_minor, page.exponent),
                details=item.details,
                transfer_id=item.transfer_id,
            )
            for item in page.items
        ],
        next_cursor=page.next_cursor,
    )


# --------------------------------------------------------------------------- reconciliation


class ReportedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=64)
    balance: str | None = Field(default=None, description="points the POS holds")
    accumulation: str | None = Field(default=None, description="the POS's accumulation")


class ReconciliationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cards: list[ReportedIn] | None = Field(
        default=None,
        max_length=reconciliations.MAX_RECONCILE,
        description="what the POS holds; none: every card, with the values to set",
    )
    as_of: datetime | None = Field(
        default=None, description="compare points with the balance at this moment"
    )
    only_differences: bool = False
    program_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class ReconcileLineOut(BaseModel):
    card: str
    status: str
    unit: str
    server_balance: str
    pos_balance: str | None
    balance_difference: str | None = Field(description="POS minus server")
    balance_correction: str | None = Field(description="what the POS adds to agree")
    server_accumulation: str
    pos_accumulation: str | None
    accumulation_correction: str | None


class ReconciliationOut(BaseModel):
    as_of: datetime | None
    checked: int
    differing: int
    lines: list[ReconcileLineOut]
    unknown_numbers: list[str]


def _amount(value: int | None, exponent: int) -> str | None:
    return None if value is None else format_amount(value, exponent)


def _line_out(line: reconciliations.ReconcileLine) -> ReconcileLineOut:
    return ReconcileLineOut(
        card=line.number,
        status=line.status,
        unit=line.unit_code,
        server_balance=format_amount(line.server_balance_minor, line.exponent),
        pos_balance=_amount(line.pos_balance_minor, line.exponent),
        balance_difference=_amount(line.balance_difference_minor, line.exponent),
        balance_correction=_amount(line.balance_correction_minor, line.exponent),
        server_accumulation=format_amount(line.server_accumulation_minor, line.currency_exponent),
        pos_accumulation=_amount(line.pos_accumulation_minor, line.currency_exponent),
        accumulation_correction=_amount(line.accumulation_correction_minor, line.currency_exponent),
    )


_RECONCILE_BODY = {
    "requestBody": {
        "content": {
            "application/json": {"schema": ReconciliationIn.model_json_schema()},
            "text/csv": {
                "schema": {"type": "string"},
                "example": "number;balance;accumulation\n2000000000017;150,00;12000,00\n",
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        }
    }
}


@router.post(
    "/reconciliation",
    responses={
        **problem_responses(401, 403, 404, 422, 503),
        200: {"content": {"text/csv": {}}, "description": "the comparison, JSON or CSV"},
    },
    response_model=ReconciliationOut,
    openapi_extra=_RECONCILE_BODY,
)
async def reconciliation(
    request: Request,
    principal: ManagerPrincipal,
    engine: EngineDep,
    format: Annotated[Format, Query(description="json or csv")] = Format.JSON,
) -> Any:
    """SPEC C-10, the seed's "synchronisation": compare what a POS holds (card number,
    points, optionally accumulation) with the server. The server is the source of truth:
    each line carries the correction the POS must apply; nothing is posted. Send JSON
    (`cards` absent: every card, with the values to set), a CSV body (`text/csv`: number;
    balance[; accumulation], `;` or `,`, decimal commas allowed) or a `file` upload."""
    body = await _reconciliation_body(request)
    if format is Format.XLSX:
        raise InvalidInput(E.INVALID_RECONCILIATION, "reconciliation answers in json or csv")

    def work() -> reconciliations.Reconciliation:
        reported = None
        if body.cards is not None:
            reported = [
                reconciliations.Reported(c.number, c.balance, c.accumulation) for c in body.cards
            ]
        with read_only(engine) as conn:
            return reconciliations.reconcile(
                conn,
                principal.tenant_id,
                reported,
                as_of=body.as_of,
                only_differences=body.only_differences,
                program_id=body.program_id,
            )

    result = await run_in_threadpool(work)
    if format is Format.CSV:
        return StreamingResponse(
            reconciliations.reconcile_csv_chunks(result),
            media_type=CSV_TYPE,
            headers={"Content-Disposition": 'attachment; filename="reconciliation.csv"'},
        )
    return ReconciliationOut(
        as_of=result.as_of,
        checked=result.checked,
        differing=result.differing,
        lines=[_line_out(line) for line in result.lines],
        unknown_numbers=result.unknown_numbers,
    )


async def _reconciliation_body(request: Request) -> ReconciliationIn:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        async with request.form() as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InvalidInput(E.INVALID_RECONCILIATION, "send the POS's figures as `file`")
            raw = await upload.read(MAX_UPLOAD_BYTES + 1)
        return _from_csv(raw)
    raw = await request.body()
    if kind in ("text/csv", "text/plain"):
        return _from_csv(raw)
    if not raw.strip():
        return ReconciliationIn()
    try:
        return ReconciliationIn.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as error:
        message = str(error).splitlines()[0]
        raise InvalidInput(
            E.INVALID_RECONCILIATION, f"the body is not a reconciliation: {message}"
        ) from error


def _from_csv(raw: bytes) -> ReconciliationIn:
    if len(raw) > MAX_UPLOAD_BYTES:
        raise InvalidInput(E.INVALID_RECONCILIATION, "the file is larger than 20 MB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1251")  # what Excel in Russia saves as "CSV"
        except UnicodeDecodeError as error:
            raise InvalidInput(
                E.INVALID_RECONCILIATION, "the file is neither UTF-8 nor Windows-1251 text"
            ) from error
    reported = reconciliations.parse_reported_csv(text)
    try:
        cards = [
            ReportedIn(number=r.number, balance=r.balance, accumulation=r.accumulation)
            for r in reported
        ]
        return ReconciliationIn(cards=cards)
    except ValidationError as error:
        message = str(error).splitlines()[0]
        raise InvalidInput(
            E.INVALID_RECONCILIATION, f"the file is not readable: {message}"
        ) from error
