"""The built-in sandbox provider's card form (SPEC M-4): the page a real provider would
show, played by Kopilka for demos and tests, at ``/sandbox/pay/<payment id>``.

It shows who is paid and how much, the test cards, a card number, expiry and CVC, "Pay"
and "Cancel". The work is ``kopilka.memberships.providers.sandbox``'s (``pay_with_card``,
``cancel``); then, as a provider does, the sandbox sends its signed notification to
Kopilka and sends the client back to the shop. The notification is handed to
``checkout.on_notification`` in this process (the path a notification POSTed to
``/pay/<company>/notify/sandbox`` takes after its body is read, signature check
included), so a demo needs no server able to reach itself. A declined card is said on
the page; a mistyped one leaves the payment open to try again.

The page's language is the one the order was placed in (or ``?lang=``); its form
carries a double-submit token like the shop's checkout.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine

from kopilka.core.actor import Actor, ActorType
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.core.money import currency_exponent
from kopilka.memberships import checkout, sales
from kopilka.memberships.catalogue import get_settings
from kopilka.memberships.providers import sandbox
from kopilka.memberships.providers.base import PaymentState, ProviderPayment
from kopilka.memberships.providers.error_codes import ProviderErrorCode as P
from kopilka.tenancy.actions import Tenant, get_tenant
from kopilka.web import i18n
from kopilka.web.deps import CSRF_FIELD, get_engine, request_locale
from kopilka.web.i18n import _
from kopilka.web.routes.shop import Posted, browser_locale, public_base, same_token
from kopilka.web.templating import render_template

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

CSRF_COOKIE = "kopilka_sandbox_csrf"
COOKIE_PATH = "/sandbox/pay"
FORM_EXPIRED = "csrf"


@dataclass
class CardPage:
    """A visit to a sandbox payment's card page."""

    request: Request
    engine: Engine
    payment: sandbox.SandboxPayment
    tenant: Tenant

    @property
    def url(self) -> str:
        return f"{COOKIE_PATH}/{self.payment.id}"

    def money(self, amount_minor: int) -> str:
        currency = self.payment.currency
        return i18n.format_money(amount_minor, currency, currency_exponent(currency))


async def _card_page(request: Request, payment_id: str) -> CardPage:
    """The payment of the address (404 if none) and the page's language: the order's,
    unless the client picks another."""
    engine = get_engine(request)
    try:
        payment = sandbox.get_sandbox_payment(engine, payment_id)
    except NotFound:
        i18n.set_locale(request_locale(request))
        raise HTTPException(404) from None
    with read_only(engine) as conn:
        tenant = get_tenant(conn, payment.tenant_id)
        order_locale = None
        if payment.order_id is not None:
            try:
                order_locale = sales.get_order(conn, tenant.id, payment.order_id).locale
            except NotFound:
                order_locale = None
    locale = (
        i18n.normalise_locale(request.query_params.get("lang"))
        or i18n.normalise_locale(order_locale)
        or browser_locale(request.headers.get("accept-language"))
        or i18n.normalise_locale(tenant.locale)
        or i18n.DEFAULT_LOCALE
    )
    i18n.set_locale(locale, tenant.timezone)
    request.state.tenant_id = tenant.id
    return CardPage(request, engine, payment, tenant)


CardPageDep = Annotated[CardPage, Depends(_card_page)]


def _error_text(error: KopilkaError) -> str:
    texts = {
        P.INVALID_CARD_NUMBER: _("This is not a valid card number: check the digits."),
        P.NOT_A_TEST_CARD: _("The sandbox takes only its test cards, listed below."),
        P.INVALID_CARD_EXPIRY: _(
            "Enter the expiry date as MM/YY, such as 12/30; the card must not have expired."
        ),
        P.INVALID_CARD_CVC: _("The CVC is the 3 or 4 digits on the back of the card."),
        P.SANDBOX_PAYMENT_STATE: _("This payment is closed. Go back to the shop to start again."),
        FORM_EXPIRED: _("The page has expired. Please enter the card details again."),
    }
    return texts.get(error.code) or _("The payment could not be made.")


