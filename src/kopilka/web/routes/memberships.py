"""Memberships sold online at the desk (SPEC M-6, M-7; seed 004): the memberships sold and
not yet attached, finding one by its number or activation code (typed or scanned), and
attaching it to a visitor: the visitor found by name or phone as one types (or added on
the spot), the groups it admits to, the classes booked on it (optional), its validity.

Roles with the ``memberships`` permission come in (owner, administrator, cashier, front
desk). Refunds are ``memberships_refunds`` (owners and administrators), the visitors'
profiles ``memberships_visitors``, the online sale's settings, types, groups and classes
``memberships_settings``.

Every write is one transaction through ``kopilka.memberships``; a refusal is shown next
to its field in the user's language with what was typed kept, and writes nothing (a
visitor added on the spot is not added when the attaching is refused).

This module also holds what the membership screens share: the page dependencies, the
frame, the names of statuses and providers, and the refusal texts of every code of
``kopilka.memberships.error_codes`` (the domain's details are English, for integrators).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.exceptions import HTTPException
from wtforms import SelectMultipleField, StringField
from wtforms.validators import Length

from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.core.money import currency_exponent, parse_amount
from kopilka.core.settings import get_settings as server_settings
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.programs import LoyaltyErrorCode
from kopilka.memberships import attaching, catalogue
from kopilka.memberships.attaching import MembershipView
from kopilka.memberships.error_codes import MembershipErrorCode as E
from kopilka.memberships.providers.error_codes import ProviderErrorCode
from kopilka.memberships.sales import OrderView, get_order
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.front_desk import Posted, is_fragment, object_id, read_date, today
from kopilka.web.routes.subscribers import commission_message

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

DeskPage = Annotated[Page, Depends(require("memberships"))]
HOME = "/memberships"
ONE = HOME + "/{membership_id:int}"
PER_PAGE = 50
MAX_SUGGESTIONS = 10
MAX_CLASSES_SHOWN = 200

STATUS_NAMES = {
    "unattached": lazy("Not attached"),
    "attached": lazy("Attached"),
    "refunded": lazy("Refunded in full"),
}
ORDER_STATUSES = {
    "created": lazy("Created"),
    "pending": lazy("Waiting for payment"),
    "paid": lazy("Paid"),
    "canceled": lazy("Canceled"),
    "refunded": lazy("Refunded"),
}
REFUND_STATUSES = {
    "pending": lazy("Waiting for the provider"),
    "succeeded": lazy("Made"),
    "canceled": lazy("Declined by the provider"),
}
# The names of two products: Stripe's is the same in every language, YooKassa's not.
PROVIDER_NAMES = {
    "sandbox": lazy("Sandbox (for trying it out)"),
    "yookassa": lazy("YooKassa"),
    "stripe": "Stripe",
}
# The section's tabs: (key, permission, address, label).
SECTION_TABS = (
    ("list", "memberships", HOME, lazy("Memberships sold")),
    ("visitors", "memberships", HOME + "/visitors", lazy("Visitors")),
    ("refunds", "memberships.refunds", HOME + "/refunds", lazy("Refunds")),
)
# The list's filter: "" is the memberships not attached yet, as the seed's list shows.
LIST_FILTERS = {"": "unattached", "attached": "attached", "refunded": "refunded", "all": None}


# --------------------------------------------------------------------------- refusals


def _messages() -> dict[str, str]:
    """What each refusal means to a person at the desk (codes without parameters)."""
    return {
        E.INVALID_MEMBERSHIP_INPUT: _("Check what is entered."),
        E.INVALID_COMMISSION: commission_message(),
        E.MEMBERSHIP_TYPE_NOT_FOUND: _("Choose a membership type from the list."),
        E.MEMBERSHIP_TYPE_EXISTS: _("A membership type with this name exists already."),
        E.NOT_SOLD_ONLINE: _("This membership type is not sold online."),
        E.ONLINE_SALE_OFF: _("The online sale of memberships is switched off."),
        E.INVALID_EMAIL: _("Enter an e-mail address, such as anna@example.ru."),
        E.ORDER_NOT_FOUND: _("There is no such order."),
        E.PAYMENT_NOT_FOUND: _("No order has this payment."),
        E.PAYMENT_MISMATCH: _("The provider's payment is not this order's: nothing is recorded."),
        E.FORGED_NOTIFICATION: _("The payment provider does not vouch for this notification."),
        E.PROVIDER_UNAVAILABLE: _(
            "The payment provider did not answer: the refund is waiting. Try again in a while."
        ),
        E.PROVIDER_REFUSED: _(
            "The payment provider refused the refund: nothing was refunded. "
            "Check the payment in the provider's account."
        ),
        E.GROUP_EXISTS: _("A group with this name exists already."),
        E.MEMBERSHIP_NOT_FOUND: _("There is no membership with this number or activation code."),
        E.MEMBERSHIP_STATE: _("The membership is refunded: it cannot be attached."),
        E.CODE_USED: _("This membership is attached already: its activation code is used."),
        E.GROUP_NOT_FOUND: _("Choose groups from the list."),
        E.CLASS_NOT_FOUND: _("Book only classes of the chosen groups."),
        E.VISITOR_NOT_FOUND: _("Choose a visitor from the list."),
        E.ORDER_NOT_PAID: _("The payment is refunded whole already: nothing is left to refund."),
        E.MEMBERSHIP_OPERATION_CONFLICT: _("This form was sent already; reload the page."),
        E.TOO_MANY_CHECKOUTS: _(
            "Too many payments were started from one address lately; try again in a few minutes."
        ),
        LoyaltyErrorCode.INVALID_PHONE: _("Enter a phone number, such as +7 916 123-45-67."),
        ProviderErrorCode.INVALID_PROVIDER_CONFIG: _("Check the payment provider's settings."),
        ProviderErrorCode.UNKNOWN_PROVIDER: _("Choose a payment provider from the list."),
    }


# The whole numbers of the button's design, as the domain checks them (``ButtonDesign``).
DESIGN_LIMITS: dict[str, tuple[int, int]] = {
    "text_size": (8, 72),
    "border_width": (0, 20),
    "radius": (0, 100),
    "width": (40, 1000),
    "height": (16, 300),
}
COLOUR_FIELDS = ("text_color", "bg_color", "border_color")


def colour_message() -> str:
    return _("Enter a colour such as #2f6fdf.")


def _field_message(domain_field: str) -> str | None:
    """What is wrong with a field the domain refused (``invalid_membership_input``)."""
    if domain_field in COLOUR_FIELDS:
        return colour_message()
    if domain_field in DESIGN_LIMITS:
        low, high = DESIGN_LIMITS[domain_field]
        return _("Enter a whole number from %(low)s to %(high)s.", low=low, high=high)
    return {
        "name": _("Enter 1 to 100 characters."),
        "full_name": _("Enter 1 to 200 characters."),
        "price": _("Enter an amount above zero."),
        "amount": _("Enter an amount above zero."),
        "validity_days": _("Enter a whole number from %(low)s to %(high)s.", low=1, high=3660),
        "classes": _(
            "Enter a whole number from %(low)s to %(high)s, or leave it empty.", low=1, high=10000
        ),
        "minutes": _("Enter a whole number from %(low)s to %(high)s.", low=1, high=1440),
        "capacity": _(
            "Enter a whole number from %(low)s to %(high)s, or leave it empty.", low=1, high=10000
        ),
        "sell_online": _("Only permanent membership types are sold online."),
        "button_text": _("A type sold online needs its button's text: 1 to 100 characters."),
        "provider": _("Choose a payment provider from the list."),
        "provider_config": _("Check the payment provider's settings."),
        "group_ids": _("Choose at least one group."),
        "valid_until": _("The validity ends before it starts."),
        "class_ids": _("More classes are booked than the membership has."),
    }.get(domain_field)


def _shown_amount(text: object, currency: str) -> str:
    """A decimal string of an error's parameters ("4120.00") written the user's way."""
    exponent = currency_exponent(currency)
    try:
        minor = parse_amount(str(text or "0"), exponent)
    except KopilkaError:
        return str(text)
    return i18n.format_money(minor, currency, exponent)


def refusal_text(error: KopilkaError, currency: str) -> str:
    """A refusal of the membership domain in the user's language."""
    if error.code == E.INVALID_MEMBERSHIP_INPUT:
        specific = _field_message(str(error.params.get("field", "")))
        if specific is not None:
            return specific
    if error.code == E.REFUND_TOO_LARGE:
        return _(
            "At most %(amount)s can be given back.",
            amount=_shown_amount(error.params.get("available"), currency),
        )
    known = _messages().get(error.code)
    return known if known is not None else _("Refused: %(detail)s", detail=error.detail)


