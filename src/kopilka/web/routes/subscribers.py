"""Subscribers at the desk (SPEC S-1 … S-6; seed 003): the list and a new subscriber; the
subscriber's card is ``subscribers_card``, tariffs and services are in Settings
(``subscribers_settings``).

Roles with the ``subscribers`` permission come in (owner, administrator, cashier). The
list finds subscribers by account number, name or phone as one types (htmx asks for the
table again; without scripts the search is a plain GET form), filtered by status, a page
at a time (by id, so a page never shifts while subscribers are added). New subscribers
are made by those who set credit terms (``subscribers.manage``: owners and
administrators), since a new subscriber comes with a threshold.

This module also holds what the subscriber screens share: the refusal texts of the
domain's codes (its details are English, for integrators; a person reads
``refusal_text`` in their language, next to the form, with what they typed kept), the
names of statuses and charge methods, and reading amounts, thresholds and whole numbers
as people type them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.exceptions import HTTPException
from wtforms import (
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, Length, Optional

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.core.money import MAX_ABS_MINOR, currency_exponent, parse_amount
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.programs import LoyaltyErrorCode
from kopilka.subscribers import registry, tariffs
from kopilka.subscribers.common import DAILY, MONTHLY, ONE_TIME
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.subscribers.registry import ACTIVE, BLOCKED, DISABLED, NEW, SubscriberView
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy, ngettext
from kopilka.web.routes.front_desk import (
    Posted,
    currency_of,
    is_fragment,
    object_id,
    typed,
)
from kopilka.web.templating import money

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

SubscribersPage = Annotated[Page, Depends(require("subscribers"))]
ManagePage = Annotated[Page, Depends(require("subscribers.manage"))]
HOME = "/subscribers"
PER_PAGE = 25

STATUS_NAMES = {
    NEW: lazy("New, not activated"),
    ACTIVE: lazy("Active"),
    BLOCKED: lazy("Blocked for debt"),
    DISABLED: lazy("Switched off by the staff"),
}
METHOD_NAMES = {DAILY: lazy("Daily"), MONTHLY: lazy("Monthly"), ONE_TIME: lazy("One-time")}


# --------------------------------------------------------------------------- refusals


def _messages() -> dict[str, str]:
    """What each refusal without parameters means to a person at the desk."""
    return {
        E.INVALID_SUBSCRIBER_INPUT: _("Check what is entered."),
        E.INVALID_COMMISSION: commission_message(),
        E.TARIFF_NOT_FOUND: _("Choose a tariff from the list."),
        E.TARIFF_EXISTS: _("A tariff with this name exists already."),
        E.SERVICE_NOT_FOUND: _("Choose a promised payment service from the list."),
        E.SERVICE_EXISTS: _("A service with this name exists already."),
        E.SUBSCRIBER_NOT_FOUND: _("There is no such subscriber."),
        E.SUBSCRIBER_EXISTS: _("This account number is taken already."),
        E.SUBSCRIBER_OPERATION_CONFLICT: _("This form was sent already; reload the page."),
        E.PP_SUBSCRIBER_DISABLED: _(
            "The subscriber is switched off: a promised payment is not given."
        ),
        E.PP_NOT_ACTIVATED: _("The subscriber's service has not started yet: activate it first."),
        E.PP_SERVICE_INACTIVE: _("This service is switched off."),
        E.PP_NOT_SELF_SERVICE: _("This service cannot be ordered in the cabinet."),
        E.PP_TARIFF_NOT_ALLOWED: _("This service is not for the subscriber's tariff."),
        E.PP_ALREADY_ACTIVE: _("A promised payment is in force already."),
        E.PP_ONLY_WHEN_BLOCKED: _(
            "A promised payment is given only while the subscriber is blocked for debt."
        ),
        E.PP_NOT_NEEDED: _("The balance covers the next charge: nothing is needed."),
        E.PP_RULE_NO_TOPUP: _(
            "The account has not been topped up since the previous promised payment."
        ),
        E.PP_RULE_ONCE_A_MONTH: _(
            "A promised payment was taken this month already: the tariff allows one a month."
        ),
        E.PP_CONNECTION_UNAFFORDABLE: _(
            "The connection price does not fit even under the lowered threshold."
        ),
        LoyaltyErrorCode.INVALID_PHONE: _("Enter a phone number, such as +7 916 123-45-67."),
        LoyaltyErrorCode.INVALID_EMAIL: _("Enter an e-mail address, such as anna@example.ru."),
    }


def commission_message() -> str:
    return _("Enter a commission from 0 to 100 % with at most two decimals, such as 1 or 2,5.")


def threshold_message(exponent: int) -> str:
    return _(
        "Enter the threshold as zero or a balance below zero, such as %(example)s.",
        example=typed(-300 * 10**exponent, exponent),
    )


def _field_message(domain_field: str, exponent: int) -> str | None:
    """What is wrong with a field the domain refused (``invalid_subscriber_input``)."""
    if domain_field in ("price", "amount", "connection_price"):
        return _("Enter an amount of zero or more.")
    return {
        "account_no": _(
            "An account number is 1 to 32 latin letters or digits and the signs - _ / ."
        ),
        "full_name": _("Enter 1 to 200 characters."),
        "name": _("Enter 1 to 100 characters."),
        "threshold": threshold_message(exponent),
        "password": _("A password has at least 8 characters."),
        "tariff_id": _("This tariff is switched off; choose another."),
        "charge_method": _("Choose a charge method from the list."),
    }.get(domain_field)


def refusal_text(error: KopilkaError, currency: str) -> str:
    """A refusal of the subscriber domain in the user's language; amounts in its
    parameters written the user's way (money in ``currency``)."""
    exponent = currency_exponent(currency)
    params = error.params

    def amount_of(name: str) -> str:
        """A decimal string of the domain's ("600.00") written the user's way."""
        value = params.get(name)
        if not isinstance(value, str):
            return ""
        return i18n.format_money(parse_amount(value, exponent), currency, exponent)

    if error.code == E.INVALID_SUBSCRIBER_INPUT:
        specific = _field_message(str(params.get("field", "")), exponent)
        if specific is not None:
            return specific
    if error.code == E.SUBSCRIBER_STATE:
        status = STATUS_NAMES.get(str(params.get("status")), params.get("status"))
        return _("Not possible while the subscriber is “%(status)s”.", status=status)
    if error.code == E.PP_AMOUNT_BELOW_PRICE:
        return _(
            "The promised payment (%(amount)s) is below the tariff's price (%(price)s).",
            amount=amount_of("amount"),
            price=amount_of("price"),
        )
    if error.code == E.PP_NOT_ENOUGH:
        return _(
            "The promised payment (%(amount)s) would not bring the service back: "
            "%(needed)s is needed.",
            amount=amount_of("amount"),
            needed=amount_of("needed"),
        )
    if error.code in (E.PP_RULE_NO_RECENT_PAYMENT, E.PP_RULE_NO_RECENT_CHARGE):
        days = int(params.get("days") or 0)
        if error.code == E.PP_RULE_NO_RECENT_PAYMENT:
            return ngettext(
                "No payment in the last %(num)s day.", "No payment in the last %(num)s days.", days
            )
        return ngettext(
            "Nothing was charged in the last %(num)s day.",
            "Nothing was charged in the last %(num)s days.",
            days,
        )
    if error.code == E.PP_RULE_MONTHLY_LIMIT:
        return ngettext(
            "The tariff allows at most %(num)s promised payment a month.",
            "The tariff allows at most %(num)s promised payments a month.",
            int(params.get("limit") or 0),
        )
    if error.code == E.PP_RULE_MONTH_SINCE_PREVIOUS:
        try:
            when = i18n.format_datetime(datetime.fromisoformat(str(params.get("allowed_from"))))
        except ValueError:
            when = ""
        return _(
            "A month has not passed since the previous promised payment: the next one may "
            "be taken from %(when)s.",
            when=when,
        )
    known = _messages().get(error.code)
    return known if known is not None else _("Refused; nothing is changed.")


