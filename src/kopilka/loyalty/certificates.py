"""Gift certificates (SPEC C-9): issue, sell, pay with, refund to, block, expire.

A certificate is a row of ``certificates`` plus an account in the tenant's currency
(``non_negative``, no lots), so its balance and history are the ledger's (SPEC L-1). Its
life, and the transfer each step posts (system accounts are hot, ``purpose:CURRENCY``):

* **issued** (single or a range of numbers, like cards): nothing on it, not usable;
* **sold** (status ``active``): ``certificate_sales`` → the certificate, the nominal;
  idempotent by the sale's operation id; a second sale is ``already_sold``;
* **paid with**, partly or fully: the certificate → ``certificate_redemptions``, never
  more than its balance; once per (channel, operation id), the channel being the
  terminal (``terminal:<id>``) or ``staff``;
* **refunded to**: ``certificate_redemptions`` → the certificate, never more than the
  payment took (refunds in parts add up), once per (payment, refund id);
* **expired** (nightly, from its ``expires_at``): the rest → ``certificate_breakage``,
  and the status becomes ``expired``; a second run finds nothing to do;
* **blocked** by a person with a reason: neither sold nor paid with; a refund of an
  earlier payment still returns the money to it.

Lock order: the certificate's row (``FOR UPDATE``) first, then the ledger's accounts (in
``post_transfers``). Every action here takes the row before it posts, so concurrent
payments of one certificate queue on it and can never overspend (SPEC L-4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from kopilka.core.actor import Actor
from kopilka.core.bulk import insert_rows, new_ids
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.core.idempotency import request_hash as _hash
from kopilka.core.money import MAX_ABS_MINOR, currency_exponent, format_amount
from kopilka.ledger.accounts import Policy, create_account, create_wallets, system_account
from kopilka.ledger.error_codes import LedgerErrorCode
from kopilka.ledger.posting import PostedTransfer, TransferSpec, post_transfers, simple_transfer
from kopilka.ledger.posting import load_transfers as load_ledger_transfers
from kopilka.ledger.schema import accounts
from kopilka.loyalty.cards import LISTED, normalise_number, range_numbers
from kopilka.loyalty.certificates_schema import (
    certificate_payments,
    certificate_refunds,
    certificates,
)
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.tenancy.audit import record_audit

MAX_OPERATION_ID = 100
MAX_VALIDITY_DAYS = 36_600  # a hundred years
SALES, REDEMPTIONS, BREAKAGE = (
    "certificate_sales",
    "certificate_redemptions",
    "certificate_breakage",
)
OWNER_TYPE = "certificate"
_WRITE_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class CertificateView:
    id: int
    tenant_id: int
    number: str
    status: str  # issued, active, blocked, expired
    blocked_reason: str | None
    currency: str
    exponent: int
    account_id: int
    validity_days: int | None
    issued_at: datetime
    nominal_minor: int | None  # None until sold
    sold_at: datetime | None
    expires_at: datetime | None
    expired_at: datetime | None
    balance_minor: int

    @property
    def sold(self) -> bool:
        return self.sold_at is not None

    def is_expired(self, now: datetime) -> bool:
        """Expired at ``now``: marked so, or sold and past its date."""
        return self.status == "expired" or (
            self.expires_at is not None and self.expires_at <= as_utc(now)
        )

    def fmt(self, amount_minor: int) -> str:
        return format_amount(amount_minor, self.exponent)


@dataclass(frozen=True, slots=True)
class Sale:
    certificate: CertificateView
    operation_id: str
    transfer_id: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Payment:
    id: int
    certificate_number: str
    channel: str
    operation_id: str
    check_id: str | None
    amount_minor: int
    refunded_minor: int
    balance_after_minor: int  # the certificate's balance right after this payment
    transfer_id: int
    created_at: datetime
    currency: str
    exponent: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class PaymentRefund:
    payment: Payment  # as it stands after this refund
    refund_id: str
    amount_minor: int
    balance_after_minor: int  # the certificate's balance right after this refund
    transfer_id: int
    replayed: bool = False


# --------------------------------------------------------------------------- reading


def normalise_certificate_number(number: str) -> str:
    """Digits only (spaces and dashes dropped), 4 to 32 long, as card numbers are."""
    try:
        return normalise_number(number)
    except InvalidInput as error:
        raise InvalidInput(
            E.INVALID_CERTIFICATE_NUMBER, error.detail.replace("card", "certificate")
        ) from None


_COLUMNS = (certificates, accounts.c.balance_minor)


def _view(row: Any) -> CertificateView:
    def moment(value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    return CertificateView(
        id=row.id,
        tenant_id=row.tenant_id,
        number=row.number,
        status=row.status,
        blocked_reason=row.blocked_reason,
        currency=row.currency,
        exponent=currency_exponent(row.currency),
        account_id=row.account_id,
        validity_days=row.validity_days,
        issued_at=as_utc(row.issued_at),
        nominal_minor=row.nominal_minor,
        sold_at=moment(row.sold_at),
        expires_at=moment(row.expires_at),
        expired_at=moment(row.expired_at),
        balance_minor=row.balance_minor,
    )


def _select() -> Any:
    return select(*_COLUMNS).join(accounts, accounts.c.id == certificates.c.account_id)


def find_certificate(conn: Connection, tenant_id: int, number: str) -> CertificateView:
    """The certificate with this number, whatever its status (staff see them all)."""
    wanted = normalise_certificate_number(number)
    row = conn.execute(
        _select().where(certificates.c.tenant_id == tenant_id, certificates.c.number == wanted)
    ).first()
    if row is None:
        raise NotFound(E.CERTIFICATE_NOT_FOUND, f"no certificate numbered {wanted}", number=wanted)
    return _view(row)


def get_certificate(conn: Connection, tenant_id: int, certificate_id: int) -> CertificateView:
    row = conn.execute(
        _select().where(certificates.c.tenant_id == tenant_id, certificates.c.id == certificate_id)
    ).first()
    if row is None:
        raise NotFound(E.CERTIFICATE_NOT_FOUND, f"certificate {certificate_id} does not exist")
    return _view(row)


def list_certificates(
    conn: Connection,
    tenant_id: int,
    *,
    after_id: int = 0,
    limit: int = 50,
    status: str | None = None,
    number_prefix: str | None = None,
) -> list[CertificateView]:
    """Certificates in id order after ``after_id`` (cursor paging), optionally of one
    status and with numbers starting with ``number_prefix``."""
    query = (
        _select()
        .where(certificates.c.tenant_id == tenant_id, certificates.c.id > after_id)
        .order_by(certificates.c.id)
        .limit(limit)
    )
    if status is not None:
        if status not in ("issued", "active", "blocked", "expired"):
            raise InvalidInput(E.INVALID_CERTIFICATE, f"{status!r} is not a certificate status")
        query = query.where(certificates.c.status == status)
    if number_prefix:
        prefix = number_prefix.replace(" ", "").replace("-", "")
        if not (prefix.isascii() and prefix.isdigit()):
            raise InvalidInput(E.INVALID_CERTIFICATE_NUMBER, "a number prefix is digits only")
        query = query.where(certificates.c.number.startswith(prefix, autoescape=True))
    return [_view(row) for row in conn.execute(query)]


def _locked(conn: Connection, tenant_id: int, number: str) -> CertificateView:
    """The certificate's row ``FOR UPDATE``: the lock every change of it queues on."""
    wanted = normalise_certificate_number(number)
    row = conn.execute(
        select(certificates.c.id)
        .where(certificates.c.tenant_id == tenant_id, certificates.c.number == wanted)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(E.CERTIFICATE_NOT_FOUND, f"no certificate numbered {wanted}", number=wanted)
    # Read after the lock, so the figures are those the lock protects.
    return get_certificate(conn, tenant_id, row.id)


def check_usable(certificate: CertificateView, now: datetime) -> None:
    """Refuse a certificate that may not pay now: unsold, blocked or expired."""
    number = certificate.number
    if certificate.status == "blocked":
        reason = certificate.blocked_reason or ""
        raise Refused(
            E.CERTIFICATE_BLOCKED,
            f"certificate {number} is blocked" + (f": {reason}" if reason else ""),
            number=number,
            reason=reason,
        )
    if not certificate.sold:
        raise Refused(E.CERTIFICATE_NOT_SOLD, f"certificate {number} was not sold", number=number)
    if certificate.is_expired(now):
        raise Refused(E.CERTIFICATE_EXPIRED, f"certificate {number} has expired", number=number)
    assert certificate.status == "active", certificate.status


def certificate_for_use(
    conn: Connection, tenant_id: int, number: str, *, now: datetime | None = None
) -> CertificateView:
    """The certificate a terminal presents (its balance check), refused if it may not pay."""
    certificate = find_certificate(conn, tenant_id, number)
    check_usable(certificate, as_utc(now) if now else utcnow())
    return certificate


# --------------------------------------------------------------------------- issuing


def _check_validity(validity_days: int | None) -> None:
    if validity_days is not None and (
        not isinstance(validity_days, int)
        or isinstance(validity_days, bool)
        or not 0 < validity_days <= MAX_VALIDITY_DAYS
    ):
        raise InvalidInput(
            E.INVALID_CERTIFICATE, f"validity is 1 to {MAX_VALIDITY_DAYS} days (or none)"
        )


def _currency(conn: Connection, tenant_id: int) -> str:
    from kopilka.tenancy.actions import get_tenant  # tenancy sits above the ledger

    return get_tenant(conn, tenant_id).currency


def issue_certificate(
    conn: Connection,
    *,
    tenant_id: int,
    number: str,
    actor: Actor,
    validity_days: int | None = None,
) -> CertificateView:
    """A new unsold certificate with its (empty) account in the tenant's currency.
    ``validity_days``: how long it stays valid once sold, when the sale names no date."""
    wanted = normalise_certificate_number(number)
    _check_validity(validity_days)
    currency = _currency(conn, tenant_id)
    if conn.execute(
        select(certificates.c.id).where(
            certificates.c.tenant_id == tenant_id, certificates.c.number == wanted
        )
    ).first():
        raise Conflict(E.CERTIFICATE_EXISTS, f"certificate {wanted} exists already", number=wanted)
    now = utcnow()
    account = create_account(
        conn,
        tenant_id=tenant_id,
        unit_code=currency,
        kind=OWNER_TYPE,
        policy=Policy.NON_NEGATIVE,
        owner_type=OWNER_TYPE,
        owner_id=wanted,
        name=f"Certificate {wanted}",
        actor=actor,
        opened_at=now,
    )
    certificate_id = conn.execute(
        certificates.insert().returning(certificates.c.id),
        {
            "tenant_id": tenant_id,
            "number": wanted,
            "status": "issued",
            "currency": currency,
            "account_id": account.id,
            "validity_days": validity_days,
            "issued_at": now,
            "created_at": now,
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="certificate.issue",
        object_type="certificate",
        object_id=certificate_id,
        details={"number": wanted, "account": account.id, "validity_days": validity_days},
    )
    return get_certificate(conn, tenant_id, certificate_id)


def issue_certificate_range(
    conn: Connection,
    *,
    tenant_id: int,
    prefix: str,
    first: int,
    last: int,
    check_digit: bool,
    actor: Actor,
    width: int | None = None,
    validity_days: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[int]:
    """Issue certificates ``first``..``last`` at once (numbers as for cards, SPEC C-2);
    returns their ids in order. All or nothing: if any number exists, nothing is written."""
    try:
        numbers = range_numbers(prefix, first, last, check_digit=check_digit, width=width)
    except InvalidInput as error:
        raise InvalidInput(
            E.INVALID_CERTIFICATE_RANGE, error.detail.replace("card", "certificate")
        ) from None
    _check_validity(validity_days)
    currency = _currency(conn, tenant_id)
    wanted = set(numbers)
    taken = [
        n
        for n in conn.execute(
            select(certificates.c.number).where(
                certificates.c.tenant_id == tenant_id,
                certificates.c.number >= numbers[0],
                certificates.c.number <= numbers[-1],
            )
        ).scalars()
        if n in wanted
    ]
    if taken:
        taken.sort()
        raise Conflict(
            E.CERTIFICATE_EXISTS,
            f"{len(taken)} of these certificates exist already: {', '.join(taken[:LISTED])}"
            f"{' and more' if len(taken) > LISTED else ''}; nothing was issued",
            numbers=taken[:LISTED],
            count=len(taken),
        )
    total = len(numbers)
    if progress is not None:
        progress(0, total)
    now = utcnow()
    account_ids = create_wallets(
        conn,
        tenant_id=tenant_id,
        unit_code=currency,
        owners=[(OWNER_TYPE, n) for n in numbers],
        names=[f"Certificate {n}" for n in numbers],
        kind=OWNER_TYPE,
        policy=Policy.NON_NEGATIVE,
        actor=actor,
        opened_at=now,
    )
    ids = new_ids(conn, certificates, total)
    columns = (
        "id",
        "tenant_id",
        "number",
        "status",
        "currency",
        "account_id",
        "validity_days",
        "issued_at",
        "created_at",
    )
    for start in range(0, total, _WRITE_CHUNK):
        end = min(start + _WRITE_CHUNK, total)
        rows = [
            (
                ids[i],
                tenant_id,
                numbers[i],
                "issued",
                currency,
                account_ids[i],
                validity_days,
                now,
                now,
            )
            for i in range(start, end)
        ]
        insert_rows(conn, certificates, columns, rows)
        if progress is not None:
            progress(end, total)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="certificate.issue_range",
        object_type="certificate",
        object_id=None,
        details={
            "count": total,
            "first_number": numbers[0],
            "last_number": numbers[-1],
            "first_id": ids[0],
            "last_id": ids[-1],
            "validity_days": validity_days,
        },
    )
    return ids


# --------------------------------------------------------------------------- selling


def _operation_id(value: str, what: str = "an operation id") -> str:
    cleaned = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(cleaned) <= MAX_OPERATION_ID:
        raise InvalidInput(
            E.INVALID_CERTIFICATE, f"{what} of 1 to {MAX_OPERATION_ID} characters is required"
        )
    return cleaned


def _check_amount(amount_minor: object) -> int:
    if (
        not isinstance(amount_minor, int)
        or isinstance(amount_minor, bool)
        or not 0 < amount_minor <= MAX_ABS_MINOR
    ):
        raise InvalidInput(E.INVALID_AMOUNT, "the amount is a whole number greater than zero")
    return amount_minor


def _operation_conflict(operation_id: str) -> Conflict:
    return Conflict(
        E.CERTIFICATE_OPERATION_CONFLICT,
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
    """Post one transfer of a certificate operation; a key taken by another request is
    that operation's conflict, a replay (the key was ours already) too."""
    (outcome,) = post_transfers(conn, tenant_id=tenant_id, specs=[spec], actor=actor, now=now)
    if isinstance(outcome, KopilkaError):
        if outcome.code == LedgerErrorCode.IDEMPOTENCY_CONFLICT:
            raise _operation_conflict(operation_id)
        raise outcome
    if outcome.replayed:
        # Our own tables did not know the operation, so the key is another request's.
        raise _operation_conflict(operation_id)
    return outcome


def _account(conn: Connection, tenant_id: int, currency: str, purpose: str, actor: Actor) -> int:
    return system_account(
        conn, tenant_id=tenant_id, unit_code=currency, purpose=purpose, actor=actor
    ).id


def sell_certificate(
    conn: Connection,
    *,
    tenant_id: int,
    number: str,
    nominal_minor: int,
    operation_id: str,
    actor: Actor,
    expires_at: datetime | None = None,
    validity_days: int | None = None,
    now: datetime | None = None,
) -> Sale:
    """Activate an issued certificate with its nominal (in the currency's minor units).

    It expires at ``expires_at``, or ``validity_days`` from now, or after the validity it
    was issued with, or never. Idempotent by ``operation_id``: the same sale again answers
    as the first time; another sale of a sold certificate is ``already_sold``.
    """
    moment = as_utc(now) if now else utcnow()
    operation_id = _operation_id(operation_id)
    _check_amount(nominal_minor)
    _check_validity(validity_days)
    if expires_at is not None and validity_days is not None:
        raise InvalidInput(E.INVALID_CERTIFICATE, "give an expiry date or a validity, not both")
    request_hash = _hash(
        {
            "number": normalise_certificate_number(number),
            "nominal": nominal_minor,
            "expires_at": None if expires_at is None else as_utc(expires_at).isoformat(),
            "validity_days": validity_days,
        }
    )
    certificate = _locked(conn, tenant_id, number)
    row = conn.execute(
        select(
            certificates.c.sale_operation_id,
            certificates.c.sale_request_hash,
            certificates.c.sale_transfer_id,
        ).where(certificates.c.id == certificate.id)
    ).one()
    if row.sale_operation_id == operation_id:
        if row.sale_request_hash != request_hash:
            raise _operation_conflict(operation_id)
        return Sale(certificate, operation_id, row.sale_transfer_id, replayed=True)
    if certificate.status == "blocked":
        check_usable(certificate, moment)  # raises certificate_blocked
    if certificate.sold:
        raise Conflict(
            E.ALREADY_SOLD,
            f"certificate {certificate.number} was sold already",
            number=certificate.number,
        )
    days = validity_days if validity_days is not None else certificate.validity_days
    expires = (
        as_utc(expires_at)
        if expires_at is not None
        else None
        if days is None
        else moment + timedelta(days=days)
    )
    if expires is not None and expires <= moment:
        raise InvalidInput(E.INVALID_CERTIFICATE, "a certificate is sold to expire later")
    posted = _post(
        conn,
        tenant_id,
        simple_transfer(
            f"certificate-sale:{operation_id}",
            debit_account_id=_account(conn, tenant_id, certificate.currency, SALES, actor),
            credit_account_id=certificate.account_id,
            amount_minor=nominal_minor,
            kind="certificate_sale",
            description=f"certificate {certificate.number} sold",
            meta={"certificate": certificate.number, "operation": operation_id},
        ),
        actor,
        moment,
        operation_id,
    )
    conn.execute(
        update(certificates)
        .where(certificates.c.id == certificate.id)
        .values(
            status="active",
            nominal_minor=nominal_minor,
            sold_at=posted.posted_at,
            expires_at=expires,
            sale_operation_id=operation_id,
            sale_request_hash=request_hash,
            sale_transfer_id=posted.id,
        )
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="certificate.sell",
        object_type="certificate",
        object_id=certificate.id,
        details={
            "number": certificate.number,
            "nominal_minor": nominal_minor,
            "expires_at": None if expires is None else expires.isoformat(),
            "operation": operation_id,
        },
    )
    return Sale(get_certificate(conn, tenant_id, certificate.id), operation_id, posted.id)


# --------------------------------------------------------------------------- paying


def channel_of(terminal_id: int | None) -> str:
    return "staff" if terminal_id is None else f"terminal:{terminal_id}"


def _payment_row(conn: Connection, tenant_id: int, channel: str, operation_id: str) -> Any:
    return conn.execute(
        select(certificate_payments, certificates.c.number, certificates.c.currency)
        .join(certificates, certificates.c.id == certificate_payments.c.certificate_id)
        .where(
            certificate_payments.c.tenant_id == tenant_id,
            certificate_payments.c.channel == channel,
            certificate_payments.c.operation_id == operation_id,
        )
    ).first()


def _balance_after(conn: Connection, tenant_id: int, transfer_id: int, account_id: int) -> int:
    (posted,) = load_ledger_transfers(conn, tenant_id, [transfer_id])
    entry = next(e for e in posted.entries if e.account_id == account_id)
    assert entry.balance_after_minor is not None, "a certificate's account is never hot"
    return entry.balance_after_minor


def _payment(conn: Connection, row: Any, account_id: int, *, replayed: bool) -> Payment:
    return Payment(
        id=row.id,
        certificate_number=row.number,
        channel=row.channel,
        operation_id=row.operation_id,
        check_id=row.check_id,
        amount_minor=row.amount_minor,
        refunded_minor=row.refunded_minor,
        balance_after_minor=_balance_after(conn, row.tenant_id, row.transfer_id, account_id),
        transfer_id=row.transfer_id,
        created_at=as_utc(row.created_at),
        currency=row.currency,
        exponent=currency_exponent(row.currency),
        replayed=replayed,
    )


def pay_with_certificate(
    conn: Connection,
    *,
    tenant_id: int,
    number: str,
    amount_minor: int,
    operation_id: str,
    actor: Actor,
    terminal_id: int | None = None,
    check_id: str | None = None,
    now: datetime | None = None,
) -> Payment:
    """Pay ``amount_minor`` with the certificate: all it has or a part, never more.

    Idempotent by (terminal, operation id), or (staff, operation id) without a terminal:
    the same payment again answers as the first time, even if the certificate has been
    blocked or has expired since; the same id with another body is a conflict.
    """
    moment = as_utc(now) if now else utcnow()
    operation_id = _operation_id(operation_id)
    _check_amount(amount_minor)
    if check_id is not None:
        check_id = _operation_id(check_id, "a check id")
    channel = channel_of(terminal_id)
    request_hash = _hash(
        {"number": normalise_certificate_number(number), "amount": amount_minor, "check": check_id}
    )
    certificate = _locked(conn, tenant_id, number)
    known = _payment_row(conn, tenant_id, channel, operation_id)
    if known is not None:
        if known.request_hash != request_hash:
            raise _operation_conflict(operation_id)
        paid_from = get_certificate(conn, tenant_id, known.certificate_id)
        return _payment(conn, known, paid_from.account_id, replayed=True)
    check_usable(certificate, moment)
    if amount_minor > certificate.balance_minor:
        shown = certificate.fmt(certificate.balance_minor)
        raise Refused(
            E.INSUFFICIENT_CERTIFICATE_BALANCE,
            f"certificate {certificate.number} has {shown} {certificate.currency}; "
            f"{certificate.fmt(amount_minor)} was asked",
            number=certificate.number,
            available=shown,
        )
    payment_id = conn.execute(
        certificate_payments.insert().returning(certificate_payments.c.id),
        {
            "tenant_id": tenant_id,
            "certificate_id": certificate.id,
            "channel": channel,
            "terminal_id": terminal_id,
            "operation_id": operation_id,
            "request_hash": request_hash,
            "check_id": check_id,
            "amount_minor": amount_minor,
            "refunded_minor": 0,
            "created_at": moment,
        },
    ).scalar_one()
    posted = _post(
        conn,
        tenant_id,
        simple_transfer(
            f"certificate-payment:{channel}:{operation_id}",
            debit_account_id=certificate.account_id,
            credit_account_id=_account(conn, tenant_id, certificate.currency, REDEMPTIONS, actor),
            amount_minor=amount_minor,
            kind="certificate_payment",
            description=f"paid with certificate {certificate.number}"
            + (f", check {check_id}" if check_id else ""),
            meta={"certificate": certificate.number, "channel": channel, "operation": operation_id},
        ),
        actor,
        moment,
        operation_id,
    )
    conn.execute(
        update(certificate_payments)
        .where(certificate_payments.c.id == payment_id)
        .values(transfer_id=posted.id)
    )
    row = _payment_row(conn, tenant_id, channel, operation_id)
    assert row.amount_minor == amount_minor and row.transfer_id == posted.id
    return _payment(conn, row, certificate.account_id, replayed=False)


def get_payment(
    conn: Connection, tenant_id: int, number: str, operation_id: str, *, terminal_id: int | None
) -> Payment:
    """The payment a channel made with this certificate under ``operation_id``."""
    row = _payment_row(conn, tenant_id, channel_of(terminal_id), operation_id)
    wanted = normalise_certificate_number(number)
    if row is None or row.number != wanted:
        raise NotFound(
            E.CERTIFICATE_PAYMENT_NOT_FOUND,
            f"no payment {operation_id!r} with certificate {wanted} was made here",
            operation_id=operation_id,
        )
    return _payment(
        conn, row, get_certificate(conn, tenant_id, row.certificate_id).account_id, replayed=False
    )


def refund_payment(
    conn: Connection,
    *,
    tenant_id: int,
    number: str,
    operation_id: str,
    refund_id: str,
    amount_minor: int | None,
    actor: Actor,
    terminal_id: int | None = None,
    now: datetime | None = None,
) -> PaymentRefund:
    """Give back ``amount_minor`` of a payment to its certificate (``None``: all of the
    payment not refunded yet); refunds of one payment never add up to more than it.

    Idempotent by (payment, ``refund_id``). An expired certificate takes no refunds (the
    money would only expire again): the shop pays that part back otherwise.
    """
    moment = as_utc(now) if now else utcnow()
    refund_id = _operation_id(refund_id, "a refund id")
    if amount_minor is not None:
        _check_amount(amount_minor)
    request_hash = _hash({"amount": amount_minor})
    certificate = _locked(conn, tenant_id, number)
    payment = get_payment(conn, tenant_id, number, operation_id, terminal_id=terminal_id)
    done = conn.execute(
        select(certificate_refunds).where(
            certificate_refunds.c.payment_id == payment.id,
            certificate_refunds.c.refund_id == refund_id,
        )
    ).first()
    if done is not None:
        if done.request_hash != request_hash:
            raise Conflict(E.REFUND_CONFLICT, f"refund {refund_id!r} was made with another amount")
        balance = _balance_after(conn, tenant_id, done.transfer_id, certificate.account_id)
        return PaymentRefund(payment, refund_id, done.amount_minor, balance, done.transfer_id, True)
    if certificate.is_expired(moment):
        raise Refused(
            E.CERTIFICATE_EXPIRED,
            f"certificate {certificate.number} has expired; it takes no refunds",
            number=certificate.number,
        )
    left = payment.amount_minor - payment.refunded_minor
    amount = left if amount_minor is None else amount_minor
    if left == 0 or amount > left:
        raise Refused(
            E.REFUND_TOO_LARGE,
            f"at most {certificate.fmt(left)} of payment {operation_id!r} is left to refund; "
            f"{certificate.fmt(amount)} was asked",
            left=certificate.fmt(left),
        )
    posted = _post(
        conn,
        tenant_id,
        simple_transfer(
            f"certificate-refund:{payment.id}:{refund_id}",
            debit_account_id=_account(conn, tenant_id, certificate.currency, REDEMPTIONS, actor),
            credit_account_id=certificate.account_id,
            amount_minor=amount,
            kind="certificate_refund",
            description=f"refund {refund_id} of payment {operation_id} "
            f"with certificate {certificate.number}",
            meta={"certificate": certificate.number, "payment": payment.id, "refund": refund_id},
            corrects_transfer_id=payment.transfer_id,
        ),
        actor,
        moment,
        refund_id,
    )
    conn.execute(
        update(certificate_payments)
        .where(certificate_payments.c.id == payment.id)
        .values(refunded_minor=certificate_payments.c.refunded_minor + amount)
    )
    conn.execute(
        certificate_refunds.insert(),
        {
            "tenant_id": tenant_id,
            "payment_id": payment.id,
            "refund_id": refund_id,
            "request_hash": request_hash,
            "amount_minor": amount,
            "transfer_id": posted.id,
            "created_at": moment,
        },
    )
    after = get_payment(conn, tenant_id, number, operation_id, terminal_id=terminal_id)
    assert after.refunded_minor == payment.refunded_minor + amount <= after.amount_minor
    balance = _balance_after(conn, tenant_id, posted.id, certificate.account_id)
    return PaymentRefund(after, refund_id, amount, balance, posted.id)


# --------------------------------------------------------------------------- blocking


def block_certificate(
    conn: Connection, *, tenant_id: int, number: str, reason: str, actor: Actor
) -> CertificateView:
    """Block the certificate with a reason: it can be neither sold nor paid with."""
    reason = reason.strip() if isinstance(reason, str) else ""
    if not 1 <= len(reason) <= 200:
        raise InvalidInput(E.REASON_REQUIRED, "a block needs a reason of 1 to 200 characters")
    certificate = _locked(conn, tenant_id, number)
    if certificate.status == "expired":
        raise Refused(
            E.CERTIFICATE_EXPIRED,
            f"certificate {certificate.number} has expired",
            number=certificate.number,
        )
    if certificate.status != "blocked":
        _set_status(conn, certificate, "blocked", reason)
        _audit_status(conn, actor, certificate, "certificate.block", reason=reason)
    return get_certificate(conn, tenant_id, certificate.id)


def unblock_certificate(
    conn: Connection, *, tenant_id: int, number: str, actor: Actor
) -> CertificateView:
    """Unblock: active again if it was sold (the nightly routine expires it if its date
    has passed meanwhile), issued if not."""
    certificate = _locked(conn, tenant_id, number)
    if certificate.status == "blocked":
        _set_status(conn, certificate, "active" if certificate.sold else "issued", None)
        _audit_status(conn, actor, certificate, "certificate.unblock")
    return get_certificate(conn, tenant_id, certificate.id)


def _set_status(
    conn: Connection, certificate: CertificateView, status: str, reason: str | None
) -> None:
    conn.execute(
        update(certificates)
        .where(certificates.c.id == certificate.id)
        .values(status=status, blocked_reason=reason)
    )


def _audit_status(
    conn: Connection, actor: Actor, certificate: CertificateView, action: str, **details: Any
) -> None:
    record_audit(
        conn,
        tenant_id=certificate.tenant_id,
        actor=actor,
        action=action,
        object_type="certificate",
        object_id=certificate.id,
        details={"number": certificate.number, **details},
    )


# --------------------------------------------------------------------------- expiry


def expire_certificates(
    conn: Connection,
    *,
    tenant_id: int,
    now: datetime,
    actor: Actor,
    limit: int | None = None,
) -> int:
    """Expire the sold certificates whose date has passed: the rest of each goes to
    ``certificate_breakage`` by a transfer and the status becomes ``expired``. Returns how
    many certificates expired (at most ``limit``). A second run finds none of them again.
    """
    moment = as_utc(now)
    query = (
        select(
            certificates.c.id,
            certificates.c.number,
            certificates.c.currency,
            certificates.c.account_id,
        )
        .where(
            certificates.c.tenant_id == tenant_id,
            certificates.c.status == "active",
            certificates.c.expires_at.is_not(None),
            certificates.c.expires_at <= moment,
        )
        .order_by(certificates.c.id)
        .with_for_update()
    )
    rows = conn.execute(query if limit is None else query.limit(limit)).all()
    if not rows:
        return 0
    balances = dict(
        conn.execute(
            select(accounts.c.id, accounts.c.balance_minor).where(
                accounts.c.id.in_([row.account_id for row in rows])
            )
        ).all()
    )
    specs: list[TransferSpec] = []
    owners: list[int] = []
    breakage = {
        currency: _account(conn, tenant_id, currency, BREAKAGE, actor)
        for currency in sorted({row.currency for row in rows})
    }
    for row in rows:
        rest = balances[row.account_id]
        assert rest >= 0, "a certificate's account never goes below zero"
        if rest == 0:
            continue
        specs.append(
            simple_transfer(
                f"certificate-expiry:{row.id}",
                debit_account_id=row.account_id,
                credit_account_id=breakage[row.currency],
                amount_minor=rest,
                kind="certificate_expiry",
                description=f"certificate {row.number} expired",
                meta={"certificate": row.number},
            )
        )
        owners.append(row.id)
    transfer_of = _post_expiries(conn, tenant_id, specs, owners, actor, moment)
    for row in rows:
        conn.execute(
            update(certificates)
            .where(certificates.c.id == row.id)
            .values(status="expired", expired_at=moment, expiry_transfer_id=transfer_of.get(row.id))
        )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="certificate.expire",
        object_type="certificate",
        object_id=rows[0].id if len(rows) == 1 else None,
        details={"count": len(rows), "written_off": len(specs), "at": moment.isoformat()},
    )
    return len(rows)


def _post_expiries(
    conn: Connection,
    tenant_id: int,
    specs: Sequence[TransferSpec],
    owners: Sequence[int],
    actor: Actor,
    now: datetime,
) -> dict[int, int]:
    if not specs:
        return {}
    outcomes = post_transfers(conn, tenant_id=tenant_id, specs=specs, actor=actor, now=now)
    result: dict[int, int] = {}
    for certificate_id, outcome in zip(owners, outcomes, strict=True):
        if isinstance(outcome, KopilkaError):
            raise outcome
        result[certificate_id] = outcome.id
    return result
