"""The subscriber's self-service cabinet (SPEC S-7, seed 003): public pages at
``/cabinet/<tenant>/``.

Apart from the staff UI: its own layout (the tenant's name, RU/EN, no staff menus) and
its own cookies, each scoped to ``/cabinet/<tenant>``: the session
(``kopilka_cabinet``), the sign-in form's double-submit token and the language chosen
(the tenant's language until then). The staff's ``kopilka_session`` opens no cabinet,
and a cabinet session opens no staff screen: each is looked up in its own table.

Pages: the overview (balance, the disconnection threshold now, status, tariff and next
charge, the promised payment in force, the history page by page), "Promised payment"
(each service the cabinet may order, what it will cost and until when, and the button
"Activate promised payment", or the rule that refuses it, in words), and the change of
password. Every POST carries the session's CSRF token; the promised payment's form also
carries an operation id made when it was shown, so a double click takes one.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection, Engine
from starlette.datastructures import FormData
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput, KopilkaError, NotFound, Unauthenticated
from kopilka.core.money import currency_exponent, parse_amount
from kopilka.ledger.posting import run_transaction
from kopilka.subscribers import cabinet, promised
from kopilka.subscribers.common import add_months
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.subscribers.registry import (
    ACTIVE,
    BLOCKED,
    DISABLED,
    NEW,
    HistoryLine,
    SubscriberView,
    get_subscriber,
)
from kopilka.subscribers.tariffs import TariffView, get_tariff
from kopilka.tenancy.actions import Tenant, get_tenant_by_slug
from kopilka.tenancy.sessions import TooManyAttempts
from kopilka.web import i18n
from kopilka.web.deps import CSRF_FIELD, CSRF_HEADER, get_engine, redirect, request_locale
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.templating import render_template

router = APIRouter(include_in_schema=False)

PREFIX = "/cabinet/{slug}"
SESSION_COOKIE = "kopilka_cabinet"
LOGIN_CSRF_COOKIE = "kopilka_cabinet_login"
LOCALE_COOKIE = "kopilka_cabinet_locale"
HISTORY_PER_PAGE = 20
MOMENT = "d MMMM y, HH:mm"  # "7 апреля 2026, 00:00" / "7 April 2026, 00:00"


# --------------------------------------------------------------------------- the visit


@dataclass
class Visit:
    """A request to one tenant's cabinet: the tenant, and the subscriber if signed in."""

    request: Request
    engine: Engine
    tenant: Tenant
    locale: str
    session: cabinet.CabinetSession | None
    subscriber: SubscriberView | None

    @property
    def home(self) -> str:
        return f"/cabinet/{self.tenant.slug}"

    def url(self, tail: str = "") -> str:
        return self.home + tail

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token if self.session is not None else ""

    @property
    def source_ip(self) -> str | None:
        return self.request.client.host if self.request.client else None

    @property
    def actor(self) -> Actor:
        assert self.subscriber is not None
        return cabinet.subscriber_actor(self.subscriber, self.source_ip)

    @property
    def secure(self) -> bool:
        return self.request.url.scheme == "https"

    def money(self, amount_minor: int | None) -> str:
        if amount_minor is None:
            return ""
        currency = self.tenant.currency
        return i18n.format_money(amount_minor, currency, currency_exponent(currency))


def _minor(value: object, visit: Visit) -> int | None:
    """A refusal's amount (a decimal string of the domain's, "600.00") in minor units."""
    if not isinstance(value, str):
        return None
    return parse_amount(value, currency_exponent(visit.tenant.currency))


