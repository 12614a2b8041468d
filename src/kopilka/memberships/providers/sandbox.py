"""The built-in sandbox: a payment provider of Kopilka's own, for demos and tests.

It plays a real provider's part without one: it keeps its books in ``sandbox_payments``
and ``sandbox_refunds`` (tenant-scoped like every table), sends the client to a card
page of Kopilka's own (``{public_base}/sandbox/pay/{payment_id}``), and signs its
notifications with the tenant's sandbox secret (``provider_config["secret"]``; make one
with ``new_config()``).

The card page (a door, built elsewhere) uses three functions of this module:
``get_sandbox_payment`` (what to show: description, amount, where to go back),
``pay_with_card`` (the form sent) and ``cancel`` (the client gave up). Test cards:

===================  =========================================
4242 4242 4242 4242  succeeds
4000 0000 0000 0002  declined: the payment is canceled
===================  =========================================

Any expiry month not gone by, any 3 or 4 digit CVC. Another number is refused with a
clear error (``invalid_card_number`` when its check digit is wrong, ``not_a_test_card``
otherwise), and the payment stays pending, so the client may try again.

Notifications: a JSON body ``{"type": "notification", "event": "payment.succeeded",
"payment": {"id", "status", "amount_minor", "currency", "order_id"}}`` with the header
``Kopilka-Sandbox-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "{t}.{body}" with the
secret>``. ``verify_notification`` checks the signature (5 minutes' tolerance either
way) and then believes only the sandbox's own books about the payment, as a careful
integration would ask a real provider.

Every write is one transaction; a payment's row is locked (``FOR UPDATE``) while it is
paid, canceled or refunded, so two refunds at once can never take more than was paid.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, select, update

from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput, NotFound, Refused
from kopilka.ledger.posting import run_transaction
from kopilka.memberships.providers import config as cfg
from kopilka.memberships.providers.base import (
    ForgedNotification,
    Notification,
    PaymentRequest,
    PaymentState,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ReceiptLine,
    RefundState,
    header,
)
from kopilka.memberships.providers.error_codes import ProviderErrorCode as E
from kopilka.memberships.schema import sandbox_payments, sandbox_refunds

NAME = "sandbox"
SIGNATURE_HEADER = "Kopilka-Sandbox-Signature"
TOLERANCE_SECONDS = 5 * 60
CONFIG_KEYS = ("secret",)
SECRET_KEYS = frozenset({"secret"})
CARD_SUCCEEDS = "4242424242424242"
CARD_DECLINED = "4000000000000002"
# The test cards and how each ends: None succeeds, a text is the decline's reason.
TEST_CARDS: dict[str, str | None] = {CARD_SUCCEEDS: None, CARD_DECLINED: "card_declined"}
KEY_MAX = 100  # sandbox_*.idempotency_key
DESCRIPTION_MAX = 200

_PAYMENT_ID = re.compile(r"^sbx_[0-9a-f]{32}$")
_EXPIRY = re.compile(r"^(\d{1,2})\s*/\s*(\d{2}|\d{4})$")


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    secret: str | None = field(default=None, repr=False)


def new_config() -> dict[str, str]:
    """A tenant's sandbox settings with a fresh secret (256 random bits)."""
    return {"secret": "sbxsec_" + secrets.token_urlsafe(32)}


def parse_config(raw: Mapping[str, Any]) -> SandboxConfig:
    """``{"secret"}`` (optional: without one, notifications cannot be checked and are
    refused; the return redirect, which asks the sandbox, still works)."""
    cfg.check_keys(raw, CONFIG_KEYS, "the sandbox")
    if raw.get("secret") in (None, ""):
        return SandboxConfig()
    secret = cfg.text(raw, "secret", max_length=200)
    if len(secret) < 16:
        raise cfg.bad("secret", "secret is at least 16 characters")
    return SandboxConfig(secret=secret)


# --------------------------------------------------------------------------- the card form