def refuse(form: WebForm, error: KopilkaError, fields: Mapping[str, str], currency: str) -> None:
    """The refusal next to its field, else on top of the form. ``fields`` maps a code, or
    the field an ``invalid_membership_input`` names, to the form's field."""
    key = error.code
    if error.code == E.INVALID_MEMBERSHIP_INPUT:
        key = str(error.params.get("field", "")) or key
    form.add_error(fields.get(key, fields.get(error.code, "")), refusal_text(error, currency))


def save(
    page: Page, form: WebForm, work: Callable[[Connection], T], fields: Mapping[str, str]
) -> T | None:
    """Runs ``work`` in one transaction; a refusal lands on the form (``None``)."""
    try:
        return run_transaction(page.engine, work)
    except KopilkaError as error:
        if error.code in (E.MEMBERSHIP_NOT_FOUND, E.ORDER_NOT_FOUND) and error.code not in fields:
            raise HTTPException(404) from error
        refuse(form, error, fields, page.tenant.currency)
        return None


# --------------------------------------------------------------------------- shared


def currency_ns(code: str) -> SimpleNamespace:
    """What ``money()`` in a template needs for a currency."""
    return SimpleNamespace(code=code, exponent=currency_exponent(code), kind="currency", name="")


def show(
    page: Page, template: str, *, status_code: int = 200, tab: str = "list", **context: Any
) -> Response:
    """A screen of the memberships' section (``memberships/<template>``)."""
    tabs = [
        (key, label, href) for key, permission, href, label in SECTION_TABS if page.can(permission)
    ]
    return render(
        page,
        f"memberships/{template}",
        status_code=status_code,
        active_section="memberships",
        tabs=tabs,
        tab=tab,
        status_names=STATUS_NAMES,
        order_statuses=ORDER_STATUSES,
        refund_statuses=REFUND_STATUSES,
        provider_names=PROVIDER_NAMES,
        percent=lambda bp: i18n.format_number(bp, 2) + "\u00a0%",
        **context,
    )


