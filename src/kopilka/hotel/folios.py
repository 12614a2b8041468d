"""Invoices, payments and refunds on a folio (SPEC H-1, H-2, H-4, P-7).

Money, in the ledger (every change one balanced transfer in the tenant's currency):

* a **charge** (an invoice: accommodation, services, a POS order with its lines) takes
  its total from the folio's account to the tenant's ``hotel_sales`` account: the
  folio's balance goes below zero, the guest owes;
* a **payment** by a payment type brings money from that type's account
  (``hotel_paid_<type id>``: what the cash drawer, the bank terminal, the loyalty
  centre... owes the hotel for it) to the folio;
* a **refund** takes money from the folio back to a payment type's account;
* voiding an invoice (a POS order cancelled at its terminal) posts the reversal of its
  charge, naming the transfer it corrects.

Invoices and payments meet in **allocations**: a payment for a named invoice pays that
invoice (never more than it still owes); a payment for the folio pays its open invoices
oldest first and what is left is the guest's credit (a deposit). A refund takes back
from the payment's allocations (the named invoice's, else the newest first), then from
its unallocated part; it never returns more than the payment brought, less its refunds.
An invoice's status follows what is allocated to it: unpaid, partly paid, paid; void.

Every operation carries an operation id: asked again with the same content it answers
as the first time and writes nothing; the same id with other content is
``hotel_operation_conflict``. A POS order is identified by its terminal and check id.
Operations on a folio lock its row, so concurrent payments never pay an invoice twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.core.idempotency import request_hash
from kopilka.core.money import MAX_ABS_MINOR, currency_exponent, format_amount
from kopilka.hotel.error_codes import HotelErrorCode as E
from kopilka.hotel.schema import (
    REFUND_DIRECTIONS,
    hotel_allocations,
    hotel_folios,
    hotel_invoice_lines,
    hotel_invoices,
    hotel_payments,
    hotel_refunds,
)
from kopilka.hotel.stays import CANCELLED, CHECKED_OUT, GuestView, StayView, get_guest, get_stay
from kopilka.ledger.accounts import system_account_id
from kopilka.ledger.error_codes import LedgerErrorCode
from kopilka.ledger.posting import PostedTransfer, TransferSpec, post_transfers, simple_transfer
from kopilka.ledger.schema import accounts
from kopilka.payments.types import PaymentKind, PaymentType, get_payment_type
from kopilka.tenancy.audit import record_audit

MAX_LINES = 200
MAX_OPERATION_ID = 100
MAX_QUANTITY_MILLI = 10**9
SALES = "hotel_sales"
CERTIFICATE = "certificate"  # a payment's provider when a gift certificate paid

UNPAID, PARTLY_PAID, PAID, VOID = "unpaid", "partly_paid", "paid", "void"


# --------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class LineIn:
    """A line of a charge: a name, a quantity (thousandths) and price, and what it costs
    (``amount_minor``: a POS's line sum after its discounts, so not always price × qty)."""

    name: str
    amount_minor: int
    quantity_milli: int = 1000
    price_minor: int | None = None  # None: the amount per one


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    position: int
    name: str
    quantity_milli: int
    price_minor: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class InvoiceView:
    id: int
    folio_id: int
    payer: GuestView | None
    kind: str
    description: str
    total_minor: int
    paid_minor: int
    lines: tuple[InvoiceLine, ...]
    transfer_id: int | None
    voided_at: datetime | None
    terminal_id: int | None
    check_id: str | None
    closed_at: datetime | None
    created_at: datetime
    replayed: bool = False

    @property
    def status(self) -> str:
        if self.voided_at is not None:
            return VOID
        if self.paid_minor >= self.total_minor:
            return PAID
        return PARTLY_PAID if self.paid_minor > 0 else UNPAID

    @property
    def owed_minor(self) -> int:
        return 0 if self.voided_at is not None else self.total_minor - self.paid_minor


@dataclass(frozen=True, slots=True)
class PaymentView:
    id: int
    folio_id: int
    invoice_id: int | None
    payment_type_id: int
    payment_kind: str
    payment_name: str
    amount_minor: int
    refunded_minor: int
    card_number: str | None
    points_unit: str | None
    points_minor: int | None
    provider: str | None
    provider_ref: str | None
    payer: str
    transfer_id: int | None
    created_at: datetime
    replayed: bool = False

    @property
    def refundable_minor(self) -> int:
        return self.amount_minor - self.refunded_minor


@dataclass(frozen=True, slots=True)
class RefundView:
    id: int
    folio_id: int
    payment_id: int
    invoice_id: int | None
    payment_type_id: int
    payment_name: str
    direction: str
    amount_minor: int
    points_minor: int | None
    reason: str
    transfer_id: int | None
    created_at: datetime
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class FolioView:
    id: int
    stay: StayView
    guest_id: int | None
    account_id: int
    currency: str
    exponent: int
    balance_minor: int  # below zero: the guest owes
    invoices: tuple[InvoiceView, ...]
    payments: tuple[PaymentView, ...]
    refunds: tuple[RefundView, ...]
    credit_minor: int  # paid and not allocated to an invoice (a deposit)
    allocations: dict[int, dict[int, int]] = field(default_factory=dict)  # payment→invoice→

    @property
    def owed_minor(self) -> int:
        return max(0, -self.balance_minor)

    @property
    def guest(self) -> GuestView | None:
        if self.guest_id is None:
            return self.stay.main_guest
        return next((g for g in self.stay.guests if g.id == self.guest_id), None)

    def fmt(self, amount_minor: int) -> str:
        return format_amount(amount_minor, self.exponent)


# --------------------------------------------------------------------------- helpers


def operation_id_of(value: object, what: str = "an operation id") -> str:
    cleaned = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(cleaned) <= MAX_OPERATION_ID:
        raise InvalidInput(
            E.INVALID_HOTEL_INPUT, f"{what} of 1 to {MAX_OPERATION_ID} characters is required"
        )
    return cleaned


def check_amount(amount_minor: object, what: str = "the amount") -> int:
    if (
        not isinstance(amount_minor, int)
        or isinstance(amount_minor, bool)
        or not 0 < amount_minor <= MAX_ABS_MINOR
    ):
        raise InvalidInput(E.INVALID_HOTEL_INPUT, f"{what} is a whole number above zero")
    return amount_minor


def operation_conflict(operation_id: str) -> Conflict:
    return Conflict(
        E.HOTEL_OPERATION_CONFLICT,
        f"operation {operation_id!r} was made already with other content",
        operation_id=operation_id,
    )


def _post(
    conn: Connection,
    tenant_id: int,
    spec: TransferSpec,
    actor: Actor,
    now: datetime,
    operation_id: str,
) -> PostedTransfer:
    (outcome,) = post_transfers(conn, tenant_id=tenant_id, specs=[spec], actor=actor, now=now)
    if isinstance(outcome, KopilkaError):
        if outcome.code == LedgerErrorCode.IDEMPOTENCY_CONFLICT:
            raise operation_conflict(operation_id)
        raise outcome
    if outcome.replayed:  # our tables did not know the operation: another request's key
        raise operation_conflict(operation_id)
    return outcome


def _folio_row(conn: Connection, tenant_id: int, folio_id: int, *, lock: bool = False) -> Any:
    query = select(hotel_folios).where(
        hotel_folios.c.tenant_id == tenant_id, hotel_folios.c.id == folio_id
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(E.FOLIO_NOT_FOUND, f"folio {folio_id} does not exist")
    return row


def _currency(conn: Connection, tenant_id: int) -> tuple[str, int]:
    from kopilka.tenancy.actions import get_tenant  # tenancy sits above the ledger

    code = get_tenant(conn, tenant_id).currency
    return code, currency_exponent(code)


def type_account(
    conn: Connection, tenant_id: int, currency: str, payment_type_id: int, actor: Actor
) -> int:
    """The account a payment type's money comes from (and refunds go back to)."""
    return system_account_id(
        conn,
        tenant_id=tenant_id,
        unit_code=currency,
        purpose=f"hotel_paid_{payment_type_id}",
        actor=actor,
    )


def _balance(conn: Connection, account_id: int) -> int:
    return int(
        conn.execute(
            select(accounts.c.balance_minor).where(accounts.c.id == account_id)
        ).scalar_one()
    )


def _lines(lines: list[LineIn]) -> list[InvoiceLine]:
    if not isinstance(lines, list) or not 1 <= len(lines) <= MAX_LINES:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, f"a charge has 1 to {MAX_LINES} lines")
    result = []
    for position, line in enumerate(lines, 1):
        name = " ".join(line.name.split()) if isinstance(line.name, str) else ""
        if not 1 <= len(name) <= 200:
            raise InvalidInput(
                E.INVALID_HOTEL_INPUT, f"line {position}: a name of 1 to 200 characters"
            )
        quantity = line.quantity_milli
        if (
            not isinstance(quantity, int)
            or isinstance(quantity, bool)
            or not 0 < quantity <= MAX_QUANTITY_MILLI
        ):
            raise InvalidInput(E.INVALID_HOTEL_INPUT, f"line {position}: a quantity above zero")
        amount = line.amount_minor
        if (
            not isinstance(amount, int)
            or isinstance(amount, bool)
            or not 0 <= amount <= MAX_ABS_MINOR
        ):
            raise InvalidInput(E.INVALID_HOTEL_INPUT, f"line {position}: an amount of zero or more")
        price = line.price_minor
        if price is None:
            price = amount * 1000 // quantity
        elif (
            not isinstance(price, int) or isinstance(price, bool) or not 0 <= price <= MAX_ABS_MINOR
        ):
            raise InvalidInput(E.INVALID_HOTEL_INPUT, f"line {position}: a price of zero or more")
        result.append(InvoiceLine(position, name, quantity, price, amount))
    if sum(x.amount_minor for x in result) <= 0:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, "a charge's lines add up to more than zero")
    return result