def luhn_ok(digits: str) -> bool:
    """Whether the last digit is the Luhn check digit of the others."""
    assert digits.isdigit()
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_digits(card_number: str) -> str:
    """The number's digits (spaces and dashes as people type them are dropped); refused
    unless 12 to 19 digits with a right check digit."""
    digits = re.sub(r"[\s-]", "", card_number) if isinstance(card_number, str) else ""
    if not digits.isascii() or not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise InvalidInput(
            E.INVALID_CARD_NUMBER, "a card number is 12 to 19 digits", field="card_number"
        )
    if not luhn_ok(digits):
        raise InvalidInput(
            E.INVALID_CARD_NUMBER,
            "the card number is mistyped: its check digit is wrong",
            field="card_number",
        )
    return digits


def check_expiry(expiry: str, now: datetime) -> None:
    """``MM/YY`` (or ``MM/YYYY``); a card is good to the end of its month."""
    match = _EXPIRY.match(expiry.strip()) if isinstance(expiry, str) else None
    month = int(match[1]) if match else 0
    if match is None or not 1 <= month <= 12:
        raise InvalidInput(
            E.INVALID_CARD_EXPIRY, "the expiry date is MM/YY, such as 12/30", field="expiry"
        )
    year = int(match[2]) if len(match[2]) == 4 else 2000 + int(match[2])
    if (year, month) < (now.year, now.month):
        raise InvalidInput(E.INVALID_CARD_EXPIRY, "the card has expired", field="expiry")


def check_cvc(cvc: str) -> None:
    if not isinstance(cvc, str) or not re.fullmatch(r"\d{3,4}", cvc.strip()):
        raise InvalidInput(E.INVALID_CARD_CVC, "the CVC is 3 or 4 digits", field="cvc")


@dataclass(frozen=True, slots=True)
class SandboxPayment:
    """A sandbox payment as its card page shows it."""

    id: str
    tenant_id: int
    amount_minor: int
    currency: str
    description: str
    return_url: str
    cancel_url: str
    order_id: int | None
    status: PaymentState
    card_last4: str | None
    refunded_minor: int
    created_at: datetime


def _sandbox_payment(row: Row[Any]) -> SandboxPayment:
    return SandboxPayment(
        id=row.id,
        tenant_id=int(row.tenant_id),
        amount_minor=int(row.amount_minor),
        currency=row.currency,
        description=row.description,
        return_url=row.return_url,
        cancel_url=row.cancel_url,
        order_id=None if row.order_id is None else int(row.order_id),
        status=PaymentState(row.status),
        card_last4=row.card_last4,
        refunded_minor=int(row.refunded_minor),
        created_at=row.created_at,
    )


