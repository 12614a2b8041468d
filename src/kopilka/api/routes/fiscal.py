"""Cash registers and fiscal receipts (SPEC H-6) over HTTP.

* ``/api/v1/cash-registers``: owners and administrators (the permission that manages
  payment types) list, add, read and change registers. The password is write-only: a
  register shows ``password_set``, never the password; a PATCH without it (or with an
  empty one) keeps it. A PATCH's ``settings`` names only the settings that change.
* ``/api/v1/receipts``: staff who serve hotel guests (owner, administrator, front desk)
  read receipts (``?status=pending|wait|done|failed``, ``source_type``, ``source_id``,
  paged by cursor) and retry one: ``POST /api/v1/receipts/{id}/retry`` makes it due now
  and sends it at once (a refused one under a new ``external_id``); the reply is the
  receipt as it stands after that one attempt.

Amounts of a receipt are decimal strings in roubles (``"unit": "RUB"``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from kopilka.api.deps import (
    MAX_ID,
    EngineDep,
    PageDep,
    Principal,
    encode_cursor,
    require_roles,
)
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput
from kopilka.core.money import format_amount
from kopilka.fiscal import receipts as rc
from kopilka.fiscal import registers as rg
from kopilka.fiscal.atol import SNO_VALUES
from kopilka.fiscal.error_codes import FiscalErrorCode as E
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.roles import PERMISSIONS

router = APIRouter(prefix=API_PREFIX, tags=["fiscal receipts"])

RegisterManager = Annotated[
    Principal, Depends(require_roles(*sorted(PERMISSIONS["settings.payment_types"])))
]
HotelStaff = Annotated[Principal, Depends(require_roles(*sorted(PERMISSIONS["hotel"])))]
RegisterId = Annotated[int, Path(ge=1, le=MAX_ID)]
ReceiptId = Annotated[int, Path(ge=1, le=MAX_ID)]
Sno = Literal["osn", "usn_income", "usn_income_outcome", "esn", "patent"]
assert set(SNO_VALUES) == set(get_args(Sno))
RECEIPT_UNIT = "RUB"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- registers


class AtolSettingsIn(Strict):
    base_url: str | None = Field(
        default=None,
        max_length=300,
        description="the service's address; default https://online.atol.ru",
        examples=["https://online.atol.ru"],
    )
    login: str | None = Field(default=None, max_length=100)
    password: str | None = Field(
        default=None, max_length=200, description="write-only; empty or absent keeps it"
    )
    group_code: str | None = Field(default=None, max_length=100)
    inn: str | None = Field(default=None, max_length=12, description="the seller's INN")
    payment_address: str | None = Field(
        default=None, max_length=256, description="the shop's site or the premises' address"
    )
    sno: Sno | None = Field(default=None, description="the taxation system")
    company_email: str | None = Field(default=None, max_length=254)
    timeout_ms: int | None = Field(default=None, ge=100, le=60_000)

    def sent(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class AtolSettingsOut(BaseModel):
    base_url: str
    login: str
    password_set: bool
    group_code: str
    inn: str
    payment_address: str
    sno: str
    company_email: str
    timeout_ms: int


class CashRegisterOut(Strict):
    id: int
    name: str
    adapter: str
    enabled: bool
    settings: AtolSettingsOut
    created_at: datetime


class CashRegisterList(Strict):
    items: list[CashRegisterOut]


class CashRegisterIn(Strict):
    name: str = Field(min_length=1, max_length=rg.MAX_NAME)
    adapter: Literal["atol_online_v5"] = "atol_online_v5"
    enabled: bool = True
    settings: AtolSettingsIn


class CashRegisterPatch(Strict):
    """Only the fields sent change; none of them may be null."""

    name: str | None = Field(default=None, min_length=1, max_length=rg.MAX_NAME)
    enabled: bool | None = None
    settings: AtolSettingsIn | None = None


def register_out(register: rg.CashRegister) -> CashRegisterOut:
    return CashRegisterOut(
        id=register.id,
        name=register.name,
        adapter=register.adapter,
        enabled=register.enabled,
        settings=AtolSettingsOut(**register.public_settings),
        created_at=register.created_at,
    )


@router.get("/cash-registers", responses=problem_responses(401, 403, 503))
def cash_registers_list(principal: RegisterManager, engine: EngineDep) -> CashRegisterList:
    """The tenant's cash registers by name, switched off ones too."""
    with read_only(engine) as conn:
        found = rg.list_registers(conn, principal.tenant_id)
    return CashRegisterList(items=[register_out(r) for r in found])


@router.post(
    "/cash-registers",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422, 503),
)
def cash_register_create(
    body: CashRegisterIn, principal: RegisterManager, engine: EngineDep
) -> CashRegisterOut:
    """A cash register: an ATOL Online v5 group with its login, password and the seller's
    details printed on every receipt. A bad setting is 422 ``invalid_register_setting``
    naming its ``field``."""
    created = run_transaction(
        engine,
        lambda conn: rg.create_register(
            conn,
            tenant_id=principal.tenant_id,
            name=body.name,
            adapter=body.adapter,
            enabled=body.enabled,
            settings=body.settings.sent(),
            actor=principal.actor,
        ),
    )
    return register_out(created)


@router.get(
    "/cash-registers/{register_id:int}", responses=problem_responses(401, 403, 404, 422, 503)
)
def cash_register_read(
    register_id: RegisterId, principal: RegisterManager, engine: EngineDep
) -> CashRegisterOut:
    with read_only(engine) as conn:
        return register_out(rg.get_register(conn, principal.tenant_id, register_id))


