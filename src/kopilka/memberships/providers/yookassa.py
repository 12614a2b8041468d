"""YooKassa, API v3 (https://yookassa.ru/developers/api), as a payment provider.

Why not the official ``yookassa`` SDK: its credentials and address are process-global.
``yookassa.Configuration.configure(account_id, secret_key)`` sets class attributes that
every ``Payment.create`` / ``Refund.create`` reads when it runs, and ``ApiClient.endpoint``
is a class attribute taken from ``Configuration.api_url`` when the module is imported.
Kopilka serves many studios, each with its own shop, from one process and many threads:
two requests would race for one global shop id and key, and a test could not point the
SDK at a local stand-in. So this module speaks the documented HTTP API itself, through
httpx, with the tenant's own credentials on every request.

The API as used here:

* HTTP Basic authentication: the shop id and the secret key; JSON bodies.
* ``POST {api_base}/payments`` with an ``Idempotence-Key`` header (at most 64
  characters; Kopilka's key, or its SHA-256 when longer) and ``{"amount": {"value":
  "600.00", "currency": "RUB"}, "capture": true, "confirmation": {"type": "redirect",
  "return_url"}, "description" (at most 128), "metadata": {"order_id", ...}, "receipt":
  {"customer": {"email"}, "items": [{"description", "quantity", "amount", "vat_code",
  "payment_mode", "payment_subject"}]}}`` (the 54-FZ receipt, "Чеки от ЮKassa"). The
  same key with the same body answers the first payment again; with another body, 400.
* ``GET {api_base}/payments/{id}``: the payment; ``status`` is ``pending``,
  ``waiting_for_capture`` (not with ``capture: true``), ``succeeded`` or ``canceled``.
  ``confirmation.confirmation_url`` is the card form.
* ``POST {api_base}/refunds`` with an ``Idempotence-Key`` and ``{"payment_id",
  "amount", "receipt"}``; a refund receipt is required when the payment had one.
* Errors: ``{"type": "error", "id", "code", "description", "parameter"}`` with HTTP 400
  ``invalid_request``, 401 ``invalid_credentials``, 403 ``forbidden``, 404 ``not_found``,
  429 ``too_many_requests``, 500 ``internal_server_error`` (the outcome is unknown: the
  same request with the same key again). 429, 5xx, a timeout and a failed connection
  are ``ProviderError(retryable=True)``; the other errors are not retryable.
* Notifications: ``{"type": "notification", "event": "payment.succeeded" |
  "payment.canceled" | "payment.waiting_for_capture" | "refund.succeeded", "object":
  {...}}`` POSTed to the URL set in the shop's account, unsigned. So nothing in them is
  believed: the payment is asked for by its id (a refund's, by the refund's
  ``payment_id``) and only YooKassa's answer counts. An id YooKassa does not know is
  ``ForgedNotification``; a notification saying "succeeded" of a payment YooKassa calls
  pending gives a pending payment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from kopilka.core.errors import InvalidInput
from kopilka.core.money import currency_exponent, format_amount, parse_amount
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
)

log = logging.getLogger(__name__)

NAME = "yookassa"
DEFAULT_API_BASE = "https://api.yookassa.ru/v3"
IDEMPOTENCE_KEY_MAX = 64
DESCRIPTION_MAX = 128
CONFIG_KEYS = ("shop_id", "secret_key", "api_base", "timeout_ms", "send_receipts", "vat_code")
SECRET_KEYS = frozenset({"secret_key"})

_STATES = {
    "pending": PaymentState.PENDING,
    "waiting_for_capture": PaymentState.PENDING,
    "succeeded": PaymentState.SUCCEEDED,
    "canceled": PaymentState.CANCELED,
}
_REFUND_STATES = {
    "pending": RefundState.PENDING,
    "succeeded": RefundState.SUCCEEDED,
    "canceled": RefundState.CANCELED,
}
# YooKassa's ids are UUID-like ("2419a771-000f-5000-9000-1edaf29243f2"); anything else is
# refused before it becomes part of a URL.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SHOP_ID = re.compile(r"^\d{1,20}$")


@dataclass(frozen=True, slots=True)
class YooKassaConfig:
    shop_id: str
    secret_key: str = field(repr=False)
    api_base: str = DEFAULT_API_BASE
    timeout_ms: int = cfg.DEFAULT_TIMEOUT_MS
    # Whether payments carry a 54-FZ receipt (the shop uses "Чеки от ЮKassa").
    send_receipts: bool = True
    vat_code: int = 1  # of a refund receipt Kopilka makes itself: 1 = without VAT


def parse_config(raw: Mapping[str, Any]) -> YooKassaConfig:
    """``{"shop_id", "secret_key", "api_base", "timeout_ms", "send_receipts",
    "vat_code"}``, the last four optional; ``invalid_provider_config`` naming the field."""
    cfg.check_keys(raw, CONFIG_KEYS, "YooKassa")
    shop_id = cfg.text(raw, "shop_id", max_length=20)
    if not _SHOP_ID.match(shop_id):
        raise cfg.bad("shop_id", f"shop_id is the shop's number from YooKassa, not {shop_id!r}")
    config = YooKassaConfig(
        shop_id=shop_id,
        secret_key=cfg.text(raw, "secret_key", max_length=200),
        api_base=cfg.api_base(raw, DEFAULT_API_BASE),
        timeout_ms=cfg.timeout_ms(raw),
        send_receipts=cfg.flag(raw, "send_receipts", True),
        vat_code=cfg.whole_number(raw, "vat_code", 1, 1, 12),
    )
    assert config.api_base and not config.api_base.endswith("/")
    return config


# --------------------------------------------------------------------------- amounts


def money(amount_minor: int, currency: str, exponent: int) -> dict[str, str]:
    """``60000`` RUB -> ``{"value": "600.00", "currency": "RUB"}``."""
    assert isinstance(amount_minor, int) and amount_minor >= 0
    return {"value": format_amount(amount_minor, exponent), "currency": currency}


def amount_of(value: Any, where: str) -> tuple[int, str]:
    """YooKassa's ``{"value", "currency"}`` as minor units and the currency."""
    if not isinstance(value, Mapping):
        raise _unreadable(f"{where} is not an amount")
    currency = value.get("currency")
    try:
        exponent = currency_exponent(str(currency))
        minor = parse_amount(str(value.get("value")), exponent)
    except InvalidInput as error:
        raise _unreadable(f"{where}: {error.detail}") from error
    return minor, str(currency)


