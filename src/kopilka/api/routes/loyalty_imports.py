"""Import of cards and opening balances from a CSV file (SPEC C-5, C-6), for owners and
administrators.

``POST /api/v1/loyalty/imports/cards`` takes the file as ``multipart/form-data`` with the
program and the start date. A file with bad rows is refused as a whole: 422
``invalid_import`` with ``errors`` (each ``{line, column, code, message}``, at most 1000)
and ``error_count``. The import is idempotent by its id: the ``Idempotency-Key`` header,
or when absent the file's content. The same import again answers 200 with the first
result and ``Idempotent-Replayed: true``; the same id with another file, program or date
is 409 ``import_conflict``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Response, UploadFile, status
from pydantic import BaseModel, Field

from kopilka.api.deps import MAX_ID, EngineDep, ManagerPrincipal
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.routes.transfers import REPLAYED_HEADER
from kopilka.core.errors import InvalidInput
from kopilka.loyalty.imports import MAX_FILE_BYTES, ImportResult, run_import
from kopilka.loyalty.programs import LoyaltyErrorCode as E

router = APIRouter(prefix=f"{API_PREFIX}/loyalty/imports", tags=["loyalty"])


class ImportOut(BaseModel):
    import_id: str
    program_id: int
    start_date: date
    opening_at: datetime = Field(
        description="the moment the balances are dated: the last "
        "instant of the day before the start date, tenant time"
    )
    rows: int
    cards_issued: int
    cards_updated: int
    cards_with_points: int
    points: str = Field(description="points opened, in the program's point unit")
    unit: str
    accumulation: str = Field(description="accumulation opened, in the program's currency")
    currency: str
    checks: int
    opening_account_id: int | None
    encoding: str
    delimiter: str
    dry_run: bool
    replayed: bool


def import_out(result: ImportResult) -> ImportOut:
    return ImportOut(
        import_id=result.import_id,
        program_id=result.program_id,
        start_date=result.start_date,
        opening_at=result.opening_at,
        rows=result.rows,
        cards_issued=result.cards_issued,
        cards_updated=result.cards_updated,
        cards_with_points=result.cards_with_points,
        points=result.points,
        unit=result.unit_code,
        accumulation=result.accumulation,
        currency=result.currency,
        checks=result.checks,
        opening_account_id=result.opening_account_id,
        encoding=result.encoding,
        delimiter=result.delimiter,
        dry_run=result.dry_run,
        replayed=result.replayed,
    )


@router.post(
    "/cards",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ImportOut, "description": "A replay of a done import, or a dry run"},
        **problem_responses(401, 403, 404, 409, 422, 503),
    },
)
def import_cards(
    principal: ManagerPrincipal,
    engine: EngineDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The CSV file")],
    program_id: Annotated[int, Form(ge=1, le=MAX_ID)],
    start_date: Annotated[date, Form(description="First day of billing, YYYY-MM-DD")],
    check_digit: Annotated[bool, Form(description="Numbers end with a Luhn digit")] = False,
    dry_run: Annotated[bool, Form(description="Check and count, write nothing")] = False,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=64,
            description="The import's id (letters, digits, `. _ : -`); default: the file's "
            "content.",
        ),
    ] = None,
) -> ImportOut:
    """Issue the file's cards and open their balances as of the day before the start date."""
    data = file.file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(E.INVALID_IMPORT, f"a file of at most {MAX_FILE_BYTES:,} bytes")
    result = run_import(
        engine,
        tenant_id=principal.tenant_id,
        program_id=program_id,
        data=data,
        start_date=start_date,
        actor=principal.actor,
        import_id=idempotency_key,
        check_digit=check_digit,
        dry_run=dry_run,
    )
    if result.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    if result.replayed or result.dry_run:
        response.status_code = status.HTTP_200_OK
    return import_out(result)
