"""The online sale's public pages (SPEC M-3, M-4, M-8, seed 004): a studio's client buys
a membership.

The studio puts the button (a plain ``<a href=".../buy/<company>/<type>">``) on its own
site; the client follows it and gets, in the studio's own design (the colours of its
button design, its name) and in their language (their choice, else their browser's,
else the studio's)::

    GET  /buy/<company>/<type>             the checkout: the type, its price, the
                                           commission the client pays on top, the total,
                                           an e-mail field and "Pay"
    POST /buy/<company>/<type>             an order, a payment at the provider, and a 303
                                           to the provider's card form
    GET  /buy/<company>/orders/<token>     back from the provider: the provider is asked
                                           (a return proves nothing) and the page says
                                           paid (the membership's number and activation
                                           code), waiting (it reloads itself) or failed
    GET  /buy/<company>/orders/<token>/cancel   the client gave up at the provider
    POST /pay/<company>/notify/<provider>  the provider's notification (JSON answers)
    GET  /buy/<company>/theme.css          the studio's colours, as a stylesheet (the
                                           pages' Content-Security-Policy allows no
                                           inline style)

The checkout page opens from any site with no cookie needed; its form carries a
double-submit token (a cookie set by the page, scoped to ``/buy/<company>``). Nothing is
written for a form refused here (a bad e-mail, an expired form). The domain
(``kopilka.memberships.checkout``) talks to the provider with no database transaction
open and records a payment exactly once, however often and in whatever order the return
and the notifications arrive.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from babel import Locale
from babel.numbers import format_percent
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from kopilka.api.problems import from_error, problem_response
from kopilka.core.actor import Actor, ActorType
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput, KopilkaError, NotFound, Unavailable
from kopilka.core.money import currency_exponent
from kopilka.core.settings import get_settings as get_app_settings
from kopilka.mail.outbox import clean_address
from kopilka.memberships import checkout, sales
from kopilka.memberships.attaching import MembershipView, get_membership
from kopilka.memberships.catalogue import (
    PROVIDERS,
    ButtonDesign,
    OnlineSettings,
    TypeView,
    commission_of,
    get_settings,
    get_type,
)
from kopilka.memberships.error_codes import MembershipErrorCode as E
from kopilka.memberships.sales import CheckoutLimit, OrderView
from kopilka.tenancy.actions import Tenant, get_tenant_by_slug
from kopilka.web import i18n
from kopilka.web.deps import CSRF_FIELD, get_engine, request_locale
from kopilka.web.i18n import _
from kopilka.web.templating import render_template

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

PREFIX = "/buy/{slug}"
CSRF_COOKIE = "kopilka_shop_csrf"
LOCALE_COOKIE = "kopilka_shop_locale"
FORM_MAX_BYTES = 16 * 1024
NOTIFY_MAX_BYTES = 64 * 1024
MAX_EMAIL = 254
# The waiting page reloads itself: often at first (a card payment ends in seconds), then
# seldom, so a tab left open does not ask the provider every few seconds for ever.
REFRESH_FAST_SECONDS, REFRESH_SLOW_SECONDS = 3, 30
REFRESH_FAST_FOR = timedelta(minutes=3)
CSRF_REFUSED = "csrf"  # the page's own code for an expired form (not the domain's)


# --------------------------------------------------------------------------- the visit


@dataclass
class Shop:
    """A request to one studio's shop: the studio, its sale settings, the language."""

    request: Request
    tenant: Tenant
    online: OnlineSettings
    locale: str
    picked: str | None  # a language picked just now (``?lang=``), kept in a cookie

    @property
    def engine(self) -> Engine:
        return get_engine(self.request)

    @property
    def home(self) -> str:
        return f"/buy/{self.tenant.slug}"

    def url(self, tail: str) -> str:
        return self.home + tail

    @property
    def secure(self) -> bool:
        return self.request.url.scheme == "https"

    @property
    def source_ip(self) -> str | None:
        return self.request.client.host if self.request.client else None

    @property
    def public_base(self) -> str:
        return public_base(self.request)

    def actor(self, label: str) -> Actor:
        return Actor(ActorType.JOB, None, label, self.source_ip)

    def money(self, amount_minor: int) -> str:
        currency = self.tenant.currency
        return i18n.format_money(amount_minor, currency, currency_exponent(currency))

    def urls_for(self, order: OrderView) -> checkout.Urls:
        base = self.public_base + self.url(f"/orders/{order.token}")
        return checkout.Urls(return_url=base, cancel_url=base + "/cancel")

    @property
    def theme_url(self) -> str:
        return self.url(f"/theme.css?v={_theme_version(self.online.button)}")