@router.patch(
    "/cash-registers/{register_id:int}",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def cash_register_update(
    register_id: RegisterId, body: CashRegisterPatch, principal: RegisterManager, engine: EngineDep
) -> CashRegisterOut:
    """Rename a register, switch it on or off, change its settings."""
    sent = body.model_fields_set
    for field in sorted(sent):
        if getattr(body, field) is None:
            raise InvalidInput(E.INVALID_CASH_REGISTER, f"{field} may not be null", field=field)
    changes: dict[str, Any] = {}
    if "name" in sent and body.name is not None:
        changes["name"] = body.name
    if "enabled" in sent and body.enabled is not None:
        changes["enabled"] = body.enabled
    if "settings" in sent and body.settings is not None:
        changes["settings"] = body.settings.sent()
    updated = run_transaction(
        engine,
        lambda conn: rg.update_register(
            conn,
            tenant_id=principal.tenant_id,
            register_id=register_id,
            actor=principal.actor,
            **changes,
        ),
    )
    return register_out(updated)


# --------------------------------------------------------------------------- receipts


class ReceiptItemOut(BaseModel):
    name: str
    price: str
    quantity: str
    amount: str
    payment_object: str
    vat: str
    payment_method: str | None


class ReceiptPaymentOut(BaseModel):
    kind: str
    amount: str


class ReceiptOut(BaseModel):
    id: int
    register_id: int
    register_name: str = Field(description="the register's name")
    operation: Literal["sell", "sell_refund"]
    source_type: str
    source_id: int
    external_id: str = Field(description="the register's idempotency key")
    status: Literal["pending", "wait", "done", "failed"]
    provider_uuid: str | None = Field(description="the register's id of the receipt")
    email: str | None
    phone: str | None
    total: str
    unit: str
    items: list[ReceiptItemOut]
    payments: list[ReceiptPaymentOut]
    fiscal: dict[str, Any] | None = Field(description="done: the fiscal data")
    attempts: int
    last_error: str | None = Field(description="the register's words, or why it was not reached")
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ReceiptList(BaseModel):
    items: list[ReceiptOut]
    next_cursor: str | None


def receipt_out(receipt: rc.ReceiptView) -> ReceiptOut:
    exponent = receipt.exponent
    payload = receipt.payload
    return ReceiptOut(
        id=receipt.id,
        register_id=receipt.register_id,
        register_name=receipt.register_name,
        operation=receipt.operation,  # type: ignore[arg-type]
        source_type=receipt.source_type,
        source_id=receipt.source_id,
        external_id=receipt.external_id,
        status=receipt.status,  # type: ignore[arg-type]
        provider_uuid=receipt.provider_uuid,
        email=receipt.contact_email,
        phone=receipt.contact_phone,
        total=format_amount(receipt.total_minor, exponent),
        unit=RECEIPT_UNIT,
        items=[
            ReceiptItemOut(
                name=item["name"],
                price=format_amount(item["price_minor"], exponent),
                quantity=format_amount(item["quantity_milli"], 3),
                amount=format_amount(item["amount_minor"], exponent),
                payment_object=item["payment_object"],
                vat=item["vat"],
                payment_method=item.get("payment_method"),
            )
            for item in payload["items"]
        ],
        payments=[
            ReceiptPaymentOut(kind=p["kind"], amount=format_amount(p["amount_minor"], exponent))
            for p in payload["payments"]
        ],
        fiscal=receipt.fiscal,
        attempts=receipt.attempts,
        last_error=receipt.last_error,
        next_attempt_at=receipt.next_attempt_at,
        created_at=receipt.created_at,
        updated_at=receipt.updated_at,
    )


@router.get("/receipts", responses=problem_responses(401, 403, 422, 503))
def receipts_list(
    principal: HotelStaff,
    engine: EngineDep,
    page: PageDep,
    status_: Annotated[
        Literal["pending", "wait", "done", "failed"] | None, Query(alias="status")
    ] = None,
    source_type: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    source_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> ReceiptList:
    """The tenant's receipts in the order they were asked for, by pages."""
    with read_only(engine) as conn:
        found = rc.list_receipts(
            conn,
            principal.tenant_id,
            source_type=source_type,
            source_ids=None if source_id is None else [source_id],
            status=status_,
            after_id=page.after_id or 0,
            limit=page.limit + 1,
        )
    more = len(found) > page.limit
    found = found[: page.limit]
    return ReceiptList(
        items=[receipt_out(r) for r in found],
        next_cursor=encode_cursor(found[-1].id) if more and found else None,
    )


@router.get("/receipts/{receipt_id:int}", responses=problem_responses(401, 403, 404, 422, 503))
def receipt_read(receipt_id: ReceiptId, principal: HotelStaff, engine: EngineDep) -> ReceiptOut:
    with read_only(engine) as conn:
        return receipt_out(rc.get_receipt(conn, principal.tenant_id, receipt_id))


@router.post(
    "/receipts/{receipt_id:int}/retry", responses=problem_responses(401, 403, 404, 422, 503)
)
def receipt_retry(receipt_id: ReceiptId, principal: HotelStaff, engine: EngineDep) -> ReceiptOut:
    """Send a failed or pending receipt again now (a failed one under a new
    ``external_id``), or ask about a waiting one now; a done one is 422
    ``receipt_not_retryable``. The reply is the receipt after that attempt."""
    return receipt_out(rc.retry_and_send(engine, principal.tenant_id, receipt_id, principal.actor))