def refuse(
    form: WebForm,
    error: KopilkaError,
    fields: Mapping[str, str],
    currency: str,
    default: str = "",
) -> None:
    """The refusal next to its field, else by ``default`` (on top of the form when
    empty). ``fields`` maps a code, or the field an ``invalid_subscriber_input`` names,
    to the form's field."""
    key = error.code
    if error.code == E.INVALID_SUBSCRIBER_INPUT:
        key = str(error.params.get("field", ""))
    form.add_error(fields.get(key, default), refusal_text(error, currency))


def save(
    page: Page,
    form: WebForm,
    work: Callable[[Connection], T],
    fields: Mapping[str, str],
    default: str = "",
) -> T | None:
    """Runs ``work`` in one transaction; a refusal lands on the form (``None``)."""
    try:
        return run_transaction(page.engine, work)
    except KopilkaError as error:
        if error.code == E.SUBSCRIBER_NOT_FOUND:
            raise HTTPException(404) from error
        refuse(form, error, fields, page.tenant.currency, default)
        return None


# --------------------------------------------------------------------------- reading input


def _cleaned(text: object) -> str:
    """A number as people type it: spaces for grouping, a comma or a point, a real minus."""
    value = str(text or "").strip()
    for space in ("\u00a0", "\u202f", " "):
        value = value.replace(space, "")
    return value.replace(",", ".").replace("\u2212", "-")


