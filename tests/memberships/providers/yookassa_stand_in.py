"""A stand-in for YooKassa API v3 on 127.0.0.1, for tests (this folder's and others').

It answers as YooKassa's documentation says (``kopilka.memberships.providers.yookassa``
has the summary):

* HTTP Basic authentication with the shop id and secret key (401
  ``invalid_credentials`` otherwise);
* ``POST /v3/payments`` requires an ``Idempotence-Key`` (at most 64 characters); the
  same key with the same body answers the first payment again, with another body 400;
  the body is checked (amount, ``confirmation.redirect``, description up to 128,
  metadata, the 54-FZ receipt whose items must add up to the amount: 400
  ``invalid_request`` naming the ``parameter`` otherwise);
* payments stay ``pending`` until the test pays them (``pay``) or cancels them
  (``cancel``); ``GET /v3/payments/{id}`` answers the state, 404 for an id it does not
  know;
* ``POST /v3/refunds`` (``Idempotence-Key``): only of a succeeded payment, never above
  what is left (400 ``invalid_request``, ``parameter: amount``), with a receipt whose
  items add up to the refund when the payment had one; ``GET /v3/refunds/{id}``;
* notifications: ``notification(id)`` is the body YooKassa would POST about a payment,
  ``notify(url, id, times=3)`` POSTs it (three times, as YooKassa does when unsure),
  ``pay(id, notify=url)`` sends it while paying, so it arrives before the client's
  return; ``forged_notification()`` is one about a payment YooKassa never had.
* the confirmation page (``confirmation.confirmation_url``, ``GET/POST
  /checkout/payments/v2/contract?orderId=<id>``) for a browser: the amount, the
  description, a card number, "Pay" and "Cancel" (``stand_in_server``). 4242 4242 4242
  4242 pays (as ``pay``), 4000 0000 0000 0002 is declined (the payment ``canceled``,
  ``payment_network``/``general_decline``), "Cancel" cancels it
  (``yoo_money``/``expired_on_confirmation``, what YooKassa says of a client who never
  confirmed); each then sends the ``payment.succeeded``/``payment.canceled``
  notification as ``notify_on_pay(url, times=..., when=...)`` says and redirects the
  browser (303) to the payment's ``return_url``.
* misbehaving: ``fail(500)``, ``fail(429)``, ``fail(500, after_processing=True)``,
  ``slow(seconds)``, ``drop()`` (``stand_in_server``).

Usage::

    with yookassa_stand_in() as yookassa:
        provider = provider_for("yookassa", yookassa.config(), engine=..., public_base=...)
        payment = provider.create_payment(request)
        yookassa.pay(payment.provider_payment_id)

or the ``yookassa`` fixture of ``tests/memberships/providers/conftest.py``.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from tests.memberships.providers.stand_in_server import (
    DECLINED_CARD,
    PAYING_CARD,
    Reply,
    Seen,
    StandInServer,
    card_digits,
    card_page,
    closed_page,
    form_of,
    html_reply,
)

SHOP_ID = "100500"
CONFIRMATION_PATH = "/checkout/payments/v2/contract"
HEADING = "ЮKassa (stand-in)"
SECRET_KEY = "test_kopilka-yookassa-secret-key"
VAT_CODES = range(1, 13)
PAYMENT_MODES = {
    "full_prepayment",
    "partial_prepayment",
    "advance",
    "full_payment",
    "partial_payment",
    "credit",
    "credit_payment",
}
PAYMENT_SUBJECTS = {
    "commodity",
    "excise",
    "job",
    "service",
    "payment",
    "agent_commission",
    "another",
}
_ERRORS = {
    400: "invalid_request",
    401: "invalid_credentials",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
    500: "internal_server_error",
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _error(status: int, description: str, parameter: str | None = None) -> Reply:
    body: dict[str, Any] = {
        "type": "error",
        "id": str(uuid.uuid4()),
        "code": _ERRORS.get(status, "error"),
        "description": description,
    }
    if parameter:
        body["parameter"] = parameter
    return status, _json(body), {}


class _Bad(Exception):
    def __init__(self, parameter: str, description: str) -> None:
        super().__init__(description)
        self.parameter = parameter
        self.description = description


def _value(amount: Any, parameter: str) -> tuple[Decimal, str]:
    if not isinstance(amount, dict):
        raise _Bad(parameter, "amount is required")
    try:
        value = Decimal(str(amount.get("value")))
    except InvalidOperation as error:
        raise _Bad(f"{parameter}.value", "not a number") from error
    currency = amount.get("currency")
    if not value.is_finite() or value <= 0 or value.as_tuple().exponent < -2:
        raise _Bad(f"{parameter}.value", "a positive amount with at most 2 decimals")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
        raise _Bad(f"{parameter}.currency", "an ISO 4217 code")
    return value, currency


def _check_receipt(receipt: Any, total: Decimal, parameter: str = "receipt") -> None:
    if not isinstance(receipt, dict):
        raise _Bad(parameter, "receipt is an object")
    customer = receipt.get("customer")
    if not isinstance(customer, dict) or not (customer.get("email") or customer.get("phone")):
        raise _Bad(f"{parameter}.customer", "an e-mail or a phone is required")
    items = receipt.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= 100:
        raise _Bad(f"{parameter}.items", "1 to 100 items")
    added = Decimal(0)
    for index, item in enumerate(items):
        where = f"{parameter}.items[{index}]"
        if not isinstance(item, dict):
            raise _Bad(where, "an item is an object")
        description = item.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 128:
            raise _Bad(f"{where}.description", "1 to 128 characters")
        try:
            quantity = Decimal(str(item.get("quantity")))
        except InvalidOperation as error:
            raise _Bad(f"{where}.quantity", "not a number") from error
        if not quantity.is_finite() or quantity <= 0:
            raise _Bad(f"{where}.quantity", "a positive number")
        price, _ = _value(item.get("amount"), f"{where}.amount")
        if item.get("vat_code") not in VAT_CODES:
            raise _Bad(f"{where}.vat_code", "1 to 12")
        if item.get("payment_mode") not in PAYMENT_MODES:
            raise _Bad(f"{where}.payment_mode", "not a payment_mode")
        if item.get("payment_subject") not in PAYMENT_SUBJECTS:
            raise _Bad(f"{where}.payment_subject", "not a payment_subject")
        added += price * quantity
    if added != total:
        raise _Bad(parameter, f"the items add up to {added}, the amount is {total}")


class YooKassaStandIn(StandInServer):
    def __init__(self, shop_id: str = SHOP_ID, secret_key: str = SECRET_KEY) -> None:
        super().__init__()
        self.shop_id = shop_id
        self.secret_key = secret_key
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.receipts: dict[str, dict[str, Any]] = {}  # by payment or refund id
        self._keys: dict[tuple[str, str], tuple[bytes, bytes]] = {}  # (path, key) -> body, reply

    # ----------------------------------------------------------------------- for tests

    @property
    def api_base(self) -> str:
        return self.base_url + "/v3"

    def config(self, **overrides: str) -> dict[str, str]:
        """A tenant's ``provider_config`` pointing at this stand-in (short timeout)."""
        config = {
            "shop_id": self.shop_id,
            "secret_key": self.secret_key,
            "api_base": self.api_base,
            "timeout_ms": "2000",
        }
        config.update(overrides)
        return config

    def pay(self, payment_id: str, *, notify: str | None = None) -> dict[str, Any]:
        """The client paid with a card: the payment succeeds (its receipt is registered);
        ``notify``: the notification is POSTed there before this returns."""
        with self.lock:
            payment = self.payments[payment_id]
            assert payment["status"] == "pending", f"{payment_id} is {payment['status']}"
            payment.update(
                status="succeeded",
                paid=True,
                refundable=True,
                captured_at=_now(),
                refunded_amount={"value": "0.00", "currency": payment["amount"]["currency"]},
                payment_method={
                    "type": "bank_card",
                    "id": payment_id,
                    "saved": False,
                    "title": "Bank card *4444",
                    "card": {
                        "first6": "555555",
                        "last4": "4444",
                        "expiry_month": "12",
                        "expiry_year": "2030",
                        "card_type": "MasterCard",
                    },
                },
            )
            if "receipt_registration" in payment:
                payment["receipt_registration"] = "succeeded"
        if notify:
            self.notify(notify, payment_id)
        return self.payment(payment_id)

    def cancel(
        self,
        payment_id: str,
        *,
        reason: str = "expired_on_confirmation",
        party: str = "yoo_money",
        notify: str | None = None,
    ) -> dict[str, Any]:
        """The payment ends unpaid (the client left, the card was declined: ``reason``)."""
        with self.lock:
            payment = self.payments[payment_id]
            assert payment["status"] == "pending", f"{payment_id} is {payment['status']}"
            payment.update(
                status="canceled", cancellation_details={"party": party, "reason": reason}
            )
        if notify:
            self.notify(notify, payment_id)
        return self.payment(payment_id)

    def payment(self, payment_id: str) -> dict[str, Any]:
        """A copy of the payment as YooKassa keeps it."""
        with self.lock:
            return copy.deepcopy(self.payments[payment_id])

    def notification(self, payment_id: str, event: str | None = None) -> bytes:
        """The body YooKassa POSTs about a payment (``event`` by default from its state;
        another one makes a lying notification)."""
        payment = self.payment(payment_id)
        if event is None:
            assert payment["status"] != "pending", "nothing to notify of a pending payment"
            event = f"payment.{payment['status']}"
        if event == "payment.succeeded":
            payment.update(status="succeeded", paid=True)  # what a liar would claim
        return _json({"type": "notification", "event": event, "object": payment})

    def refund_notification(self, refund_id: str) -> bytes:
        with self.lock:
            refund = dict(self.refunds[refund_id])
        return _json({"type": "notification", "event": "refund.succeeded", "object": refund})

    def forged_notification(self, event: str = "payment.succeeded") -> bytes:
        """A notification about a payment YooKassa never had."""
        forged = {
            "id": str(uuid.uuid4()),
            "status": "succeeded",
            "paid": True,
            "amount": {"value": "4120.00", "currency": "RUB"},
            "metadata": {"order_id": "1"},
        }
        return _json({"type": "notification", "event": event, "object": forged})

    def notify(
        self, url: str, payment_id: str, *, event: str | None = None, times: int = 1
    ) -> list[int]:
        """POST the payment's notification to ``url`` ``times`` times; the statuses."""
        body = self.notification(payment_id, event)
        return [self.send(url, body) for _ in range(times)]

    def send(self, url: str, body: bytes) -> int:
        try:
            event = str(json.loads(body).get("event"))
        except (ValueError, AttributeError):
            event = "?"
        return self.deliver(url, event, body, {"Content-Type": "application/json"})

    def created(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.payment(payment_id) for payment_id in self.payments]

    # ----------------------------------------------------------------------- the API

    def error_reply(self, status: int) -> Reply:
        return _error(status, f"stand-in answers {status} on request")

    def page(self, seen: Seen) -> Reply | None:
        if seen.path != CONFIRMATION_PATH:
            return None
        payment_id = (parse_qs(seen.query).get("orderId") or [""])[0]
        action = f"{CONFIRMATION_PATH}?{seen.query}"
        form = form_of(seen) if seen.method == "POST" else {}
        with self.lock:
            payment = self.payments.get(payment_id)
            if payment is None:
                return html_reply(
                    404,
                    closed_page(
                        provider="yookassa",
                        heading=HEADING,
                        message="No such payment.",
                        back_url=None,
                    ),
                )
            return_url = payment["confirmation"]["return_url"]
            if payment["status"] != "pending":
                return html_reply(
                    200 if seen.method == "GET" else 409,
                    closed_page(
                        provider="yookassa",
                        heading=HEADING,
                        message=f"This payment is {payment['status']}.",
                        back_url=return_url,
                    ),
                )
            amount = f"{payment['amount']['value']} {payment['amount']['currency']}"
            card = card_digits(form)
            error: str | None = None
            if seen.method == "GET":
                done = None
            elif form.get("action") == "cancel":
                done = self.cancel(payment_id, reason="expired_on_confirmation", party="yoo_money")
            elif card == PAYING_CARD:
                done = self.pay(payment_id)
            elif card == DECLINED_CARD:
                done = self.cancel(payment_id, reason="general_decline", party="payment_network")
            else:
                done, error = None, "Not a test card: use 4242 4242 4242 4242."
            if done is None:
                return html_reply(
                    200,
                    card_page(
                        provider="yookassa",
                        heading=HEADING,
                        amount=amount,
                        description=payment["description"],
                        action=action,
                        card=form.get("card_number", ""),
                        error=error,
                        error_code="not_a_test_card" if error else None,
                    ),
                )
        # YooKassa's notification (as the test set it), then the browser goes back.
        self.page_notifies(
            f"payment.{done['status']}",
            self.notification(payment_id),
            {"Content-Type": "application/json"},
        )
        return self.page_redirect(return_url)

    def answer(self, seen: Seen) -> Reply:
        if not self._authorised(seen.headers.get("authorization", "")):
            return _error(401, "Login or password is incorrect")
        path = seen.path.removeprefix("/v3")
        parts = path.strip("/").split("/")
        if seen.method == "GET" and len(parts) == 2 and parts[0] in ("payments", "refunds"):
            with self.lock:
                found = (self.payments if parts[0] == "payments" else self.refunds).get(parts[1])
                if found is None:
                    kind = parts[0].rstrip("s")
                    return _error(404, f"Incorrect {kind}_id. {kind.title()} doesn't exist")
                return 200, _json(found), {}
        if seen.method == "POST" and path in ("/payments", "/refunds"):
            return self._idempotent(seen, path)
        return _error(404, f"no such method: {seen.method} {seen.path}")

    def _authorised(self, value: str) -> bool:
        expected = base64.b64encode(f"{self.shop_id}:{self.secret_key}".encode()).decode()
        return value == f"Basic {expected}"

    def _idempotent(self, seen: Seen, path: str) -> Reply:
        key = seen.headers.get("idempotence-key", "")
        if not key or len(key) > 64:
            return _error(400, "Idempotence-Key: 1 to 64 characters required", "Idempotence-Key")
        if "application/json" not in seen.headers.get("content-type", ""):
            return 415, b"", {}
        try:
            body = json.loads(seen.body)
        except ValueError:
            return _error(400, "the body is not JSON")
        canonical = _json(body)
        with self.lock:
            known = self._keys.get((path, key))
            if known is not None:
                if known[0] != canonical:
                    return _error(
                        400,
                        "Idempotence key duplicated: it was used with other parameters",
                        "Idempotence-Key",
                    )
                return 200, known[1], {}
            try:
                made = self._payment(body) if path == "/payments" else self._refund(body)
            except _Bad as bad:
                return _error(400, bad.description, bad.parameter)
            reply = _json(made)
            self._keys[(path, key)] = (canonical, reply)
            return 200, reply, {}

    def _payment(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Bad("body", "an object")
        total, currency = _value(body.get("amount"), "amount")
        confirmation = body.get("confirmation")
        if not isinstance(confirmation, dict) or confirmation.get("type") != "redirect":
            raise _Bad("confirmation.type", "redirect expected")
        if not str(confirmation.get("return_url") or "").startswith(("http://", "https://")):
            raise _Bad("confirmation.return_url", "an http(s) address")
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 128:
            raise _Bad("description", "at most 128 characters")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > 16:
            raise _Bad("metadata", "at most 16 keys")
        for name, value in metadata.items():
            if len(name) > 32 or not isinstance(value, str) or len(value) > 512:
                raise _Bad(f"metadata.{name}", "keys to 32 characters, texts to 512")
        if "receipt" in body:
            _check_receipt(body["receipt"], total)
        payment_id = str(uuid.uuid4())
        payment: dict[str, Any] = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": body["amount"],
            "confirmation": {
                "type": "redirect",
                "return_url": confirmation["return_url"],
                "confirmation_url": f"{self.base_url}{CONFIRMATION_PATH}?orderId={payment_id}",
            },
            "created_at": _now(),
            "description": description,
            "metadata": metadata,
            "recipient": {"account_id": self.shop_id, "gateway_id": "100700"},
            "refundable": False,
            "test": True,
        }
        if "receipt" in body:
            payment["receipt_registration"] = "pending"
            self.receipts[payment_id] = body["receipt"]
        assert currency == payment["amount"]["currency"]
        self.payments[payment_id] = payment
        return payment

    def _refund(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Bad("body", "an object")
        payment = self.payments.get(str(body.get("payment_id")))
        if payment is None:
            raise _Bad("payment_id", "Payment doesn't exist or access denied")
        if payment["status"] != "succeeded":
            raise _Bad("payment_id", f"Payment is {payment['status']}: it cannot be refunded")
        amount, currency = _value(body.get("amount"), "amount")
        if currency != payment["amount"]["currency"]:
            raise _Bad("amount.currency", "the payment's currency")
        paid = Decimal(payment["amount"]["value"])
        refunded = Decimal(payment["refunded_amount"]["value"])
        if amount > paid - refunded:
            raise _Bad("amount", f"Refund amount exceeds what is left: {paid - refunded}")
        if "receipt_registration" in payment and "receipt" not in body:
            raise _Bad("receipt", "The payment had a receipt: the refund needs one")
        if "receipt" in body:
            _check_receipt(body["receipt"], amount)
        refund_id = str(uuid.uuid4())
        refund: dict[str, Any] = {
            "id": refund_id,
            "payment_id": payment["id"],
            "status": "succeeded",
            "created_at": _now(),
            "amount": body["amount"],
        }
        if "receipt" in body:
            refund["receipt_registration"] = "succeeded"
            self.receipts[refund_id] = body["receipt"]
        left = paid - refunded - amount
        payment["refunded_amount"] = {"value": f"{refunded + amount:.2f}", "currency": currency}
        payment["refundable"] = left > 0
        self.refunds[refund_id] = refund
        return refund


@contextmanager
def yookassa_stand_in(**options: str) -> Iterator[YooKassaStandIn]:
    """A ``YooKassaStandIn`` started on a free port of 127.0.0.1, stopped afterwards."""
    stand_in = YooKassaStandIn(**options).start()
    try:
        yield stand_in
    finally:
        stand_in.close()