def public_base(request: Request) -> str:
    """Kopilka's address as clients and providers reach it: ``KOPILKA_PUBLIC_URL``, else
    the scheme and host this request came to."""
    configured = get_app_settings().public_url
    return (configured or str(request.base_url)).rstrip("/")


def browser_locale(accept_language: str | None) -> str | None:
    """The browser's language if it names one of ours (``negotiate`` would say Russian
    for a French browser; the studio's own language is the better guess then)."""
    if not accept_language:
        return None
    named = (i18n.normalise_locale(part.split(";")[0]) for part in accept_language.split(","))
    return i18n.negotiate(accept_language) if any(named) else None


async def _shop(request: Request, slug: str) -> Shop:
    """The studio of the address (404 if none) and the page's language.

    Async, like the other pages' dependencies, so the locale it sets is the request's."""
    engine = get_engine(request)
    with read_only(engine) as conn:
        try:
            tenant: Tenant | None = get_tenant_by_slug(conn, slug)
        except NotFound:
            tenant = None
        if tenant is None or tenant.slug != slug:
            i18n.set_locale(request_locale(request))
            raise HTTPException(404)
        online = get_settings(conn, tenant.id)
    picked = i18n.normalise_locale(request.query_params.get("lang"))
    locale = (
        picked
        or i18n.normalise_locale(request.cookies.get(LOCALE_COOKIE))
        or browser_locale(request.headers.get("accept-language"))
        or i18n.normalise_locale(tenant.locale)
        or i18n.DEFAULT_LOCALE
    )
    i18n.set_locale(locale, tenant.timezone)
    request.state.tenant_id = tenant.id
    return Shop(request, tenant, online, locale, picked)


ShopDep = Annotated[Shop, Depends(_shop)]