async def _visit(request: Request, slug: str) -> Visit:
    """The tenant of the address (404 if none), its language, and the cabinet's session.

    Async, like the staff pages' dependency, so the locale it sets is the request's."""
    engine = get_engine(request)
    with read_only(engine) as conn:
        try:
            tenant = get_tenant_by_slug(conn, slug)
        except NotFound:
            tenant = None
        if tenant is None or tenant.slug != slug:
            i18n.set_locale(request_locale(request))
            raise HTTPException(404)
        secret = request.cookies.get(SESSION_COOKIE, "")
        session = cabinet.resolve_session(conn, tenant_id=tenant.id, secret=secret)
        subscriber = None
        if session is not None:
            subscriber = get_subscriber(conn, tenant.id, session.subscriber_id)
    locale = (
        i18n.normalise_locale(request.cookies.get(LOCALE_COOKIE))
        or i18n.normalise_locale(tenant.locale)
        or i18n.DEFAULT_LOCALE
    )
    i18n.set_locale(locale, tenant.timezone)
    request.state.tenant_id = tenant.id
    if subscriber is not None:
        request.state.actor = f"subscriber:{subscriber.id}"
    return Visit(request, engine, tenant, locale, session, subscriber)


async def _form_data(request: Request) -> FormData:
    return await request.form()


VisitDep = Annotated[Visit, Depends(_visit)]
Posted = Annotated[FormData, Depends(_form_data)]


