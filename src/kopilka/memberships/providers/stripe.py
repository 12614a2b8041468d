"""Stripe Checkout (https://docs.stripe.com/api/checkout/sessions) as a payment provider.

Through the official ``stripe`` SDK's ``StripeClient``: one client per call, with the
tenant's own secret key and API address (``base_addresses={"api": api_base}``, a local
stand-in in tests), so nothing is process-global. The SDK's own retries are off
(``max_network_retries=0``): a call fails fast with ``ProviderError(retryable=True)``
and Kopilka asks again with the same idempotency key.

* A payment is a Checkout Session: ``POST /v1/checkout/sessions`` (form-encoded) with
  ``mode=payment``, one line item (``price_data``: ``currency``, ``unit_amount`` in the
  currency's minor units, ``product_data.name``), ``customer_email``, ``success_url``
  and ``cancel_url``, ``metadata.order_id`` (and on ``payment_intent_data.metadata``,
  so the PaymentIntent carries it too), ``client_reference_id``; with an
  ``Idempotency-Key`` (a replay with the same parameters answers the first session;
  other parameters, HTTP 400 ``idempotency_error``). The session's ``url`` is the card
  form; its id is the provider's payment id.
* Its state: ``payment_status`` ``paid`` is SUCCEEDED; ``status`` ``expired`` is
  CANCELED; anything else (``open``; ``complete`` but ``unpaid`` while a delayed
  payment method settles) is PENDING.
* A refund: ``POST /v1/refunds`` with the session's ``payment_intent`` and ``amount``,
  with an ``Idempotency-Key``; more than is left is refused (HTTP 400).
* Webhooks: the ``Stripe-Signature`` header ``t=<unix time>,v1=<hex>`` is the HMAC-SHA256
  of ``"{t}.{body}"`` with the endpoint's ``whsec_`` secret; checked by the SDK's
  ``WebhookSignature.verify_header`` with a 5 minute tolerance (and, here, no more than
  5 minutes ahead either). Believed when it checks: ``checkout.session.completed``,
  ``checkout.session.async_payment_succeeded``, ``checkout.session.async_payment_failed``
  (CANCELED) and ``checkout.session.expired``, each carrying the session as it is.
  Other events are ``IgnoredNotification``.

Amounts: Stripe's minor units are the currency's ISO ones, except ``ISK`` (ISO has no
decimals; Stripe still takes it with two, always ``00``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import stripe

from kopilka.core.money import currency_exponent
from kopilka.memberships.providers import config as cfg
from kopilka.memberships.providers.base import (
    ForgedNotification,
    IgnoredNotification,
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

log = logging.getLogger(__name__)

NAME = "stripe"
DEFAULT_API_BASE = "https://api.stripe.com"
TOLERANCE_SECONDS = 5 * 60
CONFIG_KEYS = ("secret_key", "webhook_secret", "api_base", "timeout_ms")
SECRET_KEYS = frozenset({"secret_key", "webhook_secret"})
EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
# Currencies whose minor units at Stripe differ from ISO 4217's (and CLDR's).
STRIPE_EXPONENTS = {"ISK": 2}
_REFUND_STATES = {
    "pending": RefundState.PENDING,
    "requires_action": RefundState.PENDING,
    "succeeded": RefundState.SUCCEEDED,
    "failed": RefundState.CANCELED,
    "canceled": RefundState.CANCELED,
}


@dataclass(frozen=True, slots=True)
class StripeConfig:
    secret_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    api_base: str = DEFAULT_API_BASE
    timeout_ms: int = cfg.DEFAULT_TIMEOUT_MS


def parse_config(raw: Mapping[str, Any]) -> StripeConfig:
    """``{"secret_key": "sk_…" (or a restricted "rk_…"), "webhook_secret": "whsec_…",
    "api_base", "timeout_ms"}``, the last two optional."""
    cfg.check_keys(raw, CONFIG_KEYS, "Stripe")
    secret_key = cfg.text(raw, "secret_key", max_length=300)
    if not secret_key.startswith(("sk_", "rk_")):
        raise cfg.bad("secret_key", "secret_key is the secret API key: it starts with 'sk_'")
    config = StripeConfig(
        secret_key=secret_key,
        webhook_secret=cfg.text(raw, "webhook_secret", max_length=300, prefix="whsec_"),
        api_base=cfg.api_base(raw, DEFAULT_API_BASE),
        timeout_ms=cfg.timeout_ms(raw),
    )
    assert config.api_base and not config.api_base.endswith("/")
    return config


# --------------------------------------------------------------------------- amounts


def to_stripe_amount(amount_minor: int, currency: str, exponent: int) -> int:
    """Kopilka's minor units (ISO exponent ``exponent``) as Stripe's."""
    assert amount_minor >= 0
    shift = STRIPE_EXPONENTS.get(currency.upper(), exponent) - exponent
    assert shift >= 0
    return amount_minor * 10**shift


def from_stripe_amount(amount: int, currency: str) -> int:
    exponent = currency_exponent(currency.upper())
    shift = STRIPE_EXPONENTS.get(currency.upper(), exponent) - exponent
    minor, rest = divmod(amount, 10**shift)
    if rest:
        raise _unreadable(f"{amount} {currency} is not a whole number of minor units")
    return minor


# --------------------------------------------------------------------------- answers


def _unreadable(detail: str) -> ProviderError:
    return ProviderError(
        f"Stripe answered with what Kopilka cannot read: {detail}", retryable=False
    )


def session_state(session: Mapping[str, Any]) -> PaymentState:
    if session.get("payment_status") == "paid":
        return PaymentState.SUCCEEDED
    if session.get("status") == "expired":
        return PaymentState.CANCELED
    return PaymentState.PENDING


def payment_of(session: Mapping[str, Any], state: PaymentState | None = None) -> ProviderPayment:
    """A Checkout Session as Kopilka's ``ProviderPayment`` (``state`` overrides what the
    session's fields say: an ``async_payment_failed`` event's)."""
    session_id = session.get("id")
    amount = session.get("amount_total")
    currency = session.get("currency")
    if not isinstance(session_id, str) or not session_id:
        raise _unreadable("a Checkout Session without an id")
    if isinstance(amount, bool) or not isinstance(amount, int) or not isinstance(currency, str):
        raise _unreadable(f"Checkout Session {session_id} without amount_total and currency")
    state = state or session_state(session)
    metadata = session.get("metadata")
    order_id = metadata.get("order_id") if isinstance(metadata, Mapping) else None
    order_id = order_id or session.get("client_reference_id")
    url = session.get("url")
    return ProviderPayment(
        provider_payment_id=session_id,
        state=state,
        amount_minor=from_stripe_amount(amount, currency),
        currency=currency.upper(),
        redirect_url=url if state is PaymentState.PENDING and isinstance(url, str) else None,
        order_id=int(order_id)
        if isinstance(order_id, str) and order_id.isascii() and order_id.isdigit()
        else None,
        raw=dict(session),
    )


def refund_of(refund: Mapping[str, Any]) -> ProviderRefund:
    refund_id = refund.get("id")
    status = refund.get("status")
    amount = refund.get("amount")
    currency = refund.get("currency")
    if not isinstance(refund_id, str) or status not in _REFUND_STATES:
        raise _unreadable(f"refund {refund_id!r} in status {status!r}")
    if isinstance(amount, bool) or not isinstance(amount, int) or not isinstance(currency, str):
        raise _unreadable(f"refund {refund_id} without amount and currency")
    return ProviderRefund(
        provider_refund_id=refund_id,
        state=_REFUND_STATES[str(status)],
        amount_minor=from_stripe_amount(amount, currency),
        raw=dict(refund),
    )


def _error_of(error: stripe.StripeError) -> ProviderError:
    status = error.http_status
    if isinstance(error, stripe.APIConnectionError):
        return ProviderError(
            f"Stripe could not be reached or did not answer in time: {error.user_message}",
            retryable=True,
        )
    code = f" {error.code}" if error.code else ""
    # 409 is Stripe's "another request with this key is in flight" (or a lock timeout).
    retryable = status is None or status >= 500 or status in (409, 429)
    return ProviderError(
        f"Stripe answered HTTP {status}{code}: {error.user_message or 'no message'}",
        retryable=retryable,
        status=status,
    )


# --------------------------------------------------------------------------- the SDK


class _Api:
    """The few calls made of the SDK, with plain dicts in and out and Stripe's errors
    turned into ``ProviderError``."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def create_session(
        self, params: stripe.params.checkout.SessionCreateParams, key: str
    ) -> dict[str, Any]:
        session = self._client.v1.checkout.sessions.create(
            params=params, options={"idempotency_key": key}
        )
        return session.to_dict()

    def get_session(self, session_id: str) -> dict[str, Any]:
        return self._client.v1.checkout.sessions.retrieve(session_id).to_dict()

    def create_refund(self, params: stripe.params.RefundCreateParams, key: str) -> dict[str, Any]:
        refund = self._client.v1.refunds.create(params=params, options={"idempotency_key": key})
        return refund.to_dict()