def read_amount(form: WebForm, name: str, exponent: int) -> int | None:
    """An amount of zero or more (a price, a connection price, 0 for "automatic")."""
    try:
        value = parse_amount(_cleaned(getattr(form, name).data) or "0", exponent)
    except KopilkaError:
        value = -1
    if not 0 <= value <= MAX_ABS_MINOR:
        form.add_error(name, _("Enter an amount of zero or more."))
        return None
    return value


def read_threshold(form: WebForm, name: str, exponent: int) -> int | None:
    """A threshold typed as a balance level (``-300,00`` or ``0``): the credit limit."""
    try:
        value = parse_amount(_cleaned(getattr(form, name).data) or "0", exponent)
    except KopilkaError:
        value = 1
    if not -MAX_ABS_MINOR <= value <= 0:
        form.add_error(name, threshold_message(exponent))
        return None
    return -value


def read_count(
    form: WebForm, name: str, low: int, high: int, *, optional: bool = False
) -> tuple[bool, int | None]:
    """A whole number from ``low`` to ``high``; empty is ``None`` when ``optional``."""
    text = _cleaned(getattr(form, name).data)
    if not text and optional:
        return True, None
    if text.isascii() and text.isdigit() and len(text) <= 9 and low <= int(text) <= high:
        return True, int(text)
    if optional:
        message = _(
            "Enter a whole number from %(low)s to %(high)s, or leave it empty.", low=low, high=high
        )
    else:
        message = _("Enter a whole number from %(low)s to %(high)s.", low=low, high=high)
    form.add_error(name, message)
    return False, None


def shown_threshold(limit_minor: int, exponent: int) -> str:
    """A credit limit as the threshold people type (``-300,00``; ``0``)."""
    return typed(-limit_minor, exponent) if limit_minor else "0"


def last_day(ends_at: datetime) -> datetime:
    """The last moment a promised payment is in force (its end is the next day's start)."""
    return ends_at - timedelta(microseconds=1)


# --------------------------------------------------------------------------- the list


def _url(**args: str) -> str:
    kept = {k: v for k, v in args.items() if v}
    return HOME + (f"?{urlencode(kept)}" if kept else "")


@router.get(HOME)
def subscribers_list(
    page: SubscribersPage, q: str = "", status: str = "", after: str = ""
) -> Response:
    chosen = status if status in STATUS_NAMES else ""
    after_id = object_id(after)
    with read_only(page.engine) as conn:
        found = registry.list_subscribers(
            conn,
            page.tenant.id,
            search=q[:100] or None,
            status=chosen or None,
            after_id=after_id,
            limit=PER_PAGE + 1,
        )
        has_tariffs = bool(found) or bool(tariffs.list_tariffs(conn, page.tenant.id))
    rows = found[:PER_PAGE]
    context: dict[str, Any] = {
        "rows": rows,
        "q": q,
        "status": chosen,
        "status_names": STATUS_NAMES,
        "currency": currency_of(page),
        "next_url": _url(q=q, status=chosen, after=str(rows[-1].id))
        if len(found) > PER_PAGE
        else None,
        "first_url": _url(q=q, status=chosen) if after_id is not None else None,
    }
    if is_fragment(page.request, "subscribers"):
        return render(page, "subscribers/_rows.html", **context)
    return show(page, "list.html", has_tariffs=has_tariffs, **context)