def _payment_row(
    conn: Connection, payment_id: str, *, tenant_id: int | None = None, lock: bool = False
) -> Row[Any] | None:
    if not isinstance(payment_id, str) or not _PAYMENT_ID.match(payment_id):
        return None
    query = select(sandbox_payments).where(sandbox_payments.c.id == payment_id)
    if tenant_id is not None:
        query = query.where(sandbox_payments.c.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update()
    return conn.execute(query).first()


def _not_found(payment_id: str) -> NotFound:
    return NotFound(E.SANDBOX_PAYMENT_NOT_FOUND, f"no sandbox payment {payment_id[:60]!r}")


def get_sandbox_payment(engine: Engine, payment_id: str) -> SandboxPayment:
    """What the card page shows (its address carries the payment's unguessable id)."""
    with read_only(engine) as conn:
        row = _payment_row(conn, payment_id)
    if row is None:
        raise _not_found(payment_id)
    return _sandbox_payment(row)


def pay_with_card(
    engine: Engine,
    payment_id: str,
    card_number: str,
    *,
    expiry: str,
    cvc: str,
    now: datetime | None = None,
) -> ProviderPayment:
    """The card form sent: a test card that succeeds takes the money, one that is
    declined cancels the payment. A payment already paid is answered as it is (the form
    sent twice); a canceled one cannot be paid (``sandbox_payment_state``)."""
    moment = now or utcnow()
    digits = card_digits(card_number)
    check_expiry(expiry, moment)
    check_cvc(cvc)
    if digits not in TEST_CARDS:
        raise InvalidInput(
            E.NOT_A_TEST_CARD,
            "the sandbox takes only its test cards: 4242 4242 4242 4242 (succeeds) and "
            "4000 0000 0000 0002 (declined)",
            field="card_number",
        )
    decline = TEST_CARDS[digits]

    def work(conn: Connection) -> ProviderPayment:
        row = _payment_row(conn, payment_id, lock=True)
        if row is None:
            raise _not_found(payment_id)
        if row.status == PaymentState.SUCCEEDED:
            return _provider_payment(row)
        if row.status == PaymentState.CANCELED:
            raise Refused(E.SANDBOX_PAYMENT_STATE, "this payment was canceled: start again")
        status = PaymentState.CANCELED if decline else PaymentState.SUCCEEDED
        conn.execute(
            update(sandbox_payments)
            .where(sandbox_payments.c.id == row.id, sandbox_payments.c.status == "pending")
            .values(status=status.value, card_last4=digits[-4:], updated_at=moment)
        )
        done = _payment_row(conn, payment_id)
        assert done is not None and done.status == status
        return _provider_payment(done, decline_code=decline)

    return run_transaction(engine, work)


def cancel(engine: Engine, payment_id: str, *, now: datetime | None = None) -> ProviderPayment:
    """The client gave up on the card page: a pending payment is canceled (one canceled
    already stays so); a paid one cannot be (``sandbox_payment_state``)."""
    moment = now or utcnow()

    def work(conn: Connection) -> ProviderPayment:
        row = _payment_row(conn, payment_id, lock=True)
        if row is None:
            raise _not_found(payment_id)
        if row.status == PaymentState.SUCCEEDED:
            raise Refused(E.SANDBOX_PAYMENT_STATE, "this payment is paid: it is refunded instead")
        if row.status == PaymentState.PENDING:
            conn.execute(
                update(sandbox_payments)
                .where(sandbox_payments.c.id == row.id)
                .values(status=PaymentState.CANCELED.value, updated_at=moment)
            )
        done = _payment_row(conn, payment_id)
        assert done is not None and done.status == PaymentState.CANCELED
        return _provider_payment(done)

    return run_transaction(engine, work)


def _provider_payment(
    row: Row[Any], *, public_base: str | None = None, decline_code: str | None = None
) -> ProviderPayment:
    state = PaymentState(row.status)
    raw: dict[str, Any] = {
        "id": row.id,
        "status": row.status,
        "amount_minor": int(row.amount_minor),
        "currency": row.currency,
        "refunded_minor": int(row.refunded_minor),
        "card_last4": row.card_last4,
    }
    if decline_code:
        raw["decline_code"] = decline_code
    redirect_url = None
    if state is PaymentState.PENDING and public_base is not None:
        redirect_url = pay_url(public_base, row.id)
    return ProviderPayment(
        provider_payment_id=row.id,
        state=state,
        amount_minor=int(row.amount_minor),
        currency=row.currency,
        redirect_url=redirect_url,
        order_id=None if row.order_id is None else int(row.order_id),
        raw=raw,
    )


def pay_url(public_base: str, payment_id: str) -> str:
    """The sandbox's card page for a payment."""
    return f"{public_base.rstrip('/')}/sandbox/pay/{payment_id}"


# --------------------------------------------------------------------------- signatures


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def check_signature(body: bytes, value: str | None, secret: str, now: float) -> None:
    """``ForgedNotification`` unless ``value`` is ``secret``'s signature of ``body``,
    made within the tolerance of ``now``."""
    parts: dict[str, str] = {}
    for part in (value or "").split(","):
        name, _, text = part.strip().partition("=")
        parts.setdefault(name, text)
    stamp = parts.get("t", "")
    if not (stamp.isascii() and stamp.isdigit()) or "v1" not in parts:
        raise ForgedNotification(f"no {SIGNATURE_HEADER} header of the form t=...,v1=...")
    if abs(now - int(stamp)) > TOLERANCE_SECONDS:
        raise ForgedNotification(f"{SIGNATURE_HEADER} is more than 5 minutes away from now")
    expected = signature_header(body, secret, int(stamp)).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, parts["v1"]):
        raise ForgedNotification(f"{SIGNATURE_HEADER} does not check")