def idempotence_key(key: str) -> str:
    """Kopilka's key as YooKassa takes it: at most 64 characters (a longer one is
    replaced by its SHA-256, the same for every retry)."""
    assert key, "an idempotency key is required"
    if len(key) <= IDEMPOTENCE_KEY_MAX:
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def receipt_body(
    customer_email: str, lines: tuple[ReceiptLine, ...], currency: str, exponent: int
) -> dict[str, Any]:
    """The 54-FZ receipt: an item's ``amount`` is its price for one, and the items add up
    to the payment (YooKassa refuses the payment otherwise)."""
    if not customer_email:
        raise ValueError("a receipt goes to the customer's e-mail")
    items = []
    for line in lines:
        price_minor, rest = divmod(line.amount_minor * 1000, line.quantity_milli)
        if rest or line.quantity_milli <= 0:
            raise ValueError(
                f"{line.description!r}: {line.amount_minor} minor units do not divide into "
                f"{line.quantity_milli / 1000} equal prices"
            )
        items.append(
            {
                "description": line.description[:DESCRIPTION_MAX],
                "quantity": format_amount(line.quantity_milli, 3),
                "amount": money(price_minor, currency, exponent),
                "vat_code": line.vat_code,
                "payment_mode": line.payment_mode,
                "payment_subject": line.payment_subject,
            }
        )
    return {"customer": {"email": customer_email}, "items": items}


def payment_body(request: PaymentRequest, *, send_receipt: bool) -> dict[str, Any]:
    assert request.amount_minor > 0, "a payment of nothing"
    metadata = {**request.metadata, "order_id": str(request.order_id)}
    body: dict[str, Any] = {
        "amount": money(request.amount_minor, request.currency, request.exponent),
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": request.return_url},
        "description": request.description[:DESCRIPTION_MAX],
        "metadata": metadata,
    }
    if send_receipt and request.receipt:
        lines_total = sum(line.amount_minor for line in request.receipt)
        if lines_total != request.amount_minor:
            raise ValueError(
                f"the receipt's lines add up to {lines_total}, the payment is "
                f"{request.amount_minor}"
            )
        body["receipt"] = receipt_body(
            request.customer_email, request.receipt, request.currency, request.exponent
        )
        # Kept with the payment so a refund can make its receipt from the payment alone.
        metadata["customer_email"] = request.customer_email
    return body


# --------------------------------------------------------------------------- answers


def _unreadable(detail: str) -> ProviderError:
    return ProviderError(
        f"YooKassa answered with what Kopilka cannot read: {detail}", retryable=False
    )