def show(page: Page, template: str, *, status_code: int = 200, **context: Any) -> Response:
    """A screen of the subscribers' section (``subscribers/<template>``)."""
    exponent = currency_exponent(page.tenant.currency)
    return render(
        page,
        f"subscribers/{template}",
        status_code=status_code,
        active_section="subscribers",
        threshold_example=typed(-300 * 10**exponent, exponent),
        percent=lambda bp: i18n.format_number(bp, 2) + "\u00a0%",
        **context,
    )


# --------------------------------------------------------------------------- a new subscriber


class ContactsForm(WebForm):
    full_name = StringField(
        lazy("Full name"),
        validators=[DataRequired(), Length(max=registry.MAX_NAME)],
        render_kw={"maxlength": registry.MAX_NAME, "autocomplete": "off"},
    )
    phone = StringField(lazy("Phone"), validators=[Length(max=32)], render_kw={"type": "tel"})
    email = StringField(lazy("E-mail"), validators=[Length(max=254)], render_kw={"type": "email"})


class NewSubscriberForm(ContactsForm):
    account_no = StringField(
        lazy("Account number"),
        validators=[DataRequired(), Length(max=registry.MAX_ACCOUNT_NO)],
        render_kw={
            "maxlength": registry.MAX_ACCOUNT_NO,
            "autocomplete": "off",
            "spellcheck": "false",
        },
    )
    tariff_id = SelectField(lazy("Tariff"), validate_choice=False)
    threshold = StringField(lazy("Disconnection threshold"), default="0")
    password = PasswordField(
        lazy("Password for the cabinet"),
        validators=[Optional(), Length(min=8, max=200)],
        render_kw={"autocomplete": "new-password"},
    )


def tariff_choices(found: list[tariffs.TariffView], currency: Any) -> list[SelectChoice]:
    return [
        SelectChoice(
            str(t.id),
            f"{t.name} · {money(t.price_minor, currency)} · {METHOD_NAMES[t.charge_method]}",
        )
        for t in found
        if t.is_active
    ]


def _new_form(page: Page, data: Any = None) -> NewSubscriberForm:
    with read_only(page.engine) as conn:
        found = tariffs.list_tariffs(conn, page.tenant.id)
    form = NewSubscriberForm(data)
    form.tariff_id.choices = tariff_choices(found, currency_of(page))
    return form


def _new_page(page: Page, form: NewSubscriberForm, status_code: int = 200) -> Response:
    return show(page, "new.html", status_code=status_code, form=form)


NEW_FIELDS: dict[str, str] = {
    "account_no": "account_no",
    "full_name": "full_name",
    "threshold": "threshold",
    "password": "password",
    "tariff_id": "tariff_id",
    E.SUBSCRIBER_EXISTS: "account_no",
    E.TARIFF_NOT_FOUND: "tariff_id",
    LoyaltyErrorCode.INVALID_PHONE: "phone",
    LoyaltyErrorCode.INVALID_EMAIL: "email",
}


@router.get(HOME + "/new")
def subscriber_new(page: ManagePage) -> Response:
    return _new_page(page, _new_form(page))


@router.post(HOME + "/new")
def subscriber_create(page: ManagePage, posted: Posted) -> Response:
    form = _new_form(page, posted)
    valid = form.validate()
    exponent = currency_exponent(page.tenant.currency)
    limit = read_threshold(form, "threshold", exponent)
    tariff_id = object_id(form.tariff_id.data)
    if tariff_id is None:
        form.add_error("tariff_id", _("Choose a tariff from the list."))
    if not valid or form.has_errors or limit is None or tariff_id is None:
        return _new_page(page, form, 422)
    data = registry.SubscriberIn(
        account_no=str(form.account_no.data or ""),
        full_name=str(form.full_name.data or ""),
        tariff_id=tariff_id,
        phone=str(form.phone.data or "").strip() or None,
        email=str(form.email.data or "").strip() or None,
        base_limit_minor=limit,
        password=str(form.password.data or "") or None,
    )

    def work(conn: Connection) -> SubscriberView:
        made = registry.create_subscriber(
            conn, tenant_id=page.tenant.id, data=data, actor=page.actor
        )
        page.flash_next(
            conn,
            "success",
            _(
                "Subscriber %(account)s (%(name)s) is added. The service starts with the first "
                "session, or activate it here by hand.",
                account=made.account_no,
                name=made.full_name,
            ),
        )
        return made

    made = save(page, form, work, NEW_FIELDS)
    if made is None:
        return _new_page(page, form, 422)
    return redirect(f"{HOME}/{made.id}", page.request)
