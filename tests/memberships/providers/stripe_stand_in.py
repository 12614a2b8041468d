"""A stand-in for Stripe's API (Checkout Sessions, refunds, webhooks) on 127.0.0.1.

It answers as Stripe's documentation says (``kopilka.memberships.providers.stripe`` has
the summary), for the official SDK pointed at it with ``base_addresses={"api": ...}``:

* ``Authorization: Bearer <secret key>`` (401 ``invalid_request_error`` otherwise);
  form-encoded bodies with Stripe's nested keys (``line_items[0][price_data][currency]``);
  errors as ``{"error": {"type", "code", "message", "param"}}``;
* an ``Idempotency-Key`` replays the first answer (header ``Idempotent-Replayed: true``)
  for the same parameters and is 400 ``idempotency_error`` for others;
* ``POST /v1/checkout/sessions`` (mode ``payment``, ``line_items`` with ``price_data``,
  ``success_url`` required), ``GET /v1/checkout/sessions/{id}``,
  ``POST /v1/checkout/sessions/{id}/expire``: sessions are ``open`` and ``unpaid`` until
  the test pays them (``pay``: a PaymentIntent appears, ``complete`` and ``paid``; with
  ``delayed=True`` ``complete`` but ``unpaid`` until ``settle``) or expires them
  (``expire``);
* ``POST /v1/refunds`` (``payment_intent``, ``amount``): never above what is left (400,
  ``param: amount``); ``GET /v1/refunds/{id}``;
* webhooks: ``event(type, session_id)`` is an event's (body, headers) signed with the
  endpoint's secret (``Stripe-Signature: t=…,v1=…``); ``secret=`` signs with another
  (a forgery), ``timestamp=`` dates it (a stale one), ``signed=False`` leaves the header
  out. ``send_event(url, type, session_id, times=3)`` POSTs it; ``pay(id, notify=url)``
  sends ``checkout.session.completed`` while paying, before the client's return.
* the Checkout page (the session's ``url``, ``GET/POST /c/pay/<id>``) for a browser:
  the amount, the products, a card number, "Pay" and "Cancel" (``stand_in_server``).
  4242 4242 4242 4242 pays (as ``pay``), sends ``checkout.session.completed`` as
  ``notify_on_pay(url, times=..., when=...)`` says, and redirects the browser (303) to
  the ``success_url`` (``{CHECKOUT_SESSION_ID}`` replaced by the session's id);
  4000 0000 0000 0002 is declined: the page says so (``card_declined``) and the session
  stays open; "Cancel" (shown when there is a ``cancel_url``) redirects there and leaves
  the session open, with no event, as Stripe does.
* misbehaving: ``fail(500)``, ``fail(429)``, ``fail(500, after_processing=True)``,
  ``slow(seconds)``, ``drop()`` (``stand_in_server``).

Usage::

    with stripe_stand_in() as stripe_api:
        provider = provider_for("stripe", stripe_api.config(), engine=..., public_base=...)

or the ``stripe_api`` fixture of ``tests/memberships/providers/conftest.py``.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

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

SECRET_KEY = "sk_test_kopilka0stand0in0secret0key"
WEBHOOK_SECRET = "whsec_kopilka0stand0in0webhook0secret"
API_VERSION = "2026-10-28.endive"
_KEY = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")
PAGE_PREFIX = "/c/pay/"
HEADING = "Stripe Checkout (stand-in)"
# Stripe's zero-decimal currencies: their amounts are whole units.
ZERO_DECIMAL = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
}  # fmt: skip


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> Reply:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return status, _json({"error": error}), {"Request-Id": "req_" + secrets.token_hex(7)}


def parse_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding as nested dicts and lists (``a[0][b]=1`` is
    ``{"a": [{"b": "1"}]}``)."""
    result: dict[str, Any] = {}
    for name, value in parse_qsl(body.decode(), keep_blank_values=True):
        keys = [m[1] or m[2] for m in _KEY.finditer(name)]
        target: Any = result
        for here, after in itertools.pairwise(keys):
            empty: Any = [] if after.isdigit() else {}
            if isinstance(target, list):
                index = int(here)
                while len(target) <= index:
                    target.append(copy.copy(empty))
                target = target[index]
            else:
                target = target.setdefault(here, empty)
        if isinstance(target, list):
            index = int(keys[-1])
            while len(target) <= index:
                target.append(None)
            target[index] = value
        else:
            target[keys[-1]] = value
    return result


@dataclass(frozen=True)
class Away:
    """Where the Checkout page sends the browser (303), and whether it was paid."""

    url: str
    paid: bool


class _Bad(Exception):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def _int(value: Any, param: str, low: int = 1) -> int:
    if not isinstance(value, str) or not value.isdigit() or int(value) < low:
        raise _Bad(param, f"Invalid integer: {value}")
    return int(value)


