"""Payment providers behind one interface (SPEC M-4).

A provider takes a **payment** for an order (the price plus the commission the client
pays), sends the client to its own card form (``redirect_url``), and tells Kopilka how it
ended through the client's return and through **notifications** to Kopilka's URL. A
notification is never believed as it stands: a provider that signs its notifications
(Stripe, the sandbox) has its signature checked; one that does not (YooKassa) is asked
for the payment's state by its id. Refunds go back through the provider to the card paid with.

Every call that creates something at the provider carries an idempotency key of
Kopilka's, so a retried call never creates two payments or two refunds.

Adapters: ``sandbox`` (built in, its own card form: for demos and tests),
``yookassa`` (YooKassa API v3), ``stripe`` (Stripe Checkout Sessions);
``registry.provider_for`` builds the tenant's one from its settings.

What goes wrong, and what the caller does about it::

    ProviderError            the provider was not reached or said no
      .retryable = True      timeout, refused connection, HTTP 5xx or 429: the outcome is
                             unknown; ask again later with the same idempotency key
      .retryable = False     HTTP 4xx (bad credentials, a refund above what is left, an
                             unknown payment): asking again gets the same answer
    ForgedNotification       not the provider's: answer 4xx, believe nothing
    IgnoredNotification      the provider's (or harmless), but about nothing Kopilka
                             tracks (another event): answer 200, do nothing

Amounts are integers of minor units here; each adapter converts them at its edge
(YooKassa's ``"600.00"``, Stripe's integer minor units). No adapter logs a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class PaymentState(StrEnum):
    PENDING = "pending"  # created, the client has not paid (yet)
    SUCCEEDED = "succeeded"  # the money is taken
    CANCELED = "canceled"  # the client gave up, the card was declined, it expired


class RefundState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    """A line of the 54-FZ receipt sent with a YooKassa payment (others ignore it)."""

    description: str
    amount_minor: int  # the line's sum
    quantity_milli: int = 1000
    vat_code: int = 1  # YooKassa's vat_code: 1 = without VAT
    payment_subject: str = "service"  # tag 1212: what is paid for
    payment_mode: str = "full_payment"  # tag 1214: the way of settlement


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    order_id: int  # Kopilka's order (goes to the provider as metadata)
    idempotency_key: str  # Kopilka's, stable for the order: a retry creates nothing new
    amount_minor: int  # what the client pays: price + commission
    currency: str  # ISO 4217
    exponent: int
    description: str  # "8 classes a month", shown by the provider
    customer_email: str
    return_url: str  # where the client comes back to (success or failure alike)
    cancel_url: str  # where a client who gives up goes (Stripe's cancel_url)
    receipt: tuple[ReceiptLine, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderPayment:
    """The provider's view of a payment."""

    provider_payment_id: str  # YooKassa payment id, Stripe Checkout Session id, sandbox id
    state: PaymentState
    amount_minor: int
    currency: str
    redirect_url: str | None = None  # the card form (while pending)
    order_id: int | None = None  # from the metadata the payment was created with
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    provider_refund_id: str
    state: RefundState
    amount_minor: int
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notification:
    """What a verified notification says: a payment (by the provider's id) whose state is
    to be taken from ``payment`` (already asked of, or signed by, the provider)."""

    event: str  # the provider's event name ("payment.succeeded", "checkout.session.completed")
    payment: ProviderPayment


class ProviderError(Exception):
    """The provider could not be reached, or answered with an error (``retryable``: try
    again later with the same idempotency key)."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ForgedNotification(Exception):
    """A notification that is not the provider's (bad signature, an unknown payment, a
    state the provider does not confirm)."""


class IgnoredNotification(Exception):
    """A notification that is not about a payment's state (another event type, say a
    payout): nothing to believe or refuse. The door answers 200 so the provider stops
    sending it, and records nothing."""


class PaymentProvider(Protocol):
    name: str

    def create_payment(self, request: PaymentRequest) -> ProviderPayment: ...

    def get_payment(self, provider_payment_id: str) -> ProviderPayment: ...

    def refund(
        self,
        payment: ProviderPayment,
        amount_minor: int,
        *,
        idempotency_key: str,
        customer_email: str = "",
        receipt: tuple[ReceiptLine, ...] = (),
    ) -> ProviderRefund:
        """Money back to the card ``payment`` was paid with; never more than is left
        (``ProviderError``, not retryable). ``customer_email`` and ``receipt`` are the
        54-FZ refund receipt YooKassa registers (its lines add up to ``amount_minor``);
        without them YooKassa's adapter makes a one-line receipt from the payment's own
        description and e-mail when the payment had a receipt. Others ignore them."""
        ...

    def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """Raise ``ForgedNotification`` unless the provider vouches for it,
        ``IgnoredNotification`` when it is about something else, and ``ProviderError``
        when the provider could not be asked (answer 5xx: the provider sends it again)."""
        ...


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name (a plain dict or Starlette's)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None