def payment_of(data: Mapping[str, Any]) -> ProviderPayment:
    """YooKassa's payment object as Kopilka's ``ProviderPayment``."""
    payment_id = data.get("id")
    status = data.get("status")
    if not isinstance(payment_id, str) or not _ID.match(payment_id):
        raise _unreadable(f"a payment without an id: {payment_id!r}")
    if status not in _STATES:
        raise _unreadable(f"payment {payment_id} in status {status!r}")
    amount_minor, currency = amount_of(data.get("amount"), f"payment {payment_id}'s amount")
    state = _STATES[str(status)]
    confirmation = data.get("confirmation")
    redirect_url = None
    if state is PaymentState.PENDING and isinstance(confirmation, Mapping):
        url = confirmation.get("confirmation_url")
        redirect_url = url if isinstance(url, str) and url else None
    metadata = data.get("metadata")
    order_id = metadata.get("order_id") if isinstance(metadata, Mapping) else None
    return ProviderPayment(
        provider_payment_id=payment_id,
        state=state,
        amount_minor=amount_minor,
        currency=currency,
        redirect_url=redirect_url,
        order_id=int(order_id)
        if isinstance(order_id, str) and order_id.isascii() and order_id.isdigit()
        else None,
        raw=dict(data),
    )


def refund_of(data: Mapping[str, Any]) -> ProviderRefund:
    refund_id = data.get("id")
    status = data.get("status")
    if not isinstance(refund_id, str) or not _ID.match(refund_id):
        raise _unreadable(f"a refund without an id: {refund_id!r}")
    if status not in _REFUND_STATES:
        raise _unreadable(f"refund {refund_id} in status {status!r}")
    amount_minor, _ = amount_of(data.get("amount"), f"refund {refund_id}'s amount")
    return ProviderRefund(
        provider_refund_id=refund_id,
        state=_REFUND_STATES[str(status)],
        amount_minor=amount_minor,
        raw=dict(data),
    )


def _error_of(response: httpx.Response) -> ProviderError:
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, Mapping) and data.get("type") == "error":
        parameter = f" ({data['parameter']})" if data.get("parameter") else ""
        said = f"{data.get('code') or 'error'}{parameter}: {data.get('description') or ''}"
    else:
        said = "no error description"
    # 500 means "the outcome is unknown" in YooKassa's words; 429 asks to slow down; any
    # other 2xx than 200 (a 202 "still processing") asks the same question again later.
    retryable = status >= 500 or status == 429 or 200 <= status < 300
    return ProviderError(
        f"YooKassa answered HTTP {status} {said}".strip(), retryable=retryable, status=status
    )


# --------------------------------------------------------------------------- the adapter