def public_base(page: Page) -> str:
    """Kopilka's address as clients and providers reach it: ``KOPILKA_PUBLIC_URL``, else
    the address this screen was opened at."""
    return (server_settings().public_url or str(page.request.base_url)).rstrip("/")


def membership_of(conn: Connection, page: Page, membership_id: int) -> MembershipView:
    try:
        return attaching.get_membership(conn, page.tenant.id, membership_id)
    except KopilkaError as error:
        raise HTTPException(404) from error


def order_of(conn: Connection, page: Page, membership: MembershipView) -> OrderView | None:
    if membership.order_id is None:
        return None
    return get_order(conn, page.tenant.id, membership.order_id)


def names_of_visitors(conn: Connection, page: Page, rows: list[MembershipView]) -> dict[int, str]:
    found: dict[int, str] = {}
    for visitor_id in {m.visitor_id for m in rows if m.visitor_id is not None}:
        found[visitor_id] = catalogue.get_visitor(conn, page.tenant.id, visitor_id).full_name
    return found


# --------------------------------------------------------------------------- the list


def _list_url(**args: str) -> str:
    kept = {k: v for k, v in args.items() if v}
    return HOME + (f"?{urlencode(kept)}" if kept else "")


def list_page(
    page: Page, *, status: str = "", after: str = "", q: str = "", error: str = ""
) -> Response:
    chosen = status if status in LIST_FILTERS else ""
    after_id = object_id(after)
    with read_only(page.engine) as conn:
        found = attaching.list_memberships(
            conn,
            page.tenant.id,
            status=LIST_FILTERS[chosen],
            after_id=after_id,
            limit=PER_PAGE + 1,
        )
        rows = found[:PER_PAGE]
        visitors = names_of_visitors(conn, page, rows)
    return show(
        page,
        "list.html",
        status_code=200,
        rows=rows,
        visitors=visitors,
        status=chosen,
        q=q,
        find_error=error,
        currency=currency_ns(page.tenant.currency),
        next_url=_list_url(status=chosen, after=str(rows[-1].id))
        if len(found) > PER_PAGE
        else None,
        first_url=_list_url(status=chosen) if after_id is not None else None,
    )


@router.get(HOME)
def memberships_list(page: DeskPage, status: str = "", after: str = "") -> Response:
    return list_page(page, status=status, after=after)