# --------------------------------------------------------------------------- reads


def _invoices(conn: Connection, tenant_id: int, where: Any) -> list[InvoiceView]:
    rows = conn.execute(
        select(hotel_invoices)
        .where(hotel_invoices.c.tenant_id == tenant_id, where)
        .order_by(hotel_invoices.c.id)
    ).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    lines: dict[int, list[InvoiceLine]] = {i: [] for i in ids}
    for line in conn.execute(
        select(hotel_invoice_lines)
        .where(hotel_invoice_lines.c.invoice_id.in_(ids))
        .order_by(hotel_invoice_lines.c.invoice_id, hotel_invoice_lines.c.position)
    ):
        lines[line.invoice_id].append(
            InvoiceLine(
                line.position, line.name, line.quantity_milli, line.price_minor, line.amount_minor
            )
        )
    payers = {
        r.payer_guest_id: get_guest(conn, tenant_id, r.payer_guest_id)
        for r in rows
        if r.payer_guest_id is not None
    }
    return [
        InvoiceView(
            r.id,
            r.folio_id,
            payers.get(r.payer_guest_id),
            r.kind,
            r.description,
            r.total_minor,
            r.paid_minor,
            tuple(lines[r.id]),
            r.transfer_id,
            r.voided_at,
            r.terminal_id,
            r.check_id,
            r.closed_at,
            r.created_at,
        )
        for r in rows
    ]