def _form_origins(page: CardPage) -> str:
    """``form-action``: this page, and the shop the client goes back to (Kopilka's
    public address, which may differ from the one this page was opened at)."""
    origins = ["'self'"]
    for url in (page.payment.return_url, page.payment.cancel_url):
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            origin = f"{parts.scheme}://{parts.netloc}"
            if origin not in origins:
                origins.append(origin)
    return " ".join(origins)


def _render(
    page: CardPage,
    *,
    status_code: int = 200,
    error: KopilkaError | None = None,
    declined: bool = False,
    card: dict[str, str] | None = None,
) -> HTMLResponse:
    from kopilka.web.app import CSP

    token = page.request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    field = str(error.params.get("field") or "") if error is not None else ""
    html = render_template(
        "shop/sandbox_pay.html",
        {
            "page": page,
            "request": page.request,
            "csrf_field": CSRF_FIELD,
            "form_token": token,
            "error": error,
            "error_text": _error_text(error) if error is not None else "",
            "error_field": field,
            "declined": declined,
            "card": card or {},
            "test_cards": [(sandbox.CARD_SUCCEEDS, True), (sandbox.CARD_DECLINED, False)],
        },
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Content-Security-Policy"] = CSP.replace(
        "form-action 'self'", f"form-action {_form_origins(page)}"
    )
    response.set_cookie(
        CSRF_COOKIE,
        token,
        max_age=24 * 3600,
        httponly=True,
        samesite="lax",
        secure=page.request.url.scheme == "https",
        path=COOKIE_PATH,
    )
    return response


def _notify(page: CardPage, payment: ProviderPayment) -> None:
    """The sandbox's signed notification of how ``payment`` ended, handed to Kopilka.
    What goes wrong is logged: the client's return asks the sandbox anyway."""
    where: dict[str, Any] = {"tenant_id": page.tenant.id, "payment_id": payment.provider_payment_id}
    try:
        with read_only(page.engine) as conn:
            config = get_settings(conn, page.tenant.id).provider_config
        provider = sandbox.provider(
            config,
            engine=page.engine,
            tenant_id=page.tenant.id,
            public_base=public_base(page.request),
        )
        body, headers = provider.notification_for(payment)
        checkout.on_notification(
            page.engine,
            provider,
            tenant_id=page.tenant.id,
            body=body,
            headers=headers,
            actor=Actor(ActorType.JOB, None, "online sale: sandbox notification"),
        )
    except (KopilkaError, ValueError) as error:
        log.warning("sandbox notification not recorded: %s", error, extra=where)


@router.get(COOKIE_PATH + "/{payment_id}")
def card_form(page: CardPageDep) -> Response:
    return _render(page)


@router.post(COOKIE_PATH + "/{payment_id}")
def card_sent(page: CardPageDep, posted: Posted) -> Response:
    if not same_token(posted.get(CSRF_FIELD, ""), page.request.cookies.get(CSRF_COOKIE, "")):
        expired = KopilkaError(FORM_EXPIRED, "the form expired")
        return _render(page, status_code=403, error=expired)
    if posted.get("action") == "cancel":
        return _cancel(page)
    card = {name: posted.get(name, "")[:40] for name in ("card_number", "expiry", "cvc")}
    try:
        paid = sandbox.pay_with_card(
            page.engine,
            page.payment.id,
            card["card_number"],
            expiry=card["expiry"],
            cvc=card["cvc"],
        )
    except KopilkaError as error:
        card.pop("cvc")
        return _render(page, status_code=error.status, error=error, card=card)
    _notify(page, paid)
    if paid.state == PaymentState.SUCCEEDED:
        return RedirectResponse(page.payment.return_url, status_code=303)
    page.payment = sandbox.get_sandbox_payment(page.engine, page.payment.id)
    return _render(page, declined=True)


def _cancel(page: CardPage) -> Response:
    try:
        canceled = sandbox.cancel(page.engine, page.payment.id)
    except KopilkaError:
        # Paid already (the form sent twice): the shop says so.
        return RedirectResponse(page.payment.return_url, status_code=303)
    _notify(page, canceled)
    return RedirectResponse(page.payment.cancel_url, status_code=303)