# --------------------------------------------------------------------------- the adapter


class StripeProvider:
    """One Stripe account (see the module's docstring)."""

    name = NAME

    def __init__(self, config: StripeConfig) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"StripeProvider({self.config.api_base!r})"

    @contextmanager
    def _api(self) -> Iterator[_Api]:
        http = stripe.RequestsClient(timeout=self.config.timeout_ms / 1000)
        client = stripe.StripeClient(
            self.config.secret_key,
            base_addresses={"api": self.config.api_base},
            max_network_retries=0,
            http_client=http,
        )
        try:
            yield _Api(client)
        except stripe.StripeError as error:
            failure = _error_of(error)
            log.warning("stripe refused", extra={"status": failure.status})
            raise failure from error
        finally:
            http.close()

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        assert request.amount_minor > 0, "a payment of nothing"
        metadata = {**request.metadata, "order_id": str(request.order_id)}
        currency = request.currency.lower()
        params: stripe.params.checkout.SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": to_stripe_amount(
                            request.amount_minor, request.currency, request.exponent
                        ),
                        "product_data": {"name": request.description[:250]},
                    },
                }
            ],
            "customer_email": request.customer_email,
            "success_url": request.return_url,
            "cancel_url": request.cancel_url,
            "client_reference_id": str(request.order_id),
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
        with self._api() as api:
            session = api.create_session(params, request.idempotency_key)
        payment = payment_of(session)
        if payment.amount_minor != request.amount_minor or payment.currency != request.currency:
            raise ProviderError(
                f"Stripe answered with session {payment.provider_payment_id} of another amount "
                f"than asked: the idempotency key {request.idempotency_key!r} was used for "
                "another payment",
                retryable=False,
            )
        log.info(
            "stripe checkout session created",
            extra={
                "provider_payment_id": payment.provider_payment_id,
                "order_id": request.order_id,
            },
        )
        return payment

    def get_payment(self, provider_payment_id: str) -> ProviderPayment:
        if not provider_payment_id.startswith("cs_") or "/" in provider_payment_id:
            raise ProviderError(
                f"{provider_payment_id!r} is not a Checkout Session id", retryable=False
            )
        with self._api() as api:
            return payment_of(api.get_session(provider_payment_id))

    def refund(
        self,
        payment: ProviderPayment,
        amount_minor: int,
        *,
        idempotency_key: str,
        customer_email: str = "",
        receipt: tuple[ReceiptLine, ...] = (),
    ) -> ProviderRefund:
        assert amount_minor > 0, "a refund of nothing"
        session = payment.raw if payment.raw.get("payment_intent") else None
        if session is None:
            session = self.get_payment(payment.provider_payment_id).raw
        intent = session.get("payment_intent")
        if isinstance(intent, Mapping):  # expanded
            intent = intent.get("id")
        if not isinstance(intent, str) or not intent:
            raise ProviderError(
                f"Checkout Session {payment.provider_payment_id} was not paid: nothing to refund",
                retryable=False,
            )
        params: stripe.params.RefundCreateParams = {
            "payment_intent": intent,
            "amount": to_stripe_amount(
                amount_minor, payment.currency, currency_exponent(payment.currency)
            ),
        }
        with self._api() as api:
            refund = refund_of(api.create_refund(params, idempotency_key))
        log.info(
            "stripe refund created",
            extra={
                "provider_payment_id": payment.provider_payment_id,
                "provider_refund_id": refund.provider_refund_id,
                "state": refund.state.value,
            },
        )
        return refund

    def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        signature = header(headers, "Stripe-Signature")
        try:
            stripe.WebhookSignature.verify_header(
                body, signature, self.config.webhook_secret, TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as error:
            raise ForgedNotification(
                f"Stripe-Signature does not check: {error.user_message}"
            ) from error
        except ValueError as error:  # a body that is not UTF-8
            raise ForgedNotification("not a Stripe event: the body is not text") from error
        _refuse_from_the_future(str(signature))
        try:
            event = json.loads(body)
        except ValueError as error:
            raise ForgedNotification("not a Stripe event: not JSON") from error
        kind = event.get("type") if isinstance(event, dict) else None
        data = event.get("data") if isinstance(event, dict) else None
        session = data.get("object") if isinstance(data, dict) else None
        if kind not in EVENTS:
            raise IgnoredNotification(f"Stripe's event {str(kind)[:64]!r} is not about a payment")
        if not isinstance(session, dict) or session.get("object") != "checkout.session":
            raise ForgedNotification(f"Stripe's {kind} event carries no Checkout Session")
        state = None
        if kind == "checkout.session.async_payment_failed":
            state = PaymentState.CANCELED
        return Notification(event=str(kind), payment=payment_of(session, state))


def _refuse_from_the_future(signature: str) -> None:
    """The SDK refuses a stale timestamp; one from far ahead is no more believable."""
    stamps = [part[2:] for part in signature.split(",") if part.startswith("t=")]
    if (
        stamps
        and stamps[0].isascii()
        and stamps[0].isdigit()
        and int(stamps[0]) > time.time() + TOLERANCE_SECONDS
    ):
        raise ForgedNotification("Stripe-Signature's timestamp is in the future")


def provider(config: Mapping[str, Any]) -> StripeProvider:
    return StripeProvider(parse_config(config))