def get_invoice(conn: Connection, tenant_id: int, invoice_id: int) -> InvoiceView:
    found = _invoices(conn, tenant_id, hotel_invoices.c.id == invoice_id)
    if not found:
        raise NotFound(E.INVOICE_NOT_FOUND, f"invoice {invoice_id} does not exist")
    return found[0]


def _payment(row: Any, *, replayed: bool = False) -> PaymentView:
    return PaymentView(
        row.id,
        row.folio_id,
        row.invoice_id,
        row.payment_type_id,
        row.payment_kind,
        row.payment_name,
        row.amount_minor,
        row.refunded_minor,
        row.card_number,
        row.points_unit,
        row.points_minor,
        row.provider,
        row.provider_ref,
        row.payer,
        row.transfer_id,
        row.created_at,
        replayed,
    )


def _refund(row: Any, *, replayed: bool = False) -> RefundView:
    return RefundView(
        row.id,
        row.folio_id,
        row.payment_id,
        row.invoice_id,
        row.payment_type_id,
        row.payment_name,
        row.direction,
        row.amount_minor,
        row.points_minor,
        row.reason,
        row.transfer_id,
        row.created_at,
        replayed,
    )


def get_payment(conn: Connection, tenant_id: int, payment_id: int) -> PaymentView:
    row = conn.execute(
        select(hotel_payments).where(
            hotel_payments.c.tenant_id == tenant_id, hotel_payments.c.id == payment_id
        )
    ).first()
    if row is None:
        raise NotFound(E.PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist")
    return _payment(row)


def get_refund(conn: Connection, tenant_id: int, refund_id: int) -> RefundView:
    row = conn.execute(
        select(hotel_refunds).where(
            hotel_refunds.c.tenant_id == tenant_id, hotel_refunds.c.id == refund_id
        )
    ).first()
    if row is None:
        raise NotFound(E.PAYMENT_NOT_FOUND, f"refund {refund_id} does not exist")
    return _refund(row)


def _allocations(conn: Connection, payment_ids: list[int]) -> dict[int, dict[int, int]]:
    """Per payment, per invoice: what the payment pays of the invoice now."""
    result: dict[int, dict[int, int]] = {p: {} for p in payment_ids}
    if not payment_ids:
        return result
    for row in conn.execute(
        select(
            hotel_allocations.c.payment_id,
            hotel_allocations.c.invoice_id,
            hotel_allocations.c.amount_minor,
        )
        .where(hotel_allocations.c.payment_id.in_(payment_ids))
        .order_by(hotel_allocations.c.id)
    ):
        per = result[row.payment_id]
        per[row.invoice_id] = per.get(row.invoice_id, 0) + row.amount_minor
    for per in result.values():
        for invoice_id in [i for i, a in per.items() if a == 0]:
            del per[invoice_id]
    return result


def get_folio(conn: Connection, tenant_id: int, folio_id: int) -> FolioView:
    row = _folio_row(conn, tenant_id, folio_id)
    currency, exponent = _currency(conn, tenant_id)
    stay = get_stay(conn, tenant_id, row.stay_id)
    invoices = _invoices(conn, tenant_id, hotel_invoices.c.folio_id == folio_id)
    payments = [
        _payment(p)
        for p in conn.execute(
            select(hotel_payments)
            .where(hotel_payments.c.tenant_id == tenant_id, hotel_payments.c.folio_id == folio_id)
            .order_by(hotel_payments.c.id)
        )
    ]
    refunds = [
        _refund(r)
        for r in conn.execute(
            select(hotel_refunds)
            .where(hotel_refunds.c.tenant_id == tenant_id, hotel_refunds.c.folio_id == folio_id)
            .order_by(hotel_refunds.c.id)
        )
    ]
    allocations = _allocations(conn, [p.id for p in payments])
    credit = sum(
        p.amount_minor - p.refunded_minor - sum(allocations[p.id].values()) for p in payments
    )
    return FolioView(
        row.id,
        stay,
        row.guest_id,
        row.account_id,
        currency,
        exponent,
        _balance(conn, row.account_id),
        tuple(invoices),
        tuple(payments),
        tuple(refunds),
        credit,
        allocations,
    )


# --------------------------------------------------------------------------- charges


def charge(
    conn: Connection,
    *,
    tenant_id: int,
    folio_id: int,
    kind: str,
    description: str,
    lines: list[LineIn],
    operation_id: str,
    actor: Actor,
    payer_guest_id: int | None = None,
    terminal_id: int | None = None,
    check_id: str | None = None,
    closed_at: datetime | None = None,
    now: datetime | None = None,
) -> InvoiceView:
    """Charge the folio: an unpaid invoice with its lines (H-1). A POS order (``kind``
    ``pos_order``) names its terminal and check id, which identify it; a charge to a stay
    checked out or cancelled is refused."""
    moment = as_utc(now) if now else utcnow()
    if kind not in ("accommodation", "service", "pos_order"):
        raise InvalidInput(E.INVALID_HOTEL_INPUT, f"{kind!r} is not a kind of charge")
    is_order = kind == "pos_order"
    if is_order != (terminal_id is not None):
        raise InvalidInput(E.INVALID_HOTEL_INPUT, "only a terminal posts a POS order")
    operation_id = operation_id_of(operation_id)
    if is_order:
        check_id = operation_id_of(check_id, "a check id")
        operation_id = f"pos:{terminal_id}:{check_id}"
    description = " ".join(description.split()) if isinstance(description, str) else ""
    if not 1 <= len(description) <= 200:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, "a description of 1 to 200 characters")
    checked = _lines(lines)
    total = sum(x.amount_minor for x in checked)
    check_amount(total, "the total")
    folio = _folio_row(conn, tenant_id, folio_id, lock=True)
    stay = get_stay(conn, tenant_id, folio.stay_id)
    payer = payer_guest_id if payer_guest_id is not None else folio.guest_id
    if payer is None and stay.main_guest is not None:
        payer = stay.main_guest.id
    if payer is not None and not any(g.id == payer for g in stay.guests):
        raise NotFound(E.GUEST_NOT_FOUND, f"guest {payer} is not a guest of stay {stay.id}")
    closed = as_utc(closed_at) if closed_at is not None else (moment if is_order else None)
    digest = request_hash(
        {
            "folio": folio_id,
            "kind": kind,
            "description": description,
            "payer": payer,
            "closed_at": None if closed_at is None else as_utc(closed_at),
            "lines": [(x.name, x.quantity_milli, x.price_minor, x.amount_minor) for x in checked],
        }
    )
    known = conn.execute(
        select(hotel_invoices.c.id, hotel_invoices.c.request_hash).where(
            hotel_invoices.c.tenant_id == tenant_id,
            hotel_invoices.c.operation_id == operation_id,
        )
    ).first()
    if known is not None:
        if known.request_hash != digest:
            raise operation_conflict(check_id if is_order and check_id else operation_id)
        invoice = get_invoice(conn, tenant_id, known.id)
        return _replayed_invoice(invoice)
    if stay.status in (CHECKED_OUT, CANCELLED):
        raise Refused(
            E.STAY_CLOSED,
            f"stay {stay.id} is {stay.status.replace('_', ' ')}; nothing more can be charged",
            stay_id=stay.id,
        )
    invoice_id = conn.execute(
        hotel_invoices.insert().returning(hotel_invoices.c.id),
        {
            "tenant_id": tenant_id,
            "folio_id": folio_id,
            "payer_guest_id": payer,
            "kind": kind,
            "description": description,
            "total_minor": total,
            "paid_minor": 0,
            "operation_id": operation_id,
            "request_hash": digest,
            "terminal_id": terminal_id,
            "check_id": check_id if is_order else None,
            "closed_at": closed,
            "created_at": moment,
        },
    ).scalar_one()
    conn.execute(
        hotel_invoice_lines.insert(),
        [
            {
                "tenant_id": tenant_id,
                "invoice_id": invoice_id,
                "position": x.position,
                "name": x.name,
                "quantity_milli": x.quantity_milli,
                "price_minor": x.price_minor,
                "amount_minor": x.amount_minor,
            }
            for x in checked
        ],
    )
    currency, _ = _currency(conn, tenant_id)
    posted = _post(
        conn,
        tenant_id,
        simple_transfer(
            f"hotel-invoice:{invoice_id}",
            debit_account_id=folio.account_id,
            credit_account_id=system_account_id(
                conn, tenant_id=tenant_id, unit_code=currency, purpose=SALES, actor=actor
            ),
            amount_minor=total,
            kind="hotel_charge",
            description=f"invoice {invoice_id}: {description}"[:200],
            meta={"folio": folio_id, "invoice": invoice_id, "kind": kind},
        ),
        actor,
        moment,
        operation_id,
    )
    conn.execute(
        update(hotel_invoices)
        .where(hotel_invoices.c.id == invoice_id)
        .values(transfer_id=posted.id)
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="hotel_invoice.create",
        object_type="hotel_invoice",
        object_id=invoice_id,
        details={"folio_id": folio_id, "kind": kind, "total_minor": total, "check_id": check_id},
    )
    return get_invoice(conn, tenant_id, invoice_id)