# --------------------------------------------------------------------------- the adapter


class SandboxProvider:
    """One tenant's sandbox (see the module's docstring)."""

    name = NAME

    def __init__(
        self, engine: Engine, *, tenant_id: int, public_base: str, config: SandboxConfig
    ) -> None:
        assert tenant_id > 0
        self.engine = engine
        self.tenant_id = tenant_id
        self.public_base = public_base.rstrip("/")
        self.config = config

    def __repr__(self) -> str:
        return f"SandboxProvider(tenant {self.tenant_id}, {self.public_base!r})"

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        assert request.amount_minor > 0, "a payment of nothing"
        key = _stored_key(request.idempotency_key)
        moment = utcnow()

        def work(conn: Connection) -> ProviderPayment:
            row = conn.execute(
                select(sandbox_payments).where(
                    sandbox_payments.c.tenant_id == self.tenant_id,
                    sandbox_payments.c.idempotency_key == key,
                )
            ).first()
            if row is None:
                payment_id = "sbx_" + secrets.token_hex(16)
                conn.execute(
                    sandbox_payments.insert(),
                    {
                        "id": payment_id,
                        "tenant_id": self.tenant_id,
                        "idempotency_key": key,
                        "amount_minor": request.amount_minor,
                        "currency": request.currency,
                        "description": request.description[:DESCRIPTION_MAX],
                        "return_url": request.return_url,
                        "cancel_url": request.cancel_url,
                        "order_id": request.order_id,
                        "status": PaymentState.PENDING.value,
                        "created_at": moment,
                        "updated_at": moment,
                    },
                )
                row = _payment_row(conn, payment_id)
                assert row is not None
            elif (row.amount_minor, row.currency, row.order_id) != (
                request.amount_minor,
                request.currency,
                request.order_id,
            ):
                raise ProviderError(
                    f"the idempotency key {request.idempotency_key!r} was used for another payment",
                    retryable=False,
                    status=400,
                )
            return _provider_payment(row, public_base=self.public_base)

        return run_transaction(self.engine, work)

    def get_payment(self, provider_payment_id: str) -> ProviderPayment:
        with read_only(self.engine) as conn:
            row = _payment_row(conn, provider_payment_id, tenant_id=self.tenant_id)
        if row is None:
            raise ProviderError(
                f"the sandbox knows no payment {provider_payment_id[:60]!r}",
                retryable=False,
                status=404,
            )
        return _provider_payment(row, public_base=self.public_base)

    def refund(
        self,
        payment: ProviderPayment,
        amount_minor: int,
        *,
        idempotency_key: str,
        customer_email: str = "",
        receipt: tuple[ReceiptLine, ...] = (),
    ) -> ProviderRefund:
        """Books a refund of a paid payment, never above what is left of it."""
        assert amount_minor > 0, "a refund of nothing"
        key = _stored_key(idempotency_key)
        payment_id = payment.provider_payment_id

        def work(conn: Connection) -> ProviderRefund:
            # The payment's lock first, then the key: the same refund asked twice at once
            # finds the first one's booking, never "more than is left".
            row = _payment_row(conn, payment_id, tenant_id=self.tenant_id, lock=True)
            if row is None:
                raise ProviderError(
                    f"the sandbox knows no payment {payment_id[:60]!r}", retryable=False, status=404
                )
            booked = conn.execute(
                select(sandbox_refunds).where(
                    sandbox_refunds.c.tenant_id == self.tenant_id,
                    sandbox_refunds.c.idempotency_key == key,
                )
            ).first()
            if booked is not None:
                if (booked.payment_id, booked.amount_minor) != (payment_id, amount_minor):
                    raise ProviderError(
                        f"the idempotency key {idempotency_key!r} was used for another refund",
                        retryable=False,
                        status=400,
                    )
                return _refund_of(booked)
            return self._book_refund(conn, row, amount_minor, key)

        return run_transaction(self.engine, work)

    def _book_refund(
        self, conn: Connection, row: Row[Any], amount_minor: int, key: str
    ) -> ProviderRefund:
        if row.status != PaymentState.SUCCEEDED:
            raise ProviderError(
                f"sandbox payment {row.id} is {row.status}, not paid: nothing to refund",
                retryable=False,
                status=400,
            )
        left = int(row.amount_minor) - int(row.refunded_minor)
        if amount_minor > left:
            raise ProviderError(
                f"a refund of {amount_minor} is more than is left of sandbox payment {row.id} "
                f"({left} of {row.amount_minor} minor units)",
                retryable=False,
                status=400,
            )
        moment = utcnow()
        refund_id = "sbr_" + secrets.token_hex(16)
        conn.execute(
            sandbox_refunds.insert(),
            {
                "id": refund_id,
                "tenant_id": self.tenant_id,
                "payment_id": row.id,
                "idempotency_key": key,
                "amount_minor": amount_minor,
                "created_at": moment,
            },
        )
        conn.execute(
            update(sandbox_payments)
            .where(sandbox_payments.c.id == row.id)
            .values(
                refunded_minor=sandbox_payments.c.refunded_minor + amount_minor, updated_at=moment
            )
        )
        booked = conn.execute(
            select(sandbox_refunds).where(sandbox_refunds.c.id == refund_id)
        ).one()
        return _refund_of(booked)

    def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        if self.config.secret is None:
            raise ForgedNotification(
                "the sandbox has no secret (provider_config.secret): its notifications "
                "cannot be checked"
            )
        check_signature(body, header(headers, SIGNATURE_HEADER), self.config.secret, time.time())
        try:
            data = json.loads(body)
        except ValueError as error:
            raise ForgedNotification("not a sandbox notification: not JSON") from error
        event = data.get("event") if isinstance(data, dict) else None
        payment = data.get("payment") if isinstance(data, dict) else None
        payment_id = payment.get("id") if isinstance(payment, dict) else None
        if not isinstance(event, str) or not isinstance(payment_id, str):
            raise ForgedNotification("not a sandbox notification: no event and payment id")
        with read_only(self.engine) as conn:
            row = _payment_row(conn, payment_id, tenant_id=self.tenant_id)
        if row is None:
            raise ForgedNotification(f"the sandbox knows no payment {payment_id[:60]!r}")
        # The books, not the body, say how the payment stands.
        return Notification(event=event[:64], payment=_provider_payment(row))

    def notification_for(
        self, payment: ProviderPayment, *, now: float | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The notification (body, headers) the sandbox sends about ``payment``."""
        if self.config.secret is None:
            raise ValueError("the sandbox has no secret to sign its notifications with")
        body = json.dumps(
            {
                "type": "notification",
                "event": f"payment.{payment.state.value}",
                "payment": {
                    "id": payment.provider_payment_id,
                    "status": payment.state.value,
                    "amount_minor": payment.amount_minor,
                    "currency": payment.currency,
                    "order_id": payment.order_id,
                },
            },
            separators=(",", ":"),
        ).encode()
        stamp = int(time.time() if now is None else now)
        return body, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(body, self.config.secret, stamp),
        }


def _refund_of(row: Row[Any]) -> ProviderRefund:
    return ProviderRefund(
        provider_refund_id=row.id,
        state=RefundState.SUCCEEDED,
        amount_minor=int(row.amount_minor),
        raw={"id": row.id, "payment_id": row.payment_id, "amount_minor": int(row.amount_minor)},
    )


def _stored_key(key: str) -> str:
    """Kopilka's idempotency key as the sandbox's column takes it (a longer one by its
    SHA-256, the same for every retry)."""
    assert key, "an idempotency key is required"
    return key if len(key) <= KEY_MAX else hashlib.sha256(key.encode()).hexdigest()


def provider(
    config: Mapping[str, Any], *, engine: Engine, tenant_id: int, public_base: str
) -> SandboxProvider:
    return SandboxProvider(
        engine, tenant_id=tenant_id, public_base=public_base, config=parse_config(config)
    )