def _metadata(value: Any, param: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict) or len(value) > 50:
        raise _Bad(param, "Invalid metadata: at most 50 keys")
    for key, text in value.items():
        if len(key) > 40 or not isinstance(text, str) or len(text) > 500:
            raise _Bad(f"{param}[{key}]", "keys up to 40 characters, values up to 500")
    return dict(value)


class StripeStandIn(StandInServer):
    def __init__(self, secret_key: str = SECRET_KEY, webhook_secret: str = WEBHOOK_SECRET) -> None:
        super().__init__()
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.sessions: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self._intent_metadata: dict[str, dict[str, str]] = {}  # by session
        self._products: dict[str, str] = {}  # by session: what its page says is bought
        self._keys: dict[str, tuple[dict[str, Any], str, bytes]] = {}  # key -> params, path, reply

    # ----------------------------------------------------------------------- for tests

    @property
    def api_base(self) -> str:
        return self.base_url

    def config(self, **overrides: str) -> dict[str, str]:
        """A tenant's ``provider_config`` pointing at this stand-in (short timeout)."""
        config = {
            "secret_key": self.secret_key,
            "webhook_secret": self.webhook_secret,
            "api_base": self.api_base,
            "timeout_ms": "2000",
        }
        config.update(overrides)
        return config

    def session(self, session_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.sessions[session_id])

    def pay(
        self, session_id: str, *, delayed: bool = False, notify: str | None = None
    ) -> dict[str, Any]:
        """The client paid on Checkout: a PaymentIntent takes the money (``delayed``: a
        bank debit, ``complete`` but ``unpaid`` until ``settle``); ``notify``: the
        ``checkout.session.completed`` event is POSTed there before this returns."""
        with self.lock:
            session = self.sessions[session_id]
            assert session["status"] == "open", f"{session_id} is {session['status']}"
            intent_id = "pi_" + secrets.token_hex(12)
            self.payment_intents[intent_id] = {
                "id": intent_id,
                "object": "payment_intent",
                "amount": session["amount_total"],
                "amount_received": 0 if delayed else session["amount_total"],
                "currency": session["currency"],
                "metadata": self._intent_metadata.get(session_id, {}),
                "status": "processing" if delayed else "succeeded",
                "latest_charge": "ch_" + secrets.token_hex(12),
                "refunded": 0,
            }
            session.update(
                status="complete",
                payment_status="unpaid" if delayed else "paid",
                payment_intent=intent_id,
                url=None,
            )
        if notify:
            self.send_event(notify, "checkout.session.completed", session_id)
        return self.session(session_id)

    def settle(
        self, session_id: str, *, succeeded: bool = True, notify: str | None = None
    ) -> dict[str, Any]:
        """A delayed payment ends: ``async_payment_succeeded`` or ``_failed``."""
        with self.lock:
            session = self.sessions[session_id]
            intent = self.payment_intents[session["payment_intent"]]
            assert session["payment_status"] == "unpaid"
            if succeeded:
                session["payment_status"] = "paid"
                intent.update(status="succeeded", amount_received=intent["amount"])
            else:
                intent["status"] = "requires_payment_method"
        if notify:
            kind = "succeeded" if succeeded else "failed"
            self.send_event(notify, f"checkout.session.async_payment_{kind}", session_id)
        return self.session(session_id)

    def expire(self, session_id: str, *, notify: str | None = None) -> dict[str, Any]:
        with self.lock:
            session = self.sessions[session_id]
            assert session["status"] == "open", f"{session_id} is {session['status']}"
            session.update(status="expired", url=None)
        if notify:
            self.send_event(notify, "checkout.session.expired", session_id)
        return self.session(session_id)

    def event(
        self,
        kind: str,
        session_id: str,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        signed: bool = True,
        session: dict[str, Any] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook event's (body, headers): signed with the endpoint's secret unless
        told otherwise; ``session`` replaces the session it carries."""
        stamp = int(time.time()) if timestamp is None else timestamp
        body = _json(
            {
                "id": "evt_" + secrets.token_hex(12),
                "object": "event",
                "api_version": API_VERSION,
                "created": stamp,
                "type": kind,
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "data": {"object": session if session is not None else self.session(session_id)},
            }
        )
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if signed:
            headers["Stripe-Signature"] = sign(body, secret or self.webhook_secret, stamp)
        return body, headers

    def send_event(
        self, url: str, kind: str, session_id: str, *, times: int = 1, **options: Any
    ) -> list[int]:
        body, headers = self.event(kind, session_id, **options)
        return [self.deliver(url, kind, body, headers) for _ in range(times)]

    # ----------------------------------------------------------------------- the API

    def error_reply(self, status: int) -> Reply:
        if status == 429:
            return _error(429, "Too many requests hit the API too quickly.", code="rate_limit")
        if status == 401:
            return _error(401, "Invalid API Key provided: sk_test_****")
        return _error(status, "An error occurred with our connection to Stripe.", kind="api_error")

    def page(self, seen: Seen) -> Reply | None:
        if not seen.path.startswith(PAGE_PREFIX):
            return None
        session_id = seen.path.removeprefix(PAGE_PREFIX)
        form = form_of(seen) if seen.method == "POST" else {}
        with self.lock:
            outcome = self._checkout_page(seen, session_id, form)
        if isinstance(outcome, Away):
            if outcome.paid:  # Stripe's event (as the test set it), then the success_url
                body, headers = self.event("checkout.session.completed", session_id)
                self.page_notifies("checkout.session.completed", body, headers)
            return self.page_redirect(outcome.url)
        return outcome  # the page itself

    def _checkout_page(self, seen: Seen, session_id: str, form: dict[str, str]) -> Reply | Away:
        """The Checkout page to show, or where the browser goes now (the cancel_url, or
        the success_url of a session just paid)."""
        session = self.sessions.get(session_id)
        if session is None:
            return html_reply(
                404,
                closed_page(
                    provider="stripe",
                    heading=HEADING,
                    message="Something went wrong: this Checkout Session does not exist.",
                    back_url=None,
                ),
            )
        if session["status"] != "open":
            said = {"complete": "has been paid", "expired": "has expired"}
            return html_reply(
                200 if seen.method == "GET" else 409,
                closed_page(
                    provider="stripe",
                    heading=HEADING,
                    message=f"This Checkout Session {said.get(session['status'], 'is over')}.",
                    back_url=None,
                ),
            )
        cancel_url = session["cancel_url"]
        if seen.method == "POST" and form.get("action") == "cancel" and cancel_url:
            return Away(str(cancel_url), paid=False)  # the session stays open: no event
        card = card_digits(form)
        error: tuple[str, str] | None = None
        if seen.method == "POST" and card == DECLINED_CARD:
            error = ("card_declined", "Your card was declined.")
        elif seen.method == "POST" and card != PAYING_CARD:
            error = ("not_a_test_card", "Not a test card: use 4242 4242 4242 4242.")
        if seen.method == "GET" or error is not None:
            return html_reply(
                200,
                card_page(
                    provider="stripe",
                    heading=HEADING,
                    amount=_amount(session["amount_total"], session["currency"]),
                    description=self._products.get(session_id, ""),
                    action=seen.path,
                    card=form.get("card_number", ""),
                    error=error[1] if error else None,
                    error_code=error[0] if error else None,
                    can_cancel=bool(cancel_url),
                ),
            )
        self.pay(session_id)
        return Away(
            str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session_id), paid=True
        )

    def answer(self, seen: Seen) -> Reply:
        if seen.headers.get("authorization") != f"Bearer {self.secret_key}":
            return _error(401, "Invalid API Key provided: sk_test_****")
        parts = seen.path.strip("/").split("/")
        if seen.method == "GET":
            return self._get(parts)
        if "application/x-www-form-urlencoded" not in seen.headers.get("content-type", ""):
            return _error(400, "Invalid request: form-encoded body expected")
        params = parse_form(seen.body)
        key = seen.headers.get("idempotency-key")
        with self.lock:
            if key is not None and key in self._keys:
                first, path, reply = self._keys[key]
                if first != params or path != seen.path:
                    return _error(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with. Try using a key other than '{key}' if you "
                        "meant to execute a different request.",
                        kind="idempotency_error",
                    )
                return 200, reply, {"Idempotent-Replayed": "true"}
            try:
                status, made = self._post(parts, params)
            except _Bad as bad:
                return _error(400, bad.message, param=bad.param)
            reply = _json(made)
            if key is not None and status == 200:
                self._keys[key] = (params, seen.path, reply)
            return status, reply, {}

    def _get(self, parts: list[str]) -> Reply:
        with self.lock:
            if parts[:3] == ["v1", "checkout", "sessions"] and len(parts) == 4:
                found, kind = self.sessions.get(parts[3]), "checkout.session"
            elif parts[:2] == ["v1", "refunds"] and len(parts) == 3:
                found, kind = self.refunds.get(parts[2]), "refund"
            elif parts[:2] == ["v1", "payment_intents"] and len(parts) == 3:
                found, kind = self.payment_intents.get(parts[2]), "payment_intent"
            else:
                return _error(404, f"Unrecognized request URL (GET: /{'/'.join(parts)}).")
            if found is None:
                return _error(
                    404, f"No such {kind}: '{parts[-1]}'", code="resource_missing", param="id"
                )
            return 200, _json(found), {}

    def _post(self, parts: list[str], params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if parts == ["v1", "checkout", "sessions"]:
            return 200, self._create_session(params)
        if parts[:3] == ["v1", "checkout", "sessions"] and parts[4:] == ["expire"]:
            session = self.sessions.get(parts[3])
            if session is None:
                raise _Bad("session", f"No such checkout.session: '{parts[3]}'")
            if session["status"] != "open":
                raise _Bad("session", f"Only open sessions can be expired: {session['status']}")
            session.update(status="expired", url=None)
            return 200, session
        if parts == ["v1", "refunds"]:
            return 200, self._refund(params)
        raise _Bad("url", f"Unrecognized request URL (POST: /{'/'.join(parts)}).")

    def _create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mode") != "payment":
            raise _Bad("mode", "mode payment expected by this stand-in")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise _Bad("line_items", "line_items are required in payment mode")
        total, currency, products = 0, None, []
        for index, item in enumerate(items):
            where = f"line_items[{index}]"
            price = item.get("price_data") if isinstance(item, dict) else None
            if not isinstance(price, dict):
                raise _Bad(f"{where}[price_data]", "price_data is required")
            line_currency = price.get("currency")
            if not isinstance(line_currency, str) or not re.fullmatch(r"[a-z]{3}", line_currency):
                raise _Bad(f"{where}[price_data][currency]", "a lowercase ISO code")
            if currency not in (None, line_currency):
                raise _Bad(f"{where}[price_data][currency]", "all line items in one currency")
            currency = line_currency
            product = price.get("product_data")
            if not isinstance(product, dict) or not product.get("name"):
                raise _Bad(f"{where}[price_data][product_data][name]", "a name is required")
            amount = _int(price.get("unit_amount"), f"{where}[price_data][unit_amount]")
            quantity = _int(item.get("quantity"), f"{where}[quantity]")
            total += amount * quantity
            products.append(product["name"] + (f" × {quantity}" if quantity > 1 else ""))
        for url_param in ("success_url", "cancel_url"):
            url = params.get(url_param)
            if (url_param == "success_url" or url is not None) and not str(url).startswith(
                ("http://", "https://")
            ):
                raise _Bad(url_param, f"Not a valid URL: {url}")
        metadata = _metadata(params.get("metadata"), "metadata")
        intent_data = params.get("payment_intent_data") or {}
        session_id = "cs_test_" + secrets.token_hex(24)
        self._intent_metadata[session_id] = _metadata(
            intent_data.get("metadata") if isinstance(intent_data, dict) else None,
            "payment_intent_data[metadata]",
        )
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "currency": currency,
            "customer_email": params.get("customer_email"),
            "client_reference_id": params.get("client_reference_id"),
            "created": int(time.time()),
            "expires_at": int(time.time()) + 24 * 3600,
            "livemode": False,
            "metadata": metadata,
            "mode": "payment",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.base_url}/c/pay/{session_id}",
        }
        self.sessions[session_id] = session
        self._products[session_id] = ", ".join(products)
        return session

    def _refund(self, params: dict[str, Any]) -> dict[str, Any]:
        intent = self.payment_intents.get(str(params.get("payment_intent")))
        if intent is None:
            raise _Bad(
                "payment_intent", f"No such payment_intent: '{params.get('payment_intent')}'"
            )
        if intent["status"] != "succeeded":
            raise _Bad("payment_intent", "This PaymentIntent has no successful charge to refund")
        left = intent["amount_received"] - intent["refunded"]
        amount = _int(params["amount"], "amount") if "amount" in params else left
        if left == 0:
            raise _Bad("charge", f"Charge {intent['latest_charge']} has already been refunded.")
        if amount > left:
            raise _Bad(
                "amount",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
            )
        refund_id = "re_" + secrets.token_hex(12)
        refund = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "charge": intent["latest_charge"],
            "status": "succeeded",
            "created": int(time.time()),
            "metadata": _metadata(params.get("metadata"), "metadata"),
        }
        intent["refunded"] += amount
        self.refunds[refund_id] = refund
        return refund


def _amount(minor: int, currency: str) -> str:
    """An amount as the Checkout page shows it: ``4120.00 RUB``."""
    if currency in ZERO_DECIMAL:
        return f"{minor} {currency.upper()}"
    return f"{minor // 100}.{minor % 100:02d} {currency.upper()}"


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """Stripe's ``Stripe-Signature``: HMAC-SHA256 of ``"{t}.{body}"`` with the whole
    ``whsec_…`` secret as the key."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


@contextmanager
def stripe_stand_in(**options: str) -> Iterator[StripeStandIn]:
    """A ``StripeStandIn`` started on a free port of 127.0.0.1, stopped afterwards."""
    stand_in = StripeStandIn(**options).start()
    try:
        yield stand_in
    finally:
        stand_in.close()