def _replayed_invoice(invoice: InvoiceView) -> InvoiceView:
    from dataclasses import replace

    return replace(invoice, replayed=True)


def void_invoice(
    conn: Connection,
    *,
    tenant_id: int,
    invoice_id: int,
    actor: Actor,
    terminal_id: int | None = None,
    now: datetime | None = None,
) -> InvoiceView:
    """Void an invoice nothing has paid: its charge reversed. A POS order only by its
    own terminal (P-7); once a payment touches it, ``invoice_paid``: the hotel refunds.
    Voiding a void invoice again answers as the first time."""
    moment = as_utc(now) if now else utcnow()
    row = conn.execute(
        select(hotel_invoices).where(
            hotel_invoices.c.tenant_id == tenant_id, hotel_invoices.c.id == invoice_id
        )
    ).first()
    if row is None:
        raise NotFound(E.INVOICE_NOT_FOUND, f"invoice {invoice_id} does not exist")
    if terminal_id is not None and row.terminal_id != terminal_id:
        raise NotFound(E.INVOICE_NOT_FOUND, f"invoice {invoice_id} does not exist")
    if row.kind == "pos_order" and terminal_id is None:
        raise Refused(
            E.POS_ORDER_TERMINAL_ONLY,
            f"invoice {invoice_id} is a POS order: only the terminal that posted it cancels it; "
            "once paid, refund it",
            invoice_id=invoice_id,
        )
    folio = _folio_row(conn, tenant_id, row.folio_id, lock=True)
    row = conn.execute(select(hotel_invoices).where(hotel_invoices.c.id == invoice_id)).one()
    if row.voided_at is not None:
        return _replayed_invoice(get_invoice(conn, tenant_id, invoice_id))
    touched = conn.execute(
        select(hotel_allocations.c.id).where(hotel_allocations.c.invoice_id == invoice_id).limit(1)
    ).first()
    if row.paid_minor > 0 or touched is not None:
        raise Refused(
            E.INVOICE_PAID,
            f"invoice {invoice_id} has been paid; it cannot be cancelled, only refunded at the "
            "front desk",
            invoice_id=invoice_id,
        )
    currency, _ = _currency(conn, tenant_id)
    posted = _post(
        conn,
        tenant_id,
        simple_transfer(
            f"hotel-invoice-void:{invoice_id}",
            debit_account_id=system_account_id(
                conn, tenant_id=tenant_id, unit_code=currency, purpose=SALES, actor=actor
            ),
            credit_account_id=folio.account_id,
            amount_minor=row.total_minor,
            kind="hotel_charge_void",
            description=f"invoice {invoice_id} voided",
            corrects_transfer_id=row.transfer_id,
            meta={"folio": row.folio_id, "invoice": invoice_id},
        ),
        actor,
        moment,
        f"void:{invoice_id}",
    )
    conn.execute(
        update(hotel_invoices)
        .where(hotel_invoices.c.id == invoice_id)
        .values(voided_at=moment, void_transfer_id=posted.id)
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="hotel_invoice.void",
        object_type="hotel_invoice",
        object_id=invoice_id,
        details={"total_minor": row.total_minor},
    )
    return get_invoice(conn, tenant_id, invoice_id)