def render(visit: Visit, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = render_template(
        template,
        {
            "visit": visit,
            "request": visit.request,
            "csrf_field": CSRF_FIELD,
            "amount": visit.money,
            "section": "",
            **context,
        },
    )
    return HTMLResponse(html, status_code=status_code)


def _to_sign_in(visit: Visit) -> Response:
    return redirect(visit.url("/login"), visit.request)


def _refused_post(visit: Visit, posted: FormData) -> Response | None:
    """Why a POST of a signed-in page may not go on (signed out, no CSRF token), or
    ``None`` when it may."""
    if visit.session is None or visit.subscriber is None:
        return _to_sign_in(visit)
    sent = visit.request.headers.get(CSRF_HEADER) or str(posted.get(CSRF_FIELD) or "")
    if not _same(sent, visit.session.csrf_token):
        return render(visit, "cabinet/error.html", status_code=403, error="csrf")
    return None


def _same(sent: str, expected: str) -> bool:
    """A token sent equals the one expected (in constant time; any text may be sent)."""
    return bool(sent) and bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def _set_cookie(visit: Visit, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=visit.secure,
        path=visit.home,
    )


# --------------------------------------------------------------------------- words


def status_name(status: str) -> str:
    return {
        NEW: _("Not activated yet"),
        ACTIVE: _("Active"),
        BLOCKED: _("Blocked for non-payment"),
        DISABLED: _("Switched off by the provider"),
    }.get(status, status)


def moment_text(moment: datetime) -> str:
    return i18n.format_datetime(moment, MOMENT)


def _method_price(visit: Visit, tariff: TariffView) -> str:
    price = visit.money(tariff.price_minor)
    if tariff.charge_method == "daily":
        return _("%(amount)s charged daily", amount=price)
    if tariff.charge_method == "monthly":
        return _("%(amount)s charged monthly", amount=price)
    return _("%(amount)s charged once", amount=price)


def refusal_text(visit: Visit, error: KopilkaError) -> str:
    """Why a promised payment is refused, in the subscriber's language."""
    p = error.params
    code = error.code
    simple: dict[str, str] = {
        E.PP_SUBSCRIBER_DISABLED: _(
            "Your account is disabled, so a promised payment cannot be taken. "
            "Please contact your provider."
        ),
        E.PP_NOT_ACTIVATED: _(
            "Your service has not started yet: a promised payment can be taken once it "
            "is activated."
        ),
        E.PP_SERVICE_INACTIVE: _("This promised payment is no longer offered."),
        E.SERVICE_NOT_FOUND: _("This promised payment is no longer offered."),
        E.PP_NOT_SELF_SERVICE: _(
            "This promised payment cannot be ordered in the personal account; please "
            "contact your provider."
        ),
        E.PP_TARIFF_NOT_ALLOWED: _("This promised payment is not available on your tariff."),
        E.PP_ALREADY_ACTIVE: _(
            "You already have a promised payment in force; a new one can be taken after it ends."
        ),
        E.PP_ONLY_WHEN_BLOCKED: _(
            "A promised payment is available only while your service is blocked for debt."
        ),
        E.PP_NOT_NEEDED: _("Your balance covers the next charge: no promised payment is needed."),
        E.PP_RULE_NO_TOPUP: _(
            "Your tariff gives a new promised payment only after the account has been topped "
            "up since the previous one. Please top up your account first."
        ),
        E.PP_CONNECTION_UNAFFORDABLE: _(
            "The connection price of this promised payment does not fit within your "
            "balance even with the promised payment. Please top up your account."
        ),
    }
    if code in simple:
        return simple[code]
    if code == E.PP_RULE_ONCE_A_MONTH:
        return _(
            "Your tariff allows one promised payment a calendar month, and one has been "
            "taken this month. The next one can be taken from %(day)s.",
            day=i18n.format_date(_next_month(visit), "long"),
        )
    if code == E.PP_RULE_NO_RECENT_PAYMENT:
        return i18n.ngettext(
            "Your tariff gives a promised payment only if a payment was made within the "
            "last %(num)d day.",
            "Your tariff gives a promised payment only if a payment was made within the "
            "last %(num)d days.",
            int(p.get("days", 0)),
        )
    if code == E.PP_RULE_NO_RECENT_CHARGE:
        return i18n.ngettext(
            "Your tariff gives a promised payment only if something was charged to your "
            "account within the last %(num)d day.",
            "Your tariff gives a promised payment only if something was charged to your "
            "account within the last %(num)d days.",
            int(p.get("days", 0)),
        )
    if code == E.PP_RULE_MONTHLY_LIMIT:
        return i18n.ngettext(
            "Your tariff allows at most %(num)d promised payment a calendar month, and "
            "that many have been taken this month.",
            "Your tariff allows at most %(num)d promised payments a calendar month, and "
            "that many have been taken this month.",
            int(p.get("limit", 0)),
        )
    if code == E.PP_RULE_MONTH_SINCE_PREVIOUS:
        allowed = datetime.fromisoformat(str(p.get("allowed_from")))
        return _(
            "A new promised payment can be taken a month after the previous one: from %(moment)s.",
            moment=moment_text(allowed),
        )
    if code == E.PP_AMOUNT_BELOW_PRICE:
        return _(
            "This promised payment (%(amount)s) is less than the price of your tariff "
            "(%(price)s), so it cannot be activated.",
            amount=visit.money(_minor(p.get("amount"), visit)),
            price=visit.money(_minor(p.get("price"), visit)),
        )
    if code == E.PP_NOT_ENOUGH:
        return _(
            "This promised payment (%(amount)s) is not enough to bring your service back: "
            "%(needed)s is needed. Please top up your account.",
            amount=visit.money(_minor(p.get("amount"), visit)),
            needed=visit.money(_minor(p.get("needed"), visit)),
        )
    return _("The promised payment could not be activated. Please contact your provider.")


def _next_month(visit: Visit) -> date:
    today = datetime.now(i18n.current_zone()).date()
    return add_months(today, 1, 1)


def history_text(visit: Visit, line: HistoryLine) -> str:
    d = line.details
    if line.kind == "top_up":
        return _("Payment received")
    if line.kind == "tariff":
        if d.get("period_start") and d.get("period_end"):
            first = date.fromisoformat(str(d["period_start"]))
            last = date.fromisoformat(str(d["period_end"])) - timedelta(days=1)
            if first == last:
                return _("Tariff for %(day)s", day=i18n.format_date(first))
            return _(
                "Tariff for %(first)s – %(last)s",
                first=i18n.format_date(first),
                last=i18n.format_date(last),
            )
        return _("Tariff (one-time)")
    if line.kind == "connection":
        return _("Promised payment: connection price")
    if line.kind == "commission":
        return _("Promised payment: commission")
    if line.kind == "promised_taken":
        return _(
            "Promised payment of %(amount)s until %(moment)s",
            amount=visit.money(int(d.get("amount_minor") or 0)),
            moment=moment_text(datetime.fromisoformat(str(d["ends_at"]))),
        )
    if line.kind == "promised_ended":
        if d.get("how") == "repaid":
            return _("The promised payment was repaid")
        return _("The promised payment ended")
    if line.kind == "status":
        return _("Status changed: %(status)s", status=status_name(str(d.get("to") or "")))
    return line.kind


# --------------------------------------------------------------------------- signing in


class SignInForm(WebForm):
    account_no = StringField(
        lazy("Your account number"),
        validators=[DataRequired(), Length(max=32)],
        render_kw={"autocomplete": "username", "inputmode": "text"},
    )
    password = PasswordField(
        lazy("Password"),
        validators=[DataRequired(), Length(max=200)],
        render_kw={"autocomplete": "current-password"},
    )


def _too_many(error: TooManyAttempts) -> str:
    minutes = max(1, int(error.retry_after.total_seconds() // 60) + 1)
    return i18n.ngettext(
        "Too many failed attempts. Try again in %(num)d minute.",
        "Too many failed attempts. Try again in %(num)d minutes.",
        minutes,
    )


def _sign_in_page(visit: Visit, form: SignInForm, status_code: int = 200) -> Response:
    token = visit.request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        visit, "cabinet/login.html", status_code=status_code, form=form, login_csrf=token
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=visit.secure,
        path=visit.url("/login"),
    )
    return response


@router.get(PREFIX + "/login")
def sign_in_form(visit: VisitDep) -> Response:
    if visit.subscriber is not None:
        return redirect(visit.home)
    return _sign_in_page(visit, SignInForm())


@router.post(PREFIX + "/login")
def sign_in(visit: VisitDep, posted: Posted) -> Response:
    # Before there is a session, the form's CSRF token is a double-submit cookie.
    sent = str(posted.get(CSRF_FIELD) or "")
    expected = visit.request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not _same(sent, expected):
        return render(visit, "cabinet/error.html", status_code=403, error="csrf")
    form = SignInForm(posted)
    if not form.validate():
        return _sign_in_page(visit, form, status_code=422)
    try:
        subscriber = cabinet.sign_in(
            visit.engine,
            tenant_id=visit.tenant.id,
            tenant_slug=visit.tenant.slug,
            account_no=form.account_no.data or "",
            password=form.password.data or "",
            source_ip=visit.source_ip,
        )
    except TooManyAttempts as error:
        form.add_error("__all__", _too_many(error))
        return _sign_in_page(visit, form, status_code=429)
    except Unauthenticated:
        form.add_error("__all__", _("Unknown account number or password."))
        return _sign_in_page(visit, form, status_code=401)

    def work(conn: Connection) -> str:
        if visit.session is not None:  # whoever was signed in here is signed out
            cabinet.close_session(conn, session=visit.session, actor=visit.actor)
        actor = cabinet.subscriber_actor(subscriber, visit.source_ip)
        return cabinet.open_session(
            conn, tenant_id=visit.tenant.id, subscriber=subscriber, actor=actor
        )

    secret = run_transaction(visit.engine, work)
    response = redirect(visit.home)
    _set_cookie(visit, response, SESSION_COOKIE, secret, int(cabinet.SESSION_TTL.total_seconds()))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=visit.url("/login"))
    return response


@router.post(PREFIX + "/logout")
def sign_out(visit: VisitDep, posted: Posted) -> Response:
    refused = _refused_post(visit, posted)
    if refused is not None:
        return refused
    session = visit.session
    assert session is not None
    run_transaction(
        visit.engine,
        lambda conn: cabinet.close_session(conn, session=session, actor=visit.actor),
    )
    response = redirect(visit.url("/login"), visit.request)
    response.delete_cookie(SESSION_COOKIE, path=visit.home)
    return response


@router.post(PREFIX + "/language")
def switch_language(visit: VisitDep, posted: Posted) -> Response:
    """The language of this cabinet, kept in a cookie (the tenant's until chosen)."""
    if visit.session is not None:
        refused = _refused_post(visit, posted)
        if refused is not None:
            return refused
    locale = i18n.normalise_locale(str(posted.get("locale") or ""))
    next_url = str(posted.get("next") or "")
    if not (next_url == visit.home or next_url.startswith(visit.home + "/")) or "\\" in next_url:
        next_url = visit.home
    response = redirect(next_url, visit.request)
    if locale is not None:
        _set_cookie(visit, response, LOCALE_COOKIE, locale, 365 * 86400)
    return response


# --------------------------------------------------------------------------- overview


@router.get(PREFIX)
def overview(visit: VisitDep) -> Response:
    subscriber = visit.subscriber
    if subscriber is None:
        return _to_sign_in(visit)
    raw = visit.request.query_params.get("page", "")
    page = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 1
    page = max(page, 1)
    with read_only(visit.engine) as conn:
        tariff = get_tariff(conn, visit.tenant.id, subscriber.tariff_id)
        in_force = cabinet.active_promised(conn, visit.tenant.id, subscriber.id)
        lines, more = cabinet.history_page(
            conn, visit.tenant.id, subscriber.id, page=page, per_page=HISTORY_PER_PAGE
        )
    return render(
        visit,
        "cabinet/overview.html",
        section="overview",
        subscriber=subscriber,
        status=status_name(subscriber.status),
        tariff=tariff,
        tariff_price=_method_price(visit, tariff),
        in_force=in_force,
        lines=[(line, history_text(visit, line)) for line in lines],
        page_no=page,
        prev_url=visit.url(f"?page={page - 1}" if page > 2 else "") if page > 1 else None,
        next_url=visit.url(f"?page={page + 1}") if more else None,
        moment=moment_text,
    )


# --------------------------------------------------------------------------- promised payment


@dataclass(frozen=True, slots=True)
class OfferRow:
    offer: promised.Offer
    refusal: str | None
    commission: str
    operation_id: str


def _commission_text(visit: Visit, offer: promised.Offer) -> str:
    if offer.commission_per_day_minor:
        return _(
            "%(amount)s for each day used, at most %(max)s; charged when it ends",
            amount=visit.money(offer.commission_per_day_minor),
            max=visit.money(offer.commission_max_minor),
        )
    if offer.commission_once_minor:
        return _(
            "%(amount)s, charged when it ends", amount=visit.money(offer.commission_once_minor)
        )
    return _("No commission")


def _offers(visit: Visit, conn: Connection, subscriber: SubscriberView) -> list[OfferRow]:
    rows = []
    for service in cabinet.cabinet_services(conn, visit.tenant.id, subscriber.tariff_id):
        offer = promised.offer(
            conn,
            tenant_id=visit.tenant.id,
            subscriber_id=subscriber.id,
            service_id=service.id,
            source="cabinet",
        )
        refusal = None if offer.refusal is None else refusal_text(visit, offer.refusal)
        rows.append(OfferRow(offer, refusal, _commission_text(visit, offer), uuid.uuid4().hex))
    return rows


def _promised_page(
    visit: Visit,
    *,
    taken: promised.PromisedView | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    assert visit.subscriber is not None
    with read_only(visit.engine) as conn:
        subscriber = get_subscriber(conn, visit.tenant.id, visit.subscriber.id)
        offers = _offers(visit, conn, subscriber)
        in_force = cabinet.active_promised(conn, visit.tenant.id, subscriber.id)
    return render(
        visit,
        "cabinet/promised.html",
        status_code=status_code,
        section="promised",
        subscriber=subscriber,
        offers=offers,
        in_force=in_force,
        taken=taken,
        error=error,
        moment=moment_text,
    )


@router.get(PREFIX + "/promised")
def promised_page(visit: VisitDep) -> Response:
    if visit.subscriber is None:
        return _to_sign_in(visit)
    taken = None
    raw = visit.request.query_params.get("taken", "")
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        with read_only(visit.engine) as conn:
            try:
                found = promised.get_promised(conn, visit.tenant.id, int(raw))
            except NotFound:
                found = None
        if found is not None and found.subscriber_id == visit.subscriber.id:
            taken = found
    return _promised_page(visit, taken=taken)


def _shown_id(posted: FormData) -> str:
    """The operation id the form was shown with; a fresh one if it is not one of ours."""
    shown = str(posted.get("operation_id") or "").strip()
    if 8 <= len(shown) <= 64 and shown.isascii() and shown.isalnum():
        return shown
    return uuid.uuid4().hex


@router.post(PREFIX + "/promised")
def take_promised(visit: VisitDep, posted: Posted) -> Response:
    refused = _refused_post(visit, posted)
    if refused is not None:
        return refused
    assert visit.subscriber is not None
    raw = str(posted.get("service_id") or "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        error = refusal_text(visit, NotFound(E.SERVICE_NOT_FOUND, "no such service"))
        return _promised_page(visit, error=error, status_code=422)
    try:
        taken = cabinet.take_promised(
            visit.engine,
            tenant_id=visit.tenant.id,
            subscriber_id=visit.subscriber.id,
            service_id=int(raw),
            operation=cabinet.operation_id(visit.subscriber.id, _shown_id(posted)),
            actor=visit.actor,
        )
    except KopilkaError as error:
        return _promised_page(visit, error=refusal_text(visit, error), status_code=422)
    return redirect(visit.url(f"/promised?taken={taken.id}"), visit.request)


# --------------------------------------------------------------------------- password


class PasswordForm(WebForm):
    old_password = PasswordField(
        lazy("Current password"),
        validators=[DataRequired(), Length(max=200)],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = PasswordField(
        lazy("New password"),
        validators=[DataRequired(), Length(min=8, max=200)],
        render_kw={"autocomplete": "new-password"},
    )
    new_password_again = PasswordField(
        lazy("New password again"),
        validators=[DataRequired(), Length(max=200)],
        render_kw={"autocomplete": "new-password"},
    )


def _password_page(
    visit: Visit, form: PasswordForm, *, changed: bool = False, status_code: int = 200
) -> Response:
    return render(
        visit,
        "cabinet/password.html",
        status_code=status_code,
        section="password",
        form=form,
        changed=changed,
    )


@router.get(PREFIX + "/password")
def password_form(visit: VisitDep) -> Response:
    if visit.subscriber is None:
        return _to_sign_in(visit)
    changed = visit.request.query_params.get("changed") == "1"
    return _password_page(visit, PasswordForm(), changed=changed)


@router.post(PREFIX + "/password")
def change_password(visit: VisitDep, posted: Posted) -> Response:
    refused = _refused_post(visit, posted)
    if refused is not None:
        return refused
    assert visit.session is not None
    form = PasswordForm(posted)
    valid = form.validate()
    if valid and form.new_password.data != form.new_password_again.data:
        form.add_error("new_password_again", _("The new password is typed differently twice."))
        valid = False
    if not valid:
        return _password_page(visit, form, status_code=422)
    try:
        cabinet.change_password(
            visit.engine,
            tenant_slug=visit.tenant.slug,
            session=visit.session,
            old_password=form.old_password.data or "",
            new_password=form.new_password.data or "",
            actor=visit.actor,
            source_ip=visit.source_ip,
        )
    except TooManyAttempts as error:
        form.add_error("__all__", _too_many(error))
        return _password_page(visit, form, status_code=429)
    except Unauthenticated:
        form.add_error("old_password", _("The current password is wrong."))
        return _password_page(visit, form, status_code=422)
    except InvalidInput:
        form.add_error("new_password", _("A password of 8 to 200 characters."))
        return _password_page(visit, form, status_code=422)
    return redirect(visit.url("/password?changed=1"), visit.request)