def _order_locale(shop: Shop, order: OrderView) -> None:
    """An order's pages speak the language it was bought in, unless the client picks
    another (now, or before: the cookie)."""
    if shop.picked or i18n.normalise_locale(shop.request.cookies.get(LOCALE_COOKIE)):
        return
    shop.locale = i18n.normalise_locale(order.locale) or shop.locale
    i18n.set_locale(shop.locale, shop.tenant.timezone)


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request's body, or ``None`` when it is longer than ``limit`` bytes (found
    before it is read whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _posted(request: Request) -> dict[str, str]:
    """A public form's fields (url-encoded, at most ``FORM_MAX_BYTES``; the first value
    of a repeated name). A body too long, or not a form, reads as no fields."""
    body = await read_capped(request, FORM_MAX_BYTES)
    if body is None:
        return {}
    fields: dict[str, str] = {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


Posted = Annotated[dict[str, str], Depends(_posted)]


def same_token(sent: str, expected: str) -> bool:
    """A token sent equals the one expected (in constant time; any text may be sent)."""
    return bool(sent) and bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def _cookie(shop: Shop, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        # Lax: the client arrives from the studio's site by a link, and a second tab
        # opened so keeps the first one's token instead of making the first form stale.
        samesite="lax",
        secure=shop.secure,
        path=shop.home,
    )


def render(
    shop: Shop, template: str, *, status_code: int = 200, csp: str | None = None, **context: Any
) -> HTMLResponse:
    html = render_template(
        template,
        {"shop": shop, "request": shop.request, "csrf_field": CSRF_FIELD, **context},
    )
    response = HTMLResponse(html, status_code=status_code)
    if csp is not None:
        response.headers["Content-Security-Policy"] = csp
    if shop.picked is not None:
        _cookie(shop, response, LOCALE_COOKIE, shop.picked, 365 * 86400)
    return response


# --------------------------------------------------------------------------- the design


def _design(button: ButtonDesign) -> ButtonDesign:
    """The studio's button design, as checked as when it was saved (the default design
    if a value in the database would not pass: it goes into a stylesheet)."""
    try:
        return button.checked()
    except KopilkaError:
        return ButtonDesign()


def theme_css(button: ButtonDesign) -> str:
    design = _design(button)
    return (
        ":root{"
        f"--shop-accent:{design.bg_color};--shop-accent-ink:{design.text_color};"
        f"--shop-accent-line:{design.border_color}"
        "}\n"
        f".shop-pay{{{design.css()};max-width:100%}}\n"
        ".shop-pay:hover,.shop-pay:focus{filter:brightness(.94)}\n"
    )


def _theme_version(button: ButtonDesign) -> str:
    return hashlib.sha256(theme_css(button).encode()).hexdigest()[:12]


@router.get(PREFIX + "/theme.css")
def theme(shop: ShopDep) -> Response:
    return Response(
        theme_css(shop.online.button),
        media_type="text/css",
        # The pages name it with a version of its content: a change of design is a new
        # address, so it may be kept.
        headers={"Cache-Control": "public, max-age=86400"},
    )


# --------------------------------------------------------------------------- refusals


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the page cannot go on, in the client's language, with a stable code."""

    code: str
    text: str


def refusal_of(shop: Shop, code: str) -> Refusal:
    texts = {
        E.ONLINE_SALE_OFF: _(
            "%(studio)s does not sell memberships online at the moment.",
            studio=shop.tenant.name,
        ),
        E.NOT_SOLD_ONLINE: _("This membership is not sold online."),
        E.MEMBERSHIP_TYPE_NOT_FOUND: _("This membership is not sold online."),
        E.INVALID_EMAIL: _(
            "Enter your e-mail address, such as name@example.com: the membership and its "
            "activation code are sent there."
        ),
        CSRF_REFUSED: _("The page has expired. Please press “Pay” again."),
        E.PROVIDER_UNAVAILABLE: _(
            "The payment service did not answer. Nothing was charged; please try again in "
            "a few minutes."
        ),
        E.PAYMENT_MISMATCH: _(
            "The payment does not match the order, so the membership was not issued. "
            "Please contact the studio."
        ),
        E.ORDER_NOT_FOUND: _("This order does not exist."),
        E.TOO_MANY_CHECKOUTS: _(
            "Too many payments were started from your address. Nothing was charged; "
            "please try again in a few minutes."
        ),
    }
    text = texts.get(code) or _(
        "The payment could not be started. Please try again later or contact the studio."
    )
    return Refusal(str(code), text)


# --------------------------------------------------------------------------- the checkout


@dataclass(frozen=True, slots=True)
class Offer:
    kind: TypeView
    price_minor: int
    commission_bp: int
    commission_minor: int
    total_minor: int


def offer_of(shop: Shop, type_id: int) -> Offer | Refusal:
    """The type at its price now, or why it is not sold here (the rules of
    ``sales.start_checkout``, read ahead so the page can say so before anything is
    written)."""
    if not shop.online.online_enabled:
        return refusal_of(shop, E.ONLINE_SALE_OFF)
    with read_only(shop.engine) as conn:
        try:
            kind = get_type(conn, shop.tenant.id, type_id)
        except NotFound:
            return refusal_of(shop, E.MEMBERSHIP_TYPE_NOT_FOUND)
    if not (kind.sell_online and kind.is_permanent and kind.is_active):
        return refusal_of(shop, E.NOT_SOLD_ONLINE)
    bp = shop.online.commission_bp
    commission = commission_of(kind.price_minor, bp)
    return Offer(kind, kind.price_minor, bp, commission, kind.price_minor + commission)


def percent_text(basis_points: int) -> str:
    """Hundredths of a per cent as each language writes them: ``2,5 %`` (ru), ``2.5%``
    (en)."""
    locale = Locale.parse(i18n.current_locale())
    pattern = locale.percent_formats[None].pattern.replace("0", "0.##", 1)
    return format_percent(Decimal(basis_points).scaleb(-4), format=pattern, locale=locale)


def _form_origins(shop: Shop) -> str:
    """Where the checkout form may lead: here, and the provider's card form (a POST
    answered with a redirect is a form's navigation for ``form-action``). A real
    provider's form is on https; a local stand-in's (``api_base``) is named."""
    origins = ["'self'", "https:"]
    base = shop.online.provider_config.get("api_base")
    if isinstance(base, str) and base.strip():
        parts = urlsplit(base.strip())
        if parts.scheme in ("http", "https") and parts.netloc and " " not in parts.netloc:
            origins.append(f"{parts.scheme}://{parts.netloc}")
    return " ".join(origins)


def _checkout_csp(shop: Shop) -> str:
    from kopilka.web.app import CSP

    return CSP.replace("form-action 'self'", f"form-action {_form_origins(shop)}")


CHECKOUT_KEY_FIELD = "checkout_key"


def _checkout_key(value: str) -> str | None:
    """The form's own key (made when it was shown), so a double click is one order; a
    form without one (an old page) starts a new order."""
    key = value.strip()
    return key if 8 <= len(key) <= 64 and key.isascii() else None


def checkout_page(
    shop: Shop,
    type_id: int,
    offer: Offer | Refusal,
    *,
    email: str = "",
    refusal: Refusal | None = None,
    status_code: int = 200,
) -> Response:
    token = shop.request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    if isinstance(offer, Refusal):
        refusal, offer_shown = offer, None
    else:
        offer_shown = offer
    response = render(
        shop,
        "shop/checkout.html",
        status_code=status_code,
        csp=_checkout_csp(shop),
        offer=offer_shown,
        refusal=refusal,
        email=email,
        form_token=token,
        checkout_key=secrets.token_urlsafe(18),
        checkout_key_field=CHECKOUT_KEY_FIELD,
        action=shop.url(f"/{type_id}"),
        percent=percent_text,
    )
    _cookie(shop, response, CSRF_COOKIE, token, 24 * 3600)
    return response


@router.get(PREFIX + "/{type_id:int}")
def checkout_form(shop: ShopDep, type_id: int) -> Response:
    offer = offer_of(shop, type_id)
    return checkout_page(
        shop, type_id, offer, status_code=404 if isinstance(offer, Refusal) else 200
    )


_CLIENTS_REFUSALS = frozenset(
    {
        E.ONLINE_SALE_OFF,
        E.NOT_SOLD_ONLINE,
        E.MEMBERSHIP_TYPE_NOT_FOUND,
        E.INVALID_EMAIL,
        E.TOO_MANY_CHECKOUTS,
    }
)


def _checkout_limit() -> CheckoutLimit:
    settings = get_app_settings()
    return CheckoutLimit(
        settings.checkout_limit_per_address,
        timedelta(minutes=settings.checkout_limit_window_minutes),
    )


def _status_of(code: str) -> int:
    if code in (E.MEMBERSHIP_TYPE_NOT_FOUND, E.ORDER_NOT_FOUND):
        return 404
    return 422


@router.post(PREFIX + "/{type_id:int}")
def start(shop: ShopDep, type_id: int, posted: Posted) -> Response:
    email = posted.get("email", "").strip()[: MAX_EMAIL + 1]
    offer = offer_of(shop, type_id)
    # Before there is an order, the form's token is a double-submit cookie.
    if not same_token(posted.get(CSRF_FIELD, ""), shop.request.cookies.get(CSRF_COOKIE, "")):
        return checkout_page(
            shop,
            type_id,
            offer,
            email=email,
            refusal=refusal_of(shop, CSRF_REFUSED),
            status_code=403,
        )
    if isinstance(offer, Refusal):
        return checkout_page(shop, type_id, offer, status_code=_status_of(offer.code))
    try:
        # The rule ``start_checkout`` applies (the mail queue's), checked before the
        # provider is asked for anything, so a typo is the client's and said as such.
        clean_address(email)
    except InvalidInput:
        return checkout_page(
            shop,
            type_id,
            offer,
            email=email,
            refusal=refusal_of(shop, E.INVALID_EMAIL),
            status_code=422,
        )
    try:
        provider = checkout.provider_of(shop.engine, shop.tenant.id, shop.public_base)
        order = checkout.begin(
            shop.engine,
            provider,
            tenant_id=shop.tenant.id,
            type_id=type_id,
            email=email,
            locale=shop.locale,
            urls_for=shop.urls_for,
            checkout_key=_checkout_key(posted.get(CHECKOUT_KEY_FIELD, "")),
            source_ip=shop.request.client.host if shop.request.client else None,
            limit=_checkout_limit(),
        )
    except KopilkaError as error:
        log.warning(
            "checkout refused",
            extra={"tenant_id": shop.tenant.id, "code": error.code, "detail": error.detail},
        )
        # The client's own refusals are said as such; the provider's failure (it did not
        # answer, its settings are wrong) is the service's, not the client's: 503.
        status = error.status if error.code in _CLIENTS_REFUSALS else 503
        page = checkout_page(
            shop,
            type_id,
            offer,
            email=email,
            refusal=refusal_of(shop, error.code),
            status_code=status,
        )
        if "retry_after_seconds" in error.params:
            page.headers["Retry-After"] = str(error.params["retry_after_seconds"])
        return page
    target = order.redirect_url or shop.url(f"/orders/{order.token}")
    response = RedirectResponse(target, status_code=303)
    if shop.picked is not None:
        _cookie(shop, response, LOCALE_COOKIE, shop.picked, 365 * 86400)
    return response


# --------------------------------------------------------------------------- back from the provider


def _token_ok(token: str) -> bool:
    return (
        8 <= len(token) <= 64 and token.isascii() and all(c.isalnum() or c in "-_" for c in token)
    )


def _read_order(shop: Shop, token: str) -> OrderView | None:
    if not _token_ok(token):
        return None
    with read_only(shop.engine) as conn:
        try:
            return sales.order_by_token(conn, shop.tenant.id, token)
        except NotFound:
            return None


def _ask_provider(shop: Shop, order: OrderView) -> tuple[OrderView, Refusal | None]:
    """The order after asking the provider how its payment ended (``on_return``); as it
    was, with the reason, when the provider cannot be asked or refuses the payment."""
    if order.status in ("paid", "refunded") or order.provider_payment_id is None:
        return order, None
    try:
        provider = checkout.provider_of(shop.engine, shop.tenant.id, shop.public_base)
        found = checkout.on_return(
            shop.engine,
            provider,
            tenant_id=shop.tenant.id,
            token=order.token,
            actor=shop.actor(f"online sale: the client's return ({order.provider})"),
        )
    except KopilkaError as error:
        level = logging.ERROR if error.code == E.PAYMENT_MISMATCH else logging.WARNING
        log.log(
            level,
            "return not recorded",
            extra={"tenant_id": shop.tenant.id, "order_id": order.id, "code": error.code},
        )
        refused = error.code if error.code == E.PAYMENT_MISMATCH else E.PROVIDER_UNAVAILABLE
        return _read_order(shop, order.token) or order, refusal_of(shop, refused)
    return found, None


def _refresh_seconds(order: OrderView) -> int:
    waited = utcnow() - order.created_at
    return REFRESH_FAST_SECONDS if waited < REFRESH_FAST_FOR else REFRESH_SLOW_SECONDS


def order_page(
    shop: Shop, order: OrderView, *, refusal: Refusal | None = None, gave_up: bool = False
) -> Response:
    membership: MembershipView | None = None
    if order.status == "paid" and order.membership_id is not None:
        with read_only(shop.engine) as conn:
            membership = get_membership(conn, shop.tenant.id, order.membership_id)
    if order.status == "paid":
        state = "paid"
    elif order.status == "refunded":
        state = "refunded"
    elif refusal is not None and refusal.code == E.PAYMENT_MISMATCH:
        state = "refused"
    elif gave_up or order.status in ("canceled", "created"):
        state = "failed"
    else:
        state = "pending"
    status_code = 422 if state == "refused" else 200
    return render(
        shop,
        "shop/order.html",
        status_code=status_code,
        order=order,
        membership=membership,
        state=state,
        refusal=refusal,
        refresh_seconds=_refresh_seconds(order) if state == "pending" else None,
        again_url=shop.url(f"/{order.type_id}"),
        percent=percent_text,
    )


def _no_order(shop: Shop) -> Response:
    return render(
        shop, "shop/missing.html", status_code=404, refusal=refusal_of(shop, E.ORDER_NOT_FOUND)
    )


@router.get(PREFIX + "/orders/{token}")
def back_from_provider(shop: ShopDep, token: str) -> Response:
    order = _read_order(shop, token)
    if order is None:
        return _no_order(shop)
    _order_locale(shop, order)
    order, refusal = _ask_provider(shop, order)
    return order_page(shop, order, refusal=refusal)


@router.get(PREFIX + "/orders/{token}/cancel")
def client_gave_up(shop: ShopDep, token: str) -> Response:
    """The provider's "back to the shop" (Stripe's ``cancel_url``). The provider is still
    asked: a payment that went through after all shows as paid."""
    order = _read_order(shop, token)
    if order is None:
        return _no_order(shop)
    _order_locale(shop, order)
    order, refusal = _ask_provider(shop, order)
    if order.status in ("paid", "refunded"):
        return RedirectResponse(shop.url(f"/orders/{order.token}"), status_code=303)
    return order_page(shop, order, refusal=refusal, gave_up=True)


# --------------------------------------------------------------------------- notifications


def _problem(request: Request, code: str, status: int, detail: str, **extra: Any) -> JSONResponse:
    titles = {400: "Bad request", 404: "Not found", 413: "Payload too large"}
    return problem_response(
        code=code,
        title=titles.get(status, "Refused"),
        status=status,
        detail=detail,
        instance=request.url.path,
        **extra,
    )


def _notified(request: Request, slug: str, provider_name: str, body: bytes) -> Response:
    """One notification, start to end (a worker thread: the provider may be asked)."""
    engine = get_engine(request)
    source_ip = request.client.host if request.client else None
    with read_only(engine) as conn:
        try:
            tenant = get_tenant_by_slug(conn, slug)
        except NotFound:
            return _problem(request, "not_found", 404, "no such shop")
        configured = get_settings(conn, tenant.id).provider
    if tenant.slug != slug or provider_name != configured:
        return _problem(
            request, "not_found", 404, f"this shop takes no notifications from {provider_name!r}"
        )
    where = {"tenant_id": tenant.id, "provider": provider_name, "source_ip": source_ip}
    try:
        provider = checkout.provider_of(engine, tenant.id, public_base(request))
        order = checkout.on_notification(
            engine,
            provider,
            tenant_id=tenant.id,
            body=body,
            headers=request.headers,
            actor=Actor(
                ActorType.JOB, None, f"online sale: {provider_name} notification", source_ip
            ),
            source_ip=source_ip,
        )
    except KopilkaError as error:
        if error.code == E.FORGED_NOTIFICATION:
            log.warning("forged notification: %s", error.detail, extra=where)
            return _problem(request, error.code, 400, error.detail)
        if isinstance(error, Unavailable | InvalidInput):
            # The provider could not be asked (or its settings cannot be read): the
            # provider sends the notification again later.
            log.warning("notification not verified: %s", error.detail, extra=where)
            unavailable = Unavailable(E.PROVIDER_UNAVAILABLE, error.detail)
            reply = from_error(unavailable, request.url.path)
            reply.headers["Retry-After"] = "60"
            return reply
        # A payment no order knows (yet), one that is not the order's (a tampered amount):
        # 4xx, so the provider tries again and the log has it.
        log.error("notification refused: %s", error.detail, extra={**where, "code": error.code})
        return from_error(error, request.url.path)
    if order is None:
        # The provider's, but about nothing sold here (another event): heard, ignored.
        log.info("notification ignored", extra=where)
        return JSONResponse({"status": "ignored"})
    return JSONResponse({"status": "recorded", "order_status": order.status})


@router.post("/pay/{slug}/notify/{provider_name}")
async def notification(request: Request, slug: str, provider_name: str) -> Response:
    """A payment provider's notification: its raw body and headers go to the adapter,
    which believes it only once verified. 200 when recorded (or recorded before), 400
    when not believed, 503 when the provider could not be asked (it sends it again)."""
    if provider_name not in PROVIDERS:
        return _problem(request, "not_found", 404, f"no provider {provider_name[:40]!r}")
    body = await read_capped(request, NOTIFY_MAX_BYTES)
    if body is None:
        return _problem(
            request,
            "notification_too_large",
            413,
            f"a notification is at most {NOTIFY_MAX_BYTES} bytes",
        )
    return await run_in_threadpool(_notified, request, slug, provider_name, body)