# --------------------------------------------------------------------------- payments


def usable_type(conn: Connection, tenant_id: int, payment_type_id: int) -> PaymentType:
    payment_type = get_payment_type(conn, tenant_id, payment_type_id)
    if not payment_type.enabled:
        raise Refused(
            E.PAYMENT_TYPE_NOT_USABLE,
            f"payment type {payment_type.name!r} is switched off",
            payment_type_id=payment_type.id,
        )
    if payment_type.kind == PaymentKind.ROOM_CHARGE:
        raise Refused(
            E.PAYMENT_TYPE_NOT_USABLE,
            f"{payment_type.name!r} charges a room; it does not pay a folio",
            payment_type_id=payment_type.id,
        )
    return payment_type


def _open_invoice(conn: Connection, tenant_id: int, folio_id: int, invoice_id: int) -> Any:
    row = conn.execute(
        select(hotel_invoices)
        .where(
            hotel_invoices.c.tenant_id == tenant_id,
            hotel_invoices.c.id == invoice_id,
            hotel_invoices.c.folio_id == folio_id,
        )
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(E.INVOICE_NOT_FOUND, f"invoice {invoice_id} is not on folio {folio_id}")
    if row.voided_at is not None:
        raise Refused(E.INVOICE_VOID, f"invoice {invoice_id} is void", invoice_id=invoice_id)
    return row


def _allocate(
    conn: Connection,
    tenant_id: int,
    payment_id: int,
    invoices: list[tuple[int, int]],
    amount_minor: int,
    moment: datetime,
) -> int:
    """Spread up to ``amount_minor`` of a payment over ``(invoice id, owed)`` in order;
    what is left over."""
    left = amount_minor
    for invoice_id, owed in invoices:
        part = min(left, owed)
        if part <= 0:
            continue
        conn.execute(
            hotel_allocations.insert(),
            {
                "tenant_id": tenant_id,
                "payment_id": payment_id,
                "invoice_id": invoice_id,
                "amount_minor": part,
                "created_at": moment,
            },
        )
        conn.execute(
            update(hotel_invoices)
            .where(hotel_invoices.c.id == invoice_id)
            .values(paid_minor=hotel_invoices.c.paid_minor + part)
        )
        left -= part
        if left == 0:
            break
    return left


def _open_invoices(conn: Connection, tenant_id: int, folio_id: int) -> list[tuple[int, int]]:
    rows = conn.execute(
        select(hotel_invoices.c.id, hotel_invoices.c.total_minor, hotel_invoices.c.paid_minor)
        .where(
            hotel_invoices.c.tenant_id == tenant_id,
            hotel_invoices.c.folio_id == folio_id,
            hotel_invoices.c.voided_at.is_(None),
            hotel_invoices.c.paid_minor < hotel_invoices.c.total_minor,
        )
        .order_by(hotel_invoices.c.id)
        .with_for_update()
    )
    return [(r.id, r.total_minor - r.paid_minor) for r in rows]


@dataclass(frozen=True, slots=True)
class PointsPart:
    """What a points payment wrote off, and where (set by kopilka.hotel.points)."""

    card_number: str
    unit_code: str
    points_minor: int
    provider: str
    provider_ref: str


def _known_payment(
    conn: Connection, tenant_id: int, operation_id: str, digest: str
) -> PaymentView | None:
    known = conn.execute(
        select(hotel_payments).where(
            hotel_payments.c.tenant_id == tenant_id, hotel_payments.c.operation_id == operation_id
        )
    ).first()
    if known is None:
        return None
    if known.request_hash != digest:
        raise operation_conflict(operation_id)
    return _payment(known, replayed=True)


def payment_digest(
    folio_id: int,
    payment_type_id: int,
    amount_minor: int,
    invoice_id: int | None,
    payer: str,
    card_number: str | None = None,
) -> str:
    return request_hash(
        {
            "folio": folio_id,
            "type": payment_type_id,
            "amount": amount_minor,
            "invoice": invoice_id,
            "payer": payer,
            "card": card_number,
        }
    )


def pay(
    conn: Connection,
    *,
    tenant_id: int,
    folio_id: int,
    payment_type_id: int,
    amount_minor: int,
    operation_id: str,
    actor: Actor,
    invoice_id: int | None = None,
    payer: str = "",
    now: datetime | None = None,
    points: PointsPart | None = None,
    digest: str | None = None,
    certificate: str | None = None,
) -> PaymentView:
    """Take a payment on the folio by a payment type (H-2): for ``invoice_id`` (never
    more than it still owes), or for the folio (its open invoices, oldest first; the rest
    stays as the guest's credit). Points pay through ``kopilka.hotel.points``; a gift
    certificate type names the ``certificate``, whose balance pays (all or nothing)."""
    moment = as_utc(now) if now else utcnow()
    operation_id = operation_id_of(operation_id)
    check_amount(amount_minor)
    payer = " ".join(payer.split())[:200] if isinstance(payer, str) else ""
    certificate = " ".join(certificate.split()) if isinstance(certificate, str) else None
    digest = digest or payment_digest(
        folio_id, payment_type_id, amount_minor, invoice_id, payer, certificate or None
    )
    folio = _folio_row(conn, tenant_id, folio_id, lock=True)
    known = _known_payment(conn, tenant_id, operation_id, digest)
    if known is not None:
        return known
    payment_type = usable_type(conn, tenant_id, payment_type_id)
    if payment_type.kind == PaymentKind.POINTS and points is None:
        raise Refused(
            E.PAYMENT_TYPE_NOT_USABLE,
            f"{payment_type.name!r} pays with points: use paying with points",
            payment_type_id=payment_type.id,
        )
    is_certificate = payment_type.kind == PaymentKind.GIFT_CERTIFICATE
    if is_certificate and not certificate:
        raise InvalidInput(
            E.INVALID_HOTEL_INPUT,
            f"{payment_type.name!r} pays with a gift certificate: give its number",
        )
    if invoice_id is not None:
        invoice = _open_invoice(conn, tenant_id, folio_id, invoice_id)
        owed = invoice.total_minor - invoice.paid_minor
        if amount_minor > owed:
            currency, exponent = _currency(conn, tenant_id)
            raise Refused(
                E.OVERPAYMENT,
                f"invoice {invoice_id} owes {format_amount(owed, exponent)} {currency}; "
                f"{format_amount(amount_minor, exponent)} is more",
                owed=format_amount(owed, exponent),
            )
        targets = [(invoice_id, owed)]
    else:
        targets = _open_invoices(conn, tenant_id, folio_id)
    if is_certificate:
        assert certificate is not None
        points = _certificate_pays(
            conn, tenant_id, folio_id, certificate, amount_minor, operation_id, actor, moment
        )
    payment_id = conn.execute(
        hotel_payments.insert().returning(hotel_payments.c.id),
        {
            "tenant_id": tenant_id,
            "folio_id": folio_id,
            "invoice_id": invoice_id,
            "payment_type_id": payment_type.id,
            "payment_kind": payment_type.kind.value,
            "payment_name": payment_type.name,
            "amount_minor": amount_minor,
            "refunded_minor": 0,
            "card_number": points.card_number if points else None,
            "points_unit": points.unit_code or None if points else None,
            "points_minor": points.points_minor or None if points else None,
            "provider": points.provider if points else None,
            "provider_ref": points.provider_ref if points else None,
            "payer": payer,
            "operation_id": operation_id,
            "request_hash": digest,
            "created_at": moment,
        },
    ).scalar_one()
    _allocate(conn, tenant_id, payment_id, targets, amount_minor, moment)
    currency, _ = _currency(conn, tenant_id)
    posted = _post(
        conn,
        tenant_id,
        simple_transfer(
            f"hotel-payment:{payment_id}",
            debit_account_id=type_account(conn, tenant_id, currency, payment_type.id, actor),
            credit_account_id=folio.account_id,
            amount_minor=amount_minor,
            kind="hotel_payment",
            description=f"folio {folio_id} paid by {payment_type.name}"[:200],
            meta={
                "folio": folio_id,
                "payment": payment_id,
                "payment_type": payment_type.id,
                **({"card": points.card_number, "points": points.points_minor} if points else {}),
            },
        ),
        actor,
        moment,
        operation_id,
    )
    conn.execute(
        update(hotel_payments)
        .where(hotel_payments.c.id == payment_id)
        .values(transfer_id=posted.id)
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="hotel_payment.create",
        object_type="hotel_payment",
        object_id=payment_id,
        details={
            "folio_id": folio_id,
            "payment_type_id": payment_type.id,
            "amount_minor": amount_minor,
            "invoice_id": invoice_id,
        },
    )
    return get_payment(conn, tenant_id, payment_id)


def _certificate_pays(
    conn: Connection,
    tenant_id: int,
    folio_id: int,
    number: str,
    amount_minor: int,
    operation_id: str,
    actor: Actor,
    moment: datetime,
) -> PointsPart:
    """The certificate's money pays (its own ledger transfer, ``kopilka.loyalty.
    certificates``); what the folio payment keeps of it."""
    from kopilka.loyalty import certificates as gc

    paid = gc.pay_with_certificate(
        conn,
        tenant_id=tenant_id,
        number=number,
        amount_minor=amount_minor,
        operation_id=certificate_operation(operation_id),
        check_id=f"folio {folio_id}",
        actor=actor,
        now=moment,
    )
    if paid.replayed:  # the certificate knew the operation: not this payment's
        raise operation_conflict(operation_id)
    return PointsPart(paid.certificate_number, "", 0, CERTIFICATE, paid.operation_id)


def certificate_operation(operation_id: str) -> str:
    """The operation id a folio payment asks a gift certificate with."""
    return f"folio-{operation_id}"[:100]


def settle_from_credit(
    conn: Connection, *, tenant_id: int, folio_id: int, invoice_id: int, now: datetime | None = None
) -> int:
    """Pay an invoice from the folio's credit (its payments' unallocated parts, oldest
    first): a deposit paying a POS order (seed 001). How much it paid."""
    moment = as_utc(now) if now else utcnow()
    _folio_row(conn, tenant_id, folio_id, lock=True)
    invoice = _open_invoice(conn, tenant_id, folio_id, invoice_id)
    owed = invoice.total_minor - invoice.paid_minor
    payments = conn.execute(
        select(hotel_payments.c.id, hotel_payments.c.amount_minor, hotel_payments.c.refunded_minor)
        .where(hotel_payments.c.tenant_id == tenant_id, hotel_payments.c.folio_id == folio_id)
        .order_by(hotel_payments.c.id)
    ).all()
    allocated = _allocations(conn, [p.id for p in payments])
    paid = 0
    for p in payments:
        free = p.amount_minor - p.refunded_minor - sum(allocated[p.id].values())
        if free <= 0 or paid == owed:
            continue
        part = min(free, owed - paid)
        _allocate(conn, tenant_id, p.id, [(invoice_id, part)], part, moment)
        paid += part
    return paid


# --------------------------------------------------------------------------- refunds


def refund_share(total: int, figure: int, before: int, after: int) -> int:
    """The part of ``figure`` that refunds from ``before`` to ``after`` (of ``total``)
    carry; cumulative, so refunds in parts add up to exactly the whole."""
    return figure * after // total - figure * before // total


def refund(
    conn: Connection,
    *,
    tenant_id: int,
    folio_id: int,
    payment_id: int,
    amount_minor: int,
    payment_type_id: int,
    direction: str,
    operation_id: str,
    actor: Actor,
    invoice_id: int | None = None,
    reason: str = "",
    now: datetime | None = None,
    points_back: Any = None,
) -> RefundView:
    """Give back ``amount_minor`` of a payment (H-2): by a payment type, in a direction
    (cash, card, deposit, bank transfer); never more than the payment brought less its
    refunds, nor (with ``invoice_id``) more than it pays of that invoice. A points
    payment is refunded in points, by its own type: ``points_back(points_minor,
    operation_id) -> provider ref`` gives them back to the card."""
    moment = as_utc(now) if now else utcnow()
    operation_id = operation_id_of(operation_id)
    check_amount(amount_minor)
    if direction not in REFUND_DIRECTIONS:
        raise InvalidInput(
            E.INVALID_DIRECTION,
            f"{direction!r} is not a direction of a refund ({', '.join(REFUND_DIRECTIONS)})",
        )
    reason = " ".join(reason.split())[:500] if isinstance(reason, str) else ""
    digest = request_hash(
        {
            "folio": folio_id,
            "payment": payment_id,
            "amount": amount_minor,
            "type": payment_type_id,
            "direction": direction,
            "invoice": invoice_id,
            "reason": reason,
        }
    )
    folio = _folio_row(conn, tenant_id, folio_id, lock=True)
    known = conn.execute(
        select(hotel_refunds).where(
            hotel_refunds.c.tenant_id == tenant_id, hotel_refunds.c.operation_id == operation_id
        )
    ).first()
    if known is not None:
        if known.request_hash != digest:
            raise operation_conflict(operation_id)
        return _refund(known, replayed=True)
    payment = conn.execute(
        select(hotel_payments)
        .where(
            hotel_payments.c.tenant_id == tenant_id,
            hotel_payments.c.id == payment_id,
            hotel_payments.c.folio_id == folio_id,
        )
        .with_for_update()
    ).first()
    if payment is None:
        raise NotFound(E.PAYMENT_NOT_FOUND, f"payment {payment_id} is not on folio {folio_id}")
    currency, exponent = _currency(conn, tenant_id)
    left = payment.amount_minor - payment.refunded_minor
    if amount_minor > left:
        raise Refused(
            E.REFUND_TOO_LARGE,
            f"payment {payment_id} can give back at most {format_amount(left, exponent)} "
            f"{currency}; {format_amount(amount_minor, exponent)} was asked",
            refundable=format_amount(left, exponent),
        )
    is_points = payment.payment_kind == PaymentKind.POINTS.value
    by_certificate = payment.provider == CERTIFICATE
    if (is_points or by_certificate) and payment_type_id != payment.payment_type_id:
        raise Refused(
            E.PAYMENT_TYPE_NOT_USABLE,
            "a payment with points or a gift certificate goes back the way it came, by "
            "the same payment type",
        )
    refund_type = (
        get_payment_type(conn, tenant_id, payment_type_id)
        if is_points or by_certificate
        else usable_type(conn, tenant_id, payment_type_id)
    )
    if refund_type.kind == PaymentKind.GIFT_CERTIFICATE and not by_certificate:
        raise Refused(
            E.PAYMENT_TYPE_NOT_USABLE,
            "money paid otherwise is not refunded onto a gift certificate",
            payment_type_id=payment_type_id,
        )
    if not is_points and refund_type.kind == PaymentKind.POINTS:
        raise Refused(
            E.PAYMENT_TYPE_NOT_USABLE,
            "money paid is not refunded in points",
            payment_type_id=payment_type_id,
        )
    allocated = _allocations(conn, [payment_id])[payment_id]
    unallocated = payment.amount_minor - payment.refunded_minor - sum(allocated.values())
    take_back: list[tuple[int, int]] = []
    if invoice_id is not None:
        has = allocated.get(invoice_id, 0)
        if amount_minor > has:
            raise Refused(
                E.REFUND_TOO_LARGE,
                f"payment {payment_id} pays {format_amount(has, exponent)} {currency} of invoice "
                f"{invoice_id}; {format_amount(amount_minor, exponent)} was asked",
                refundable=format_amount(has, exponent),
            )
        take_back = [(invoice_id, amount_minor)]
    else:
        need = amount_minor - min(amount_minor, unallocated)  # the credit goes first
        for inv, has in sorted(allocated.items(), reverse=True):
            if need == 0:
                break
            part = min(need, has)
            take_back.append((inv, part))
            need -= part
        assert need == 0, "a payment's allocations and credit cover what is left of it"
    points_minor = None
    provider_ref = None
    if is_points:
        assert payment.points_minor is not None
        points_minor = refund_share(
            payment.amount_minor,
            payment.points_minor,
            payment.refunded_minor,
            payment.refunded_minor + amount_minor,
        )
        if points_back is None:
            raise InvalidInput(E.INVALID_HOTEL_INPUT, "points go back through the loyalty provider")
        if points_minor > 0:
            provider_ref = points_back(points_minor, operation_id)
    if by_certificate:
        from kopilka.loyalty import certificates as gc

        assert payment.card_number is not None and payment.provider_ref is not None
        back = gc.refund_payment(
            conn,
            tenant_id=tenant_id,
            number=payment.card_number,
            operation_id=payment.provider_ref,
            refund_id=certificate_operation(operation_id),
            amount_minor=amount_minor,
            actor=actor,
            now=moment,
        )
        provider_ref = back.refund_id
    refund_id = conn.execute(
        hotel_refunds.insert().returning(hotel_refunds.c.id),
        {
            "tenant_id": tenant_id,
            "folio_id": folio_id,
            "payment_id": payment_id,
            "invoice_id": invoice_id,
            "payment_type_id": refund_type.id,
            "payment_name": refund_type.name,
            "direction": direction,
            "amount_minor": amount_minor,
            "points_minor": points_minor,
            "provider_ref": provider_ref,
            "reason": reason,
            "operation_id": operation_id,
            "request_hash": digest,
            "created_at": moment,
        },
    ).scalar_one()
    for inv, part in take_back:
        conn.execute(
            hotel_allocations.insert(),
            {
                "tenant_id": tenant_id,
                "payment_id": payment_id,
                "invoice_id": inv,
                "refund_id": refund_id,
                "amount_minor": -part,
                "created_at": moment,
            },
        )
        conn.execute(
            update(hotel_invoices)
            .where(hotel_invoices.c.id == inv)
            .values(paid_minor=hotel_invoices.c.paid_minor - part)
        )
    conn.execute(
        update(hotel_payments)
        .where(hotel_payments.c.id == payment_id)
        .values(refunded_minor=hotel_payments.c.refunded_minor + amount_minor)
    )
    posted = _post(
        conn,
        tenant_id,
        simple_transfer(
            f"hotel-refund:{refund_id}",
            debit_account_id=folio.account_id,
            credit_account_id=type_account(conn, tenant_id, currency, refund_type.id, actor),
            amount_minor=amount_minor,
            kind="hotel_refund",
            description=f"refund of payment {payment_id} to {direction}"[:200],
            corrects_transfer_id=payment.transfer_id,
            meta={"folio": folio_id, "payment": payment_id, "refund": refund_id},
        ),
        actor,
        moment,
        operation_id,
    )
    conn.execute(
        update(hotel_refunds).where(hotel_refunds.c.id == refund_id).values(transfer_id=posted.id)
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="hotel_refund.create",
        object_type="hotel_refund",
        object_id=refund_id,
        details={
            "payment_id": payment_id,
            "amount_minor": amount_minor,
            "direction": direction,
            "payment_type_id": refund_type.id,
        },
    )
    return get_refund(conn, tenant_id, refund_id)
