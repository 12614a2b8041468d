"""Fiscal receipts (SPEC H-6): asked for with a payment, sent later, never lost.

The life of a receipt::

    request_receipt ──> pending ──submit──> wait ──report──> done
      (caller's            │  ^                │
       transaction)        │  └─ transient ────┤ (no answer: asked again later)
                           └──── refused ──────┴──> failed ──retry_receipt──> pending

* ``request_receipt`` writes a ``pending`` row in the caller's transaction (the folio
  payment's own), with no network call: a register that is slow or down never holds up
  or undoes a payment. The same source (``source_type``, ``source_id``) asked again
  returns the receipt already there.
* ``send_receipt`` (and ``process_due``, for the job, the CLI and the server's clock)
  calls the register **outside** any database transaction, then records what came of it
  in a short one: accepted (``wait``, or ``done``), refused (``failed``, the register's
  words in ``last_error``), or a transient failure (still ``pending``, ``attempts`` + 1,
  ``next_attempt_at`` put off by an exponential back-off: 30 s, 1 min, 2 min, ... at most
  1 hour). A receipt in ``wait`` is asked about in the same way (10 s, 20 s, ... at most
  10 minutes apart) until it is ``done`` or ``failed``.
* ``retry_receipt`` makes a failed or pending receipt due now (and a waiting one asked
  about now). The register is idempotent by ``external_id``: sending the same receipt
  twice prints it once, so a transient failure is retried with the same id. A refused
  receipt is registered under its id as it was, and the same id would get the same
  answer: its retry gets a new one, ``<external id>-r2``, ``-r3``, ...

This module never touches the ledger: a failed receipt leaves its payment as it is.

The payload (what the hotel's folio payments pass; amounts in minor units)::

    {"items": [{"name": "Проживание, номер 12", "price_minor": 350000,
                "quantity_milli": 2000, "amount_minor": 700000,
                "payment_object": "service", "vat": "none"}],
     "payments": [{"kind": "card", "amount_minor": 700000}],
     "total_minor": 700000, "exponent": 2}

Items, payments and the total add up exactly; each item's amount is its price times its
quantity, to within one minor unit. An item may name its ``payment_method`` (tag 1214,
``full_payment`` by default). Payment kinds are those of the payment types directory;
``kopilka.fiscal.atol.PAYMENT_TYPES`` says how each is told to the fiscal drive.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.fiscal import adapters
from kopilka.fiscal.adapters import ReceiptToSend, ReportStatus, SubmitOutcome
from kopilka.fiscal.atol import PAYMENT_METHODS, PAYMENT_OBJECTS, VAT_TYPES
from kopilka.fiscal.error_codes import FiscalErrorCode as E
from kopilka.fiscal.registers import CashRegister, get_register
from kopilka.fiscal.schema import cash_registers, fiscal_receipts
from kopilka.ledger.posting import run_transaction
from kopilka.payments.types import PaymentKind
from kopilka.tenancy.audit import record_audit

log = logging.getLogger(__name__)

SELL, SELL_REFUND = "sell", "sell_refund"
OPERATIONS = (SELL, SELL_REFUND)
PENDING, WAIT, DONE, FAILED = "pending", "wait", "done", "failed"
STATUSES = (PENDING, WAIT, DONE, FAILED)

MAX_ITEMS = 100
MAX_PAYMENTS = 10
MAX_ITEM_NAME = 128  # tag 1030
# The largest sum a fiscal drive keeps: 42 949 672.95 roubles, in kopecks.
MAX_AMOUNT_MINOR = 4_294_967_295
MAX_QUANTITY_MILLI = 99_999_999  # 99 999.999
_SOURCE_TYPE = re.compile(r"^[a-z][a-z0-9_.\-]{0,31}$")
_PHONE_NOISE = re.compile(r"[\s\-().]")
_MAX_ID = 2**63 - 1

SEND_BACKOFF = timedelta(seconds=30)
SEND_BACKOFF_MAX = timedelta(hours=1)
POLL_BACKOFF = timedelta(seconds=10)
POLL_BACKOFF_MAX = timedelta(minutes=10)
# A receipt ``process_due`` has taken is not taken by another process for this long: more
# than the longest exchange with a register (a token, a request, a renewal, 60 s each).
CLAIM_LEASE = timedelta(minutes=5)
DUE_BATCH = 500


@dataclass(frozen=True, slots=True)
class ReceiptView:
    id: int
    tenant_id: int
    register_id: int
    register_name: str
    operation: str  # sell | sell_refund
    source_type: str
    source_id: int
    external_id: str
    status: str  # pending | wait | done | failed
    provider_uuid: str | None
    contact_email: str | None
    contact_phone: str | None
    payload: dict[str, Any]
    fiscal: dict[str, Any] | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def total_minor(self) -> int:
        return int(self.payload["total_minor"])

    @property
    def exponent(self) -> int:
        return int(self.payload["exponent"])

    @property
    def retryable(self) -> bool:
        """Whether ``retry_receipt`` takes it: anything not done yet."""
        return self.status != DONE


def external_id_for(tenant_id: int, source_type: str, source_id: int) -> str:
    """The register's idempotency key of a source's receipt (its first sending)."""
    return f"kopilka-{tenant_id}-{source_type}-{source_id}"


# --------------------------------------------------------------------------- checking


def _invalid(detail: str, code: E = E.INVALID_RECEIPT) -> InvalidInput:
    return InvalidInput(code, detail)


def _int(value: object, what: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _invalid(f"{what} is a whole number from {low} to {high}, not {value!r}")
    return value


def _keys(value: object, what: str, required: set[str], optional: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid(f"{what} is an object")
    missing = sorted(required - set(value))
    unknown = sorted(set(value) - required - optional)
    if missing or unknown:
        raise _invalid(
            f"{what} needs {', '.join(sorted(required))}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(map(str, unknown))}" if unknown else "")
        )
    return dict(value)


def _item(raw: object, index: int) -> dict[str, Any]:
    what = f"items[{index}]"
    item = _keys(
        raw,
        what,
        {"name", "price_minor", "quantity_milli", "amount_minor", "payment_object", "vat"},
        frozenset({"payment_method"}),
    )
    name = item["name"].strip() if isinstance(item["name"], str) else ""
    if not 1 <= len(name) <= MAX_ITEM_NAME:
        raise _invalid(f"{what}.name is 1 to {MAX_ITEM_NAME} characters")
    price = _int(item["price_minor"], f"{what}.price_minor", 0, MAX_AMOUNT_MINOR)
    quantity = _int(item["quantity_milli"], f"{what}.quantity_milli", 1, MAX_QUANTITY_MILLI)
    amount = _int(item["amount_minor"], f"{what}.amount_minor", 0, MAX_AMOUNT_MINOR)
    # The price times the quantity, to within one minor unit (a fiscal drive's tolerance).
    if abs(price * quantity - amount * 1000) > 1000:
        raise _invalid(
            f"{what}: amount_minor {amount} is not price_minor {price} times "
            f"quantity_milli {quantity} / 1000",
            E.RECEIPT_SUM_MISMATCH,
        )
    if item["payment_object"] not in PAYMENT_OBJECTS:
        raise _invalid(
            f"{what}.payment_object is one of {', '.join(PAYMENT_OBJECTS)}, "
            f"not {item['payment_object']!r}"
        )
    if item["vat"] not in VAT_TYPES:
        raise _invalid(f"{what}.vat is one of {', '.join(VAT_TYPES)}, not {item['vat']!r}")
    clean: dict[str, Any] = {
        "name": name,
        "price_minor": price,
        "quantity_milli": quantity,
        "amount_minor": amount,
        "payment_object": item["payment_object"],
        "vat": item["vat"],
    }
    if item.get("payment_method") is not None:
        if item["payment_method"] not in PAYMENT_METHODS:
            raise _invalid(
                f"{what}.payment_method is one of {', '.join(PAYMENT_METHODS)}, "
                f"not {item['payment_method']!r}"
            )
        clean["payment_method"] = item["payment_method"]
    return clean


def _payment(raw: object, index: int) -> dict[str, Any]:
    what = f"payments[{index}]"
    payment = _keys(raw, what, {"kind", "amount_minor"}, frozenset())
    try:
        kind = PaymentKind(payment["kind"])
    except ValueError as error:
        raise _invalid(
            f"{what}.kind is one of {', '.join(PaymentKind)}, not {payment['kind']!r}"
        ) from error
    amount = _int(payment["amount_minor"], f"{what}.amount_minor", 1, MAX_AMOUNT_MINOR)
    return {"kind": kind.value, "amount_minor": amount}


def check_payload(payload: object) -> dict[str, Any]:
    """The payload in its stored form, checked (see the module's docstring); otherwise
    ``invalid_receipt`` or ``receipt_sum_mismatch`` saying what is wrong."""
    raw = _keys(payload, "payload", {"items", "payments", "total_minor", "exponent"}, frozenset())
    items, payments = raw["items"], raw["payments"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise _invalid(f"payload.items is a list of 1 to {MAX_ITEMS} items")
    if not isinstance(payments, list) or not 1 <= len(payments) <= MAX_PAYMENTS:
        raise _invalid(f"payload.payments is a list of 1 to {MAX_PAYMENTS} payments")
    clean: dict[str, Any] = {
        "items": [_item(item, index) for index, item in enumerate(items)],
        "payments": [_payment(payment, index) for index, payment in enumerate(payments)],
        "total_minor": _int(raw["total_minor"], "payload.total_minor", 1, MAX_AMOUNT_MINOR),
        "exponent": _int(raw["exponent"], "payload.exponent", 0, 6),
    }
    items_minor = sum(item["amount_minor"] for item in clean["items"])
    payments_minor = sum(payment["amount_minor"] for payment in clean["payments"])
    if not items_minor == payments_minor == clean["total_minor"]:
        raise _invalid(
            f"the items add up to {items_minor}, the payments to {payments_minor}, the "
            f"total is {clean['total_minor']} (minor units): all three must be equal",
            E.RECEIPT_SUM_MISMATCH,
        )
    return clean


def clean_phone(value: object) -> str:
    """A phone as registers take it, ``+`` and digits: ``8 (912) 345-67-89`` and
    ``9123456789`` become ``+79123456789``; ``invalid_contact`` otherwise."""
    text = _PHONE_NOISE.sub("", value) if isinstance(value, str) else ""
    if text.startswith("+"):
        digits = text[1:]
    elif len(text) == 11 and text[:1] in ("7", "8"):
        digits = "7" + text[1:]
    elif len(text) == 10 and text.startswith("9"):
        digits = "7" + text
    else:
        digits = ""
    if not (digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15):
        raise InvalidInput(
            E.INVALID_CONTACT,
            f"phone is a phone number such as +79123456789, not {value!r}",
            field="phone",
        )
    return "+" + digits


def clean_contact(email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    """Where the receipt's electronic copy goes: an e-mail, a phone or both, checked."""
    email = email.strip() if isinstance(email, str) and email.strip() else None
    phone = phone.strip() if isinstance(phone, str) and phone.strip() else None
    if email is None and phone is None:
        raise InvalidInput(
            E.RECEIPT_CONTACT_REQUIRED,
            "a receipt's electronic copy goes to the payer's e-mail or phone; give one",
        )
    return (
        None if email is None else adapters.clean_email(email),
        None if phone is None else clean_phone(phone),
    )


def _check_source(operation: object, source_type: object, source_id: object) -> None:
    if operation not in OPERATIONS:
        raise _invalid(f"operation is one of {', '.join(OPERATIONS)}, not {operation!r}")
    if not isinstance(source_type, str) or not _SOURCE_TYPE.match(source_type):
        raise _invalid(
            "source_type is 1 to 32 small Latin letters, digits, '_', '.' or '-', "
            f"starting with a letter, not {source_type!r}"
        )
    _int(source_id, "source_id", 1, _MAX_ID)


# --------------------------------------------------------------------------- reading


def _select() -> Select[Any]:
    return select(fiscal_receipts, cash_registers.c.name.label("register_name")).select_from(
        fiscal_receipts.join(cash_registers, cash_registers.c.id == fiscal_receipts.c.register_id)
    )


def _view(row: Any) -> ReceiptView:
    return ReceiptView(
        id=row.id,
        tenant_id=row.tenant_id,
        register_id=row.register_id,
        register_name=row.register_name,
        operation=row.operation,
        source_type=row.source_type,
        source_id=row.source_id,
        external_id=row.external_id,
        status=row.status,
        provider_uuid=row.provider_uuid,
        contact_email=row.contact_email,
        contact_phone=row.contact_phone,
        payload=dict(row.payload),
        fiscal=None if row.fiscal is None else dict(row.fiscal),
        attempts=row.attempts,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _not_found(receipt_id: int) -> NotFound:
    return NotFound(
        E.RECEIPT_NOT_FOUND, f"receipt {receipt_id} does not exist", receipt_id=receipt_id
    )


def get_receipt(conn: Connection, tenant_id: int, receipt_id: int) -> ReceiptView:
    row = conn.execute(
        _select().where(
            fiscal_receipts.c.tenant_id == tenant_id, fiscal_receipts.c.id == receipt_id
        )
    ).first()
    if row is None:
        raise _not_found(receipt_id)
    return _view(row)


def receipt_for_source(
    conn: Connection, tenant_id: int, source_type: str, source_id: int
) -> ReceiptView | None:
    """The receipt asked for this source, if one was."""
    row = conn.execute(
        _select().where(
            fiscal_receipts.c.tenant_id == tenant_id,
            fiscal_receipts.c.source_type == source_type,
            fiscal_receipts.c.source_id == source_id,
        )
    ).first()
    return None if row is None else _view(row)


def _filtered(
    query: Select[Any],
    tenant_id: int,
    source_type: str | None,
    source_ids: Collection[int] | None,
    status: str | None,
) -> Select[Any]:
    query = query.where(fiscal_receipts.c.tenant_id == tenant_id)
    if status is not None:
        if status not in STATUSES:
            raise _invalid(f"a receipt's status is one of {', '.join(STATUSES)}, not {status!r}")
        query = query.where(fiscal_receipts.c.status == status)
    if source_type is not None:
        query = query.where(fiscal_receipts.c.source_type == source_type)
    if source_ids is not None:
        query = query.where(fiscal_receipts.c.source_id.in_(list(source_ids)))
    return query


def list_receipts(
    conn: Connection,
    tenant_id: int,
    source_type: str | None = None,
    source_ids: Collection[int] | None = None,
    status: str | None = None,
    *,
    after_id: int = 0,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> list[ReceiptView]:
    """The tenant's receipts (of a kind of source, of these sources, in a status) in id
    order, or newest first; ``after_id`` pages by cursor (in id order)."""
    query = _filtered(_select(), tenant_id, source_type, source_ids, status)
    if after_id:
        query = query.where(fiscal_receipts.c.id > after_id)
    order = fiscal_receipts.c.id.desc() if newest_first else fiscal_receipts.c.id
    query = query.order_by(order).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [_view(row) for row in conn.execute(query)]


def count_receipts(conn: Connection, tenant_id: int, status: str | None = None) -> int:
    query = _filtered(
        select(func.count()).select_from(fiscal_receipts), tenant_id, None, None, status
    )
    return int(conn.execute(query).scalar_one())


# --------------------------------------------------------------------------- asking


def request_receipt(
    conn: Connection,
    *,
    tenant_id: int,
    register_id: int,
    operation: str,
    source_type: str,
    source_id: int,
    payload: dict[str, Any],
    email: str | None,
    phone: str | None,
    actor: Actor,
) -> ReceiptView:
    """A ``pending`` receipt for a payment or refund, written in the caller's transaction
    (no network call: ``send_receipt`` or the job sends it after the commit).

    The register must be the tenant's and switched on; the e-mail or phone (at least one)
    and the payload are checked (see the module's docstring). The same source asked again
    returns its receipt as it is; asked again with another register, operation, contact
    or payload it is ``receipt_conflict``.
    """
    _check_source(operation, source_type, source_id)
    clean_email, clean_phone_ = clean_contact(email, phone)
    clean = check_payload(payload)
    existing = receipt_for_source(conn, tenant_id, source_type, source_id)
    if existing is not None:
        asked = (register_id, operation, clean_email, clean_phone_, clean)
        kept = (
            existing.register_id,
            existing.operation,
            existing.contact_email,
            existing.contact_phone,
            existing.payload,
        )
        if asked != kept:
            raise Conflict(
                E.RECEIPT_CONFLICT,
                f"the receipt for {source_type} {source_id} was asked for already "
                f"(receipt {existing.id}) with another register, operation, contact or payload",
                receipt_id=existing.id,
            )
        return existing
    register = get_register(conn, tenant_id, register_id)
    if not register.enabled:
        raise Refused(
            E.CASH_REGISTER_DISABLED,
            f"the cash register {register.name!r} is switched off",
            register_id=register_id,
        )
    adapters.check_payload(register.adapter, clean)
    now = utcnow()
    receipt_id = conn.execute(
        fiscal_receipts.insert().returning(fiscal_receipts.c.id),
        {
            "tenant_id": tenant_id,
            "register_id": register_id,
            "operation": operation,
            "source_type": source_type,
            "source_id": source_id,
            "external_id": external_id_for(tenant_id, source_type, source_id),
            "status": PENDING,
            "contact_email": clean_email,
            "contact_phone": clean_phone_,
            "payload": clean,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="receipt.request",
        object_type="receipt",
        object_id=receipt_id,
        details={
            "register_id": register_id,
            "operation": operation,
            "source_type": source_type,
            "source_id": source_id,
            "total_minor": clean["total_minor"],
        },
    )
    created = get_receipt(conn, tenant_id, receipt_id)
    assert created.status == PENDING and created.payload == clean
    return created


# --------------------------------------------------------------------------- sending


def _backoff(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    assert attempts >= 1
    factor: int = 2 ** min(attempts - 1, 20)
    return min(base * factor, cap)


def _after_submit(
    receipt: ReceiptView, result: adapters.SubmitResult, now: datetime
) -> dict[str, Any]:
    attempts = receipt.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "updated_at": now}
    if result.outcome == SubmitOutcome.ACCEPTED:
        done = result.status == DONE and result.fiscal is not None
        values.update(
            status=DONE if done else WAIT,
            provider_uuid=result.uuid,
            fiscal=result.fiscal if done else None,
            last_error=None,
            next_attempt_at=None if done else now + POLL_BACKOFF,
        )
    elif result.outcome == SubmitOutcome.REFUSED:
        values.update(status=FAILED, last_error=result.error, next_attempt_at=None)
    else:
        delay = _backoff(attempts, SEND_BACKOFF, SEND_BACKOFF_MAX)
        values.update(last_error=result.error, next_attempt_at=now + delay)
    return values


def _after_report(
    receipt: ReceiptView, result: adapters.ReportResult, now: datetime
) -> dict[str, Any]:
    attempts = receipt.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "updated_at": now}
    if result.status == ReportStatus.DONE:
        values.update(status=DONE, fiscal=result.fiscal, last_error=None, next_attempt_at=None)
    elif result.status == ReportStatus.FAILED:
        values.update(status=FAILED, last_error=result.error, next_attempt_at=None)
    else:
        delay = _backoff(attempts, POLL_BACKOFF, POLL_BACKOFF_MAX)
        values.update(last_error=result.error, next_attempt_at=now + delay)
    return values


def _to_send(receipt: ReceiptView, moment: datetime) -> ReceiptToSend:
    return ReceiptToSend(
        operation=receipt.operation,
        external_id=receipt.external_id,
        payload=receipt.payload,
        email=receipt.contact_email,
        phone=receipt.contact_phone,
        moment=moment,
    )


def _ask_register(receipt: ReceiptView, register: CashRegister, now: datetime) -> dict[str, Any]:
    """One exchange with the register (over the network: never inside a transaction);
    what to record of it."""
    try:
        adapter = adapters.adapter_for(register)
    except KopilkaError as error:
        # Settings that no longer pass their checks: a person must look at the register.
        # A receipt the register has is never given up on for that: it waits.
        problem = f"the register's settings: {error.detail}"
        if receipt.status == WAIT:
            unknown = adapters.ReportResult(ReportStatus.TRANSIENT, error=problem)
            return _after_report(receipt, unknown, now)
        return _after_submit(receipt, adapters.SubmitResult.refused(problem), now)
    if receipt.status == PENDING:
        return _after_submit(receipt, adapter.submit(_to_send(receipt, utcnow())), now)
    assert receipt.status == WAIT and receipt.provider_uuid
    return _after_report(receipt, adapter.report(receipt.provider_uuid), now)


def send_receipt(
    engine: Engine, tenant_id: int, receipt_id: int, *, now: datetime | None = None
) -> ReceiptView:
    """Send a pending receipt, or ask about a waiting one, now (whether due or not), and
    record the outcome; a done or failed receipt is returned as it is.

    The exchange with the register happens outside any transaction; the outcome is
    written only if nobody changed the receipt meanwhile (then theirs stands).
    """
    moment = now or utcnow()
    with read_only(engine) as conn:
        receipt = get_receipt(conn, tenant_id, receipt_id)
        if receipt.status not in (PENDING, WAIT):
            return receipt
        register = get_register(conn, tenant_id, receipt.register_id)
    values = _ask_register(receipt, register, moment)

    def record(conn: Connection) -> ReceiptView:
        conn.execute(
            update(fiscal_receipts)
            .where(
                fiscal_receipts.c.id == receipt.id,
                fiscal_receipts.c.tenant_id == tenant_id,
                fiscal_receipts.c.status == receipt.status,
                fiscal_receipts.c.external_id == receipt.external_id,
            )
            .values(**values)
        )
        return get_receipt(conn, tenant_id, receipt_id)

    after = run_transaction(engine, record)
    log.info(
        "receipt %s: %s -> %s",
        receipt.id,
        receipt.status,
        after.status,
        extra={"tenant_id": tenant_id, "receipt_id": receipt.id, "attempts": after.attempts},
    )
    return after


@dataclass(slots=True)
class DueCounts:
    """What ``process_due`` did."""

    due: int = 0  # receipts due (pending to send, waiting to ask about)
    accepted: int = 0  # sent and accepted by the register
    done: int = 0  # fiscalised (now or earlier in this run)
    failed: int = 0  # refused or reported failed
    retrying: int = 0  # no answer: tried again later
    waiting: int = 0  # asked about, still being fiscalised
    skipped: int = 0  # taken by another process meanwhile
    errors: int = 0  # an unexpected error (logged); tried again later

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def note(self, before: str, after: str) -> None:
        if before == PENDING and after in (WAIT, DONE):
            self.accepted += 1
        if after == DONE:
            self.done += 1
        elif after == FAILED:
            self.failed += 1
        elif after == PENDING:
            self.retrying += 1
        elif after == WAIT and before == WAIT:
            self.waiting += 1


def due_receipts(
    engine: Engine,
    now: datetime | None = None,
    *,
    tenant_id: int | None = None,
    limit: int = DUE_BATCH,
) -> list[tuple[int, int, str]]:
    """(tenant id, receipt id, status) of the receipts due at ``now``, longest due first."""
    query = (
        select(fiscal_receipts.c.tenant_id, fiscal_receipts.c.id, fiscal_receipts.c.status)
        .where(
            fiscal_receipts.c.status.in_((PENDING, WAIT)),
            fiscal_receipts.c.next_attempt_at <= (now or utcnow()),
        )
        .order_by(fiscal_receipts.c.next_attempt_at, fiscal_receipts.c.id)
        .limit(limit)
    )
    if tenant_id is not None:
        query = query.where(fiscal_receipts.c.tenant_id == tenant_id)
    with read_only(engine) as conn:
        return [(row.tenant_id, row.id, row.status) for row in conn.execute(query)]


def _claim(engine: Engine, receipt_id: int, status: str, now: datetime) -> bool:
    """Take a due receipt for this process: put it off by ``CLAIM_LEASE`` unless another
    process did so first. (Were two to send it anyway, the register prints it once.)"""

    def work(conn: Connection) -> bool:
        taken = conn.execute(
            update(fiscal_receipts)
            .where(
                fiscal_receipts.c.id == receipt_id,
                fiscal_receipts.c.status == status,
                fiscal_receipts.c.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + CLAIM_LEASE)
        )
        return taken.rowcount == 1

    return run_transaction(engine, work)


def process_due(
    engine: Engine,
    now: datetime | None = None,
    *,
    tenant_id: int | None = None,
    limit: int = DUE_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> DueCounts:
    """Send the pending receipts that are due and ask about the waiting ones (of one
    tenant, or all), one by one; ``progress(done, total)`` after each."""
    moment = now or utcnow()
    due = due_receipts(engine, moment, tenant_id=tenant_id, limit=limit)
    counts = DueCounts(due=len(due))
    if progress is not None:
        progress(0, len(due))
    for index, (owner, receipt_id, status) in enumerate(due, start=1):
        if not _claim(engine, receipt_id, status, moment):
            counts.skipped += 1
        else:
            try:
                after = send_receipt(engine, owner, receipt_id, now=moment)
            except Exception:
                # One receipt's surprise must not stop the others; its claim lapses and
                # it is tried again.
                log.exception("receipt %s could not be processed", receipt_id)
                counts.errors += 1
            else:
                counts.note(status, after.status)
        if progress is not None:
            progress(index, len(due))
    assert counts.skipped + counts.errors <= counts.due
    return counts


# --------------------------------------------------------------------------- retrying

_RETRY_SUFFIX = re.compile(r"^-r(\d+)$")


def _next_external_id(receipt: Any) -> str:
    """``<base>`` -> ``<base>-r2`` -> ``<base>-r3``: a new id for the register, which
    answers a refused id with the same refusal."""
    base = external_id_for(receipt.tenant_id, receipt.source_type, receipt.source_id)
    current = str(receipt.external_id)
    match = _RETRY_SUFFIX.match(current[len(base) :]) if current.startswith(base) else None
    number = int(match.group(1)) + 1 if match else 2
    return f"{base}-r{number}"


def retry_receipt(
    conn: Connection,
    tenant_id: int,
    receipt_id: int,
    actor: Actor,
    *,
    now: datetime | None = None,
) -> ReceiptView:
    """Make a receipt due now: a failed one goes back to ``pending`` under a new
    ``external_id`` (``-r2``, ``-r3``, ...); a pending one is sent at the next run (its
    back-off starts again); a waiting one is asked about. A done receipt is
    ``receipt_not_retryable``."""
    row = conn.execute(
        select(fiscal_receipts)
        .where(fiscal_receipts.c.tenant_id == tenant_id, fiscal_receipts.c.id == receipt_id)
        .with_for_update()
    ).first()
    if row is None:
        raise _not_found(receipt_id)
    if row.status == DONE:
        raise Refused(
            E.RECEIPT_NOT_RETRYABLE,
            f"receipt {receipt_id} is fiscalised already; there is nothing to retry",
            receipt_id=receipt_id,
        )
    moment = now or utcnow()
    values: dict[str, Any] = {"next_attempt_at": moment, "updated_at": moment}
    if row.status in (FAILED, PENDING):
        values["attempts"] = 0
    if row.status == FAILED:
        values.update(
            status=PENDING,
            external_id=_next_external_id(row),
            provider_uuid=None,
            fiscal=None,
            last_error=None,
        )
    conn.execute(update(fiscal_receipts).where(fiscal_receipts.c.id == row.id).values(**values))
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="receipt.retry",
        object_type="receipt",
        object_id=receipt_id,
        details={
            "status_was": row.status,
            "external_id": values.get("external_id", row.external_id),
            "external_id_was": row.external_id,
            "last_error_was": row.last_error,
        },
    )
    retried = get_receipt(conn, tenant_id, receipt_id)
    assert retried.status in (PENDING, WAIT) and retried.next_attempt_at is not None
    return retried


def retry_and_send(engine: Engine, tenant_id: int, receipt_id: int, actor: Actor) -> ReceiptView:
    """``retry_receipt`` in its own transaction, then one ``send_receipt`` at once (after
    the commit): what the screens' and the API's Retry do."""
    run_transaction(engine, lambda conn: retry_receipt(conn, tenant_id, receipt_id, actor))
    return send_receipt(engine, tenant_id, receipt_id)