class YooKassaProvider:
    """One shop of YooKassa (see the module's docstring)."""

    name = NAME

    def __init__(self, config: YooKassaConfig) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"YooKassaProvider(shop {self.config.shop_id}, {self.config.api_base!r})"

    # ----------------------------------------------------------------------- the calls

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        body = payment_body(request, send_receipt=self.config.send_receipts)
        data = self._call("POST", "/payments", body=body, key=request.idempotency_key)
        payment = payment_of(data)
        if payment.amount_minor != request.amount_minor or payment.currency != request.currency:
            raise ProviderError(
                f"YooKassa answered with payment {payment.provider_payment_id} of another "
                f"amount than asked: the idempotency key {request.idempotency_key!r} was used "
                "for another payment",
                retryable=False,
            )
        log.info(
            "yookassa payment created",
            extra={
                "provider_payment_id": payment.provider_payment_id,
                "order_id": request.order_id,
                "state": payment.state.value,
            },
        )
        return payment

    def get_payment(self, provider_payment_id: str) -> ProviderPayment:
        if not _ID.match(provider_payment_id):
            raise ProviderError(
                f"{provider_payment_id!r} is not a YooKassa payment id", retryable=False
            )
        return payment_of(self._call("GET", f"/payments/{provider_payment_id}"))

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
        if not _ID.match(payment.provider_payment_id):
            raise ProviderError(
                f"{payment.provider_payment_id!r} is not a YooKassa payment id", retryable=False
            )
        exponent = currency_exponent(payment.currency)
        body: dict[str, Any] = {
            "payment_id": payment.provider_payment_id,
            "amount": money(amount_minor, payment.currency, exponent),
        }
        if self.config.send_receipts:
            refund_receipt = self._refund_receipt(payment, amount_minor, customer_email, receipt)
            if refund_receipt is not None:
                body["receipt"] = refund_receipt
        refund = refund_of(self._call("POST", "/refunds", body=body, key=idempotency_key))
        log.info(
            "yookassa refund created",
            extra={
                "provider_payment_id": payment.provider_payment_id,
                "provider_refund_id": refund.provider_refund_id,
                "state": refund.state.value,
            },
        )
        return refund

    def _refund_receipt(
        self,
        payment: ProviderPayment,
        amount_minor: int,
        customer_email: str,
        lines: tuple[ReceiptLine, ...],
    ) -> dict[str, Any] | None:
        """The receipt of a refund: the lines given, or one line made from the payment
        when the payment had a receipt (YooKassa refuses the refund without one then)."""
        exponent = currency_exponent(payment.currency)
        if lines:
            total = sum(line.amount_minor for line in lines)
            if total != amount_minor:
                raise ValueError(
                    f"the receipt's lines add up to {total}, the refund is {amount_minor}"
                )
            return receipt_body(customer_email, lines, payment.currency, exponent)
        data = (
            payment.raw
            if payment.raw.get("id")
            else self._call("GET", f"/payments/{payment.provider_payment_id}")
        )
        if not data.get("receipt_registration"):
            return None  # the payment went without a receipt: so does its refund
        metadata = data.get("metadata")
        email = customer_email or (
            str(metadata.get("customer_email") or "") if isinstance(metadata, Mapping) else ""
        )
        description = str(data.get("description") or "Возврат")
        line = ReceiptLine(description, amount_minor, vat_code=self.config.vat_code)
        return receipt_body(email, (line,), payment.currency, exponent)

    def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        event, thing = _notification_of(body)
        if event.startswith("payment."):
            payment_id = thing["id"]
        elif event.startswith("refund."):
            refund = self._ask_about(f"/refunds/{thing['id']}", "refund", thing["id"])
            payment_id = refund.get("payment_id")
            if not isinstance(payment_id, str) or not _ID.match(payment_id):
                raise ForgedNotification(f"YooKassa's refund {thing['id']} names no payment")
        else:
            raise IgnoredNotification(f"YooKassa's event {event!r} is not about a payment")
        payment = payment_of(self._ask_about(f"/payments/{payment_id}", "payment", payment_id))
        claimed = thing.get("status") if event.startswith("payment.") else None
        if claimed is not None and payment.raw.get("status") != claimed:
            log.warning(
                "yookassa notification not confirmed",
                extra={
                    "event": event,
                    "provider_payment_id": payment_id,
                    "claimed": str(claimed)[:32],
                    "state": payment.state.value,
                },
            )
        return Notification(event=event, payment=payment)

    def _ask_about(self, path: str, kind: str, object_id: str) -> dict[str, Any]:
        try:
            return self._call("GET", path)
        except ProviderError as error:
            if error.status == 404:
                raise ForgedNotification(f"YooKassa knows no {kind} {object_id}") from error
            raise

    # ----------------------------------------------------------------------- HTTP

    def _call(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None, key: str = ""
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body, ensure_ascii=False).encode()
        if method == "POST":
            headers["Idempotence-Key"] = idempotence_key(key)
        seconds = self.config.timeout_ms / 1000
        try:
            with httpx.Client(
                auth=httpx.BasicAuth(self.config.shop_id, self.config.secret_key),
                timeout=httpx.Timeout(seconds),
            ) as client:
                response = client.request(
                    method, self.config.api_base + path, content=content, headers=headers
                )
        except httpx.TimeoutException as error:
            raise ProviderError(
                f"YooKassa did not answer {method} {path} within {self.config.timeout_ms} ms",
                retryable=True,
            ) from error
        except httpx.HTTPError as error:
            raise ProviderError(
                f"YooKassa could not be reached ({type(error).__name__})", retryable=True
            ) from error
        if response.status_code != 200:
            failure = _error_of(response)
            log.warning(
                "yookassa refused",
                extra={"method": method, "path": path, "status": response.status_code},
            )
            raise failure
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            # The request may have been carried out: the same key again tells.
            raise ProviderError("YooKassa answered HTTP 200 without a JSON object", retryable=True)
        return data


def _notification_of(body: bytes) -> tuple[str, dict[str, Any]]:
    """The event and its object's fields, or ``ForgedNotification``."""
    try:
        data = json.loads(body)
    except ValueError as error:
        raise ForgedNotification("not a YooKassa notification: not JSON") from error
    if not isinstance(data, dict) or data.get("type") != "notification":
        raise ForgedNotification("not a YooKassa notification: no type 'notification'")
    event = data.get("event")
    thing = data.get("object")
    if not isinstance(event, str) or not event or len(event) > 64:
        raise ForgedNotification("not a YooKassa notification: no event")
    if not isinstance(thing, dict) or not isinstance(thing.get("id"), str):
        raise ForgedNotification("not a YooKassa notification: no object with an id")
    if not _ID.match(thing["id"]):
        raise ForgedNotification(f"{thing['id'][:80]!r} is not a YooKassa id")
    return event, thing


def provider(config: Mapping[str, Any]) -> YooKassaProvider:
    return YooKassaProvider(parse_config(config))