@router.get(HOME + "/find")
def membership_find(page: DeskPage, q: str = "") -> Response:
    """A number or an activation code, typed or scanned: straight to that membership."""
    text = q.strip()[:100]
    if not text:
        return list_page(page, q=q, error=_("Type or scan the membership's number or code."))
    with read_only(page.engine) as conn:
        try:
            found = attaching.find_membership(conn, page.tenant.id, text)
        except KopilkaError as error:
            return list_page(page, q=q, error=refusal_text(error, page.tenant.currency))
    return redirect(f"{HOME}/{found.id}")


# --------------------------------------------------------------------------- attaching


class AttachForm(WebForm):
    visitor_q = StringField(
        lazy("Visitor's name or phone"),
        validators=[Length(max=100)],
        render_kw={"autocomplete": "off", "type": "search"},
    )
    visitor_id = StringField()  # the visitor chosen among those found (radio buttons)
    new_name = StringField(
        lazy("Full name"), validators=[Length(max=200)], render_kw={"autocomplete": "off"}
    )
    new_phone = StringField(
        lazy("Phone"), validators=[Length(max=32)], render_kw={"type": "tel", "autocomplete": "off"}
    )
    new_email = StringField(
        lazy("E-mail"),
        validators=[Length(max=254)],
        render_kw={"type": "email", "autocomplete": "off"},
    )
    group_ids = SelectMultipleField(lazy("Groups"), validate_choice=False)
    class_ids = SelectMultipleField(lazy("Classes to book"), validate_choice=False)
    valid_from = StringField(lazy("Valid from"), render_kw={"type": "date"})
    valid_until = StringField(lazy("Valid until"), render_kw={"type": "date"})


ATTACH_FIELDS: dict[str, str] = {
    E.VISITOR_NOT_FOUND: "visitor_id",
    E.GROUP_NOT_FOUND: "group_ids",
    E.CLASS_NOT_FOUND: "class_ids",
    "group_ids": "group_ids",
    "class_ids": "class_ids",
    "valid_until": "valid_until",
    "full_name": "new_name",
    LoyaltyErrorCode.INVALID_PHONE: "new_phone",
    E.INVALID_EMAIL: "new_email",
}


@dataclass
class AttachChoices:
    """What the attach form offers: the visitors found, the groups, the classes of the
    groups chosen (from today on)."""

    visitors: list[catalogue.VisitorView]
    groups: list[catalogue.GroupView]
    classes: list[catalogue.ClassView]
    chosen_groups: set[str]
    chosen_classes: set[str]
    chosen_visitor: str


def _ids(values: object) -> list[int]:
    found = [object_id(v) for v in (values if isinstance(values, list) else [])]
    return sorted({x for x in found if x is not None})


def _choices(conn: Connection, page: Page, form: AttachForm) -> AttachChoices:
    t = page.tenant.id
    visitors = catalogue.find_visitors(
        conn, t, str(form.visitor_q.data or "")[:100], limit=MAX_SUGGESTIONS
    )
    chosen_visitor = str(form.visitor_id.data or "")
    picked = object_id(chosen_visitor)
    if picked is not None and all(v.id != picked for v in visitors):
        # The visitor chosen before the search changed stays offered (and chosen).
        try:
            visitors.insert(0, catalogue.get_visitor(conn, t, picked))
        except KopilkaError:
            chosen_visitor = ""
    groups = [g for g in catalogue.list_groups(conn, t) if g.is_active]
    group_ids = [g for g in _ids(form.group_ids.data) if any(x.id == g for x in groups)]
    since = datetime.combine(today(), datetime.min.time(), i18n.current_zone())
    classes = (
        catalogue.list_classes(conn, t, group_ids=group_ids, since=since)[:MAX_CLASSES_SHOWN]
        if group_ids
        else []
    )
    return AttachChoices(
        visitors=visitors,
        groups=groups,
        classes=classes,
        chosen_groups={str(g) for g in group_ids},
        chosen_classes={str(c) for c in _ids(form.class_ids.data)},
        chosen_visitor=chosen_visitor,
    )


def _fresh_attach_form(membership: MembershipView) -> AttachForm:
    start = today()
    return AttachForm(
        valid_from=start.isoformat(),
        valid_until=(start + timedelta(days=membership.validity_days - 1)).isoformat(),
    )


def membership_page(
    page: Page,
    membership_id: int,
    form: AttachForm | None = None,
    status_code: int = 200,
) -> Response:
    with read_only(page.engine) as conn:
        membership = membership_of(conn, page, membership_id)
        order = order_of(conn, page, membership)
        visitor = (
            catalogue.get_visitor(conn, page.tenant.id, membership.visitor_id)
            if membership.visitor_id is not None
            else None
        )
        group_names = {g.id: g.name for g in catalogue.list_groups(conn, page.tenant.id)}
        booked = (
            catalogue.list_classes(
                conn, page.tenant.id, class_ids=list(membership.booked_class_ids)
            )
            if membership.booked_class_ids
            else []
        )
        attach_form = None
        choices = None
        refusals: list[str] = []
        if membership.status == "unattached":
            attach_form = form or _fresh_attach_form(membership)
            choices = _choices(conn, page, attach_form)
        elif form is not None:
            # Attached or refunded meanwhile: no form to show, only why it was refused.
            refusals = [*form.form_errors, *(e for f in form for e in f.errors)]
    return show(
        page,
        "membership.html",
        status_code=status_code,
        m=membership,
        order=order,
        visitor=visitor,
        group_names=group_names,
        booked=booked,
        form=attach_form,
        choices=choices,
        refusals=refusals,
        currency=currency_ns(order.currency if order else page.tenant.currency),
    )


@router.get(ONE)
def membership_view(page: DeskPage, membership_id: int) -> Response:
    return membership_page(page, membership_id)


@router.post(ONE + "/choices")
def attach_choices(page: DeskPage, membership_id: int, posted: Posted) -> Response:
    """The visitors found and the classes of the groups chosen, again, as the form
    changes (htmx asks for one part; without scripts, the whole page comes back)."""
    form = AttachForm(posted)
    target = page.request.headers.get("HX-Target", "")
    if target in ("visitor-choices", "class-choices") and is_fragment(page.request, target):
        with read_only(page.engine) as conn:
            membership_of(conn, page, membership_id)
            choices = _choices(conn, page, form)
        template = "_visitor_choices.html" if target == "visitor-choices" else "_class_choices.html"
        return show(page, template, form=form, choices=choices)
    return membership_page(page, membership_id, form)


def _read_attach(form: AttachForm) -> tuple[date | None, date | None]:
    form.validate()
    if object_id(form.visitor_id.data) is None and not str(form.new_name.data or "").strip():
        form.add_error(
            "visitor_id",
            _("Choose a visitor found by name or phone, or enter a new visitor's name."),
        )
    if not _ids(form.group_ids.data):
        form.add_error("group_ids", _("Choose at least one group."))
    start = read_date(form, "valid_from")
    until = read_date(form, "valid_until")
    if start and until and until < start:
        form.add_error("valid_until", _("The validity ends before it starts."))
    return start, until


@router.post(ONE + "/attach")
def membership_attach(page: DeskPage, membership_id: int, posted: Posted) -> Response:
    form = AttachForm(posted)
    start, until = _read_attach(form)
    if form.has_errors or start is None or until is None:
        return membership_page(page, membership_id, form, 422)
    t, actor = page.tenant.id, page.actor
    picked = object_id(form.visitor_id.data)

    def work(conn: Connection) -> tuple[MembershipView, catalogue.VisitorView]:
        if picked is not None:
            visitor = catalogue.get_visitor(conn, t, picked)
        else:
            visitor = catalogue.create_visitor(
                conn,
                tenant_id=t,
                full_name=str(form.new_name.data or ""),
                phone=str(form.new_phone.data or "").strip() or None,
                email=str(form.new_email.data or "").strip() or None,
                actor=actor,
            )
        done = attaching.attach(
            conn,
            tenant_id=t,
            membership_id=membership_id,
            visitor_id=visitor.id,
            group_ids=_ids(form.group_ids.data),
            class_ids=_ids(form.class_ids.data),
            valid_from=start,
            valid_until=until,
            actor=actor,
            now=utcnow(),
        )
        page.flash_next(
            conn,
            "success",
            _(
                "Membership %(number)s, valid %(start)s – %(until)s, is attached to %(name)s.",
                number=done.number,
                name=visitor.full_name,
                start=i18n.format_date(start),
                until=i18n.format_date(until),
            ),
        )
        return done, visitor

    done = save(page, form, work, ATTACH_FIELDS)
    if done is None:
        return membership_page(page, membership_id, form, 422)
    return redirect(f"{HOME}/visitors/{done[1].id}", page.request)
