"""A subscriber's card (SPEC S-1 … S-6; seed 003): the balance, the threshold now and the
staff's own, what is available, the status, activation and the next charge date, the
tariff; the promised payments taken and the history; and what the staff do:

* **Top up** (amount, how it was paid), for everyone at the desk;
* **Promised payment** (seed 003's "Обещанный платеж"): each switched-on service with
  what taking it now would cost and until when, or the reason it is refused
  (``promised.offer``); owners and administrators may set the tariff's rules (S-4) aside;
* **Activate** by hand (S-6: "указать дату активации" when no session comes);
* the credit terms, for owners and administrators: the **threshold**, the **tariff**,
  switching the subscriber **off and on**;
* the **cabinet's password** and the **contacts**.

Every money form carries an operation id made when it was shown (a hidden field): the
domain's operation id, so a form sent twice tops up or takes a promised payment once.
Every write is one transaction through ``kopilka.subscribers``; a refusal is shown next
to its form in the user's language with what was typed kept, and writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.exceptions import HTTPException
from wtforms import (
    BooleanField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, Length

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.core.money import currency_exponent
from kopilka.loyalty.programs import LoyaltyErrorCode
from kopilka.subscribers import billing, promised, registry, tariffs
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.subscribers.registry import ACTIVE, BLOCKED, NEW, SubscriberView
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.front_desk import Posted, currency_of, object_id, read_money
from kopilka.web.routes.subscribers import (
    HOME,
    METHOD_NAMES,
    STATUS_NAMES,
    ContactsForm,
    ManagePage,
    SubscribersPage,
    last_day,
    read_threshold,
    refusal_text,
    save,
    show,
    shown_threshold,
    tariff_choices,
)

router = APIRouter(include_in_schema=False)

CARD = HOME + "/{subscriber_id:int}"
HISTORY_LINES = 100

TOPUP_METHODS = {
    "cash": lazy("Cash"),
    "card": lazy("Bank card"),
    "bank_transfer": lazy("Bank transfer"),
    "other": lazy("Other"),
}
PROMISED_STATUSES = {"active": lazy("In force"), "ended": lazy("Ended"), "repaid": lazy("Repaid")}
PROMISED_SOURCES = {
    "staff": lazy("By the staff"),
    "cabinet": lazy("In the cabinet"),
    "first_session": lazy("On the first session"),
    "grace": lazy("Days to pay for a new subscriber"),
}
STATUS_REASONS = {
    "created": lazy("the subscriber is added"),
    "debt": lazy("the balance is below the threshold"),
    "top_up": lazy("a top-up"),
    "promised_payment": lazy("a promised payment"),
    "threshold": lazy("a new threshold"),
    "activated": lazy("activated by hand"),
    "first_session": lazy("the first session"),
    "disabled": lazy("switched off by the staff"),
    "enabled": lazy("switched on by the staff"),
}
# The refusals a manager may set aside with "ignore the tariff's rules" (S-4).
RULE_CODES = frozenset(
    {
        E.PP_RULE_NO_TOPUP,
        E.PP_RULE_ONCE_A_MONTH,
        E.PP_RULE_NO_RECENT_PAYMENT,
        E.PP_RULE_NO_RECENT_CHARGE,
        E.PP_RULE_MONTHLY_LIMIT,
        E.PP_RULE_MONTH_SINCE_PREVIOUS,
    }
)


# --------------------------------------------------------------------------- the card


class TopUpForm(WebForm):
    amount = StringField(
        lazy("Amount"),
        validators=[DataRequired()],
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )
    method = SelectField(
        lazy("Payment type"),
        choices=[SelectChoice(k, v) for k, v in TOPUP_METHODS.items()],
        validate_choice=False,
    )
    operation_id = HiddenField()


class PromisedForm(WebForm):
    service_id = RadioField(lazy("Promised payment service"), validate_choice=False)
    ignore_rules = BooleanField(lazy("Ignore the tariff's promised payment rules"))
    operation_id = HiddenField()


class ThresholdForm(WebForm):
    threshold = StringField(
        lazy("Disconnection threshold"),
        validators=[DataRequired()],
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )


class ChangeTariffForm(WebForm):
    tariff_id = SelectField(lazy("Tariff"), validate_choice=False)


class CabinetPasswordForm(WebForm):
    password = PasswordField(
        lazy("Password for the cabinet"),
        validators=[DataRequired(), Length(min=8, max=200)],
        render_kw={"autocomplete": "new-password"},
    )


class StatusForm(WebForm):
    """Activate, switch off, switch on: a button; its refusal is shown by it."""


def operation_of(form: TopUpForm | PromisedForm) -> str:
    """The domain's operation id of a money form: the id it was shown with."""
    shown = str(form.operation_id.data or "").strip()
    return f"staff:{shown if _well_formed(shown) else _fresh_id()}"


def _fresh_id() -> str:
    return uuid.uuid4().hex


def _well_formed(shown_id: str) -> bool:
    """An id this screen could have made (a uuid's hex), not anything a post carries."""
    return 8 <= len(shown_id) <= 64 and shown_id.isascii() and shown_id.isalnum()


@dataclass
class Forms:
    """The card's forms as they are to be shown (with what was typed, and errors)."""

    top_up: TopUpForm | None = None
    promised: PromisedForm | None = None
    threshold: ThresholdForm | None = None
    tariff: ChangeTariffForm | None = None
    password: CabinetPasswordForm | None = None
    contacts: ContactsForm | None = None
    status: StatusForm | None = None
    opened: str = ""


@dataclass
class OfferLine:
    """A service on the promised payment form: what it would do, or why not."""

    offer: promised.Offer
    refusal: str | None
    selectable: bool


@dataclass
class Card:
    sub: SubscriberView
    tariff: tariffs.TariffView
    tariffs: list[tariffs.TariffView]
    offers: list[OfferLine]
    promised: list[promised.PromisedView]
    history: list[tuple[registry.HistoryLine, str, str]]


def _load(conn: Connection, page: Page, subscriber_id: int) -> Card:
    t = page.tenant.id
    try:
        sub = registry.get_subscriber(conn, t, subscriber_id)
    except KopilkaError as error:
        raise HTTPException(404) from error
    manager = page.can("subscribers.manage")
    offers: list[OfferLine] = []
    for service in tariffs.list_services(conn, t):
        if not service.is_active:
            continue
        offer = promised.offer(
            conn, tenant_id=t, subscriber_id=sub.id, service_id=service.id, source="staff"
        )
        refusal = offer.refusal
        text = None if refusal is None else refusal_text(refusal, page.tenant.currency)
        selectable = refusal is None or (manager and refusal.code in RULE_CODES)
        offers.append(OfferLine(offer, text, selectable))
    return Card(
        sub=sub,
        tariff=tariffs.get_tariff(conn, t, sub.tariff_id),
        tariffs=tariffs.list_tariffs(conn, t),
        offers=offers,
        promised=promised.list_promised(conn, t, sub.id),
        history=[
            (line, *_history_text(line, page))
            for line in registry.history(conn, t, sub.id, limit=HISTORY_LINES)
        ],
    )


def _history_text(line: registry.HistoryLine, page: Page) -> tuple[str, str]:
    """What a line of the history is called and its details, in the user's language."""
    currency, exponent = page.tenant.currency, currency_exponent(page.tenant.currency)
    d = line.details
    number = d.get("promised_payment_id")
    if line.kind == "top_up":
        return _("Top-up"), str(TOPUP_METHODS.get(line.description, line.description))
    if line.kind == "tariff":
        start, stop = d.get("period_start"), d.get("period_end")
        if not start:
            return _("Tariff charge"), ""
        first = datetime.fromisoformat(start).date()
        if not stop:
            return _("Tariff charge"), _("one-time, %(day)s", day=i18n.format_date(first))
        last = datetime.fromisoformat(stop).date() - timedelta(days=1)
        if last <= first:
            return _("Tariff charge"), i18n.format_date(first)
        period = f"{i18n.format_date(first)} – {i18n.format_date(last)}"
        return _("Tariff charge"), period
    if line.kind == "connection":
        return _("Connection of a promised payment"), _("No. %(number)s", number=number)
    if line.kind == "commission":
        return _("Commission of a promised payment"), _("No. %(number)s", number=number)
    if line.kind == "promised_taken":
        amount = i18n.format_money(int(d.get("amount_minor") or 0), currency, exponent)
        ends = last_day(datetime.fromisoformat(str(d.get("ends_at"))))
        source = PROMISED_SOURCES.get(str(d.get("source")), d.get("source"))
        text = _(
            "No. %(number)s: %(amount)s to %(day)s inclusive (%(source)s)",
            number=number,
            amount=amount,
            day=i18n.format_date(ends),
            source=source,
        )
        return _("Promised payment taken"), text
    if line.kind == "promised_ended":
        label = (
            _("Promised payment repaid")
            if d.get("how") == "repaid"
            else _("Promised payment ended")
        )
        commission = int(d.get("commission_minor") or 0)
        if commission:
            text = _(
                "No. %(number)s, commission %(amount)s",
                number=number,
                amount=i18n.format_money(commission, currency, exponent),
            )
        else:
            text = _("No. %(number)s", number=number)
        return label, text
    if line.kind == "status":
        to = STATUS_NAMES.get(str(d.get("to")), d.get("to"))
        reason = STATUS_REASONS.get(str(d.get("reason")), d.get("reason"))
        return _("Status: %(status)s", status=to), str(reason or "")
    return line.kind, line.description


def _fresh_forms(card: Card, page: Page, forms: Forms) -> dict[str, Any]:
    """Every form of the card: the one sent back as it was, the others new."""
    exponent = currency_exponent(page.tenant.currency)
    top_up = forms.top_up or TopUpForm(prefix="topup", operation_id=_fresh_id())
    pp = forms.promised
    if pp is None:
        first = next((x for x in card.offers if x.refusal is None), None)
        pp = PromisedForm(
            prefix="pp",
            operation_id=_fresh_id(),
            service_id=str(first.offer.service.id) if first else None,
        )
    pp.service_id.choices = [
        SelectChoice(str(x.offer.service.id), x.offer.service.name) for x in card.offers
    ]
    threshold = forms.threshold or ThresholdForm(
        prefix="threshold", threshold=shown_threshold(card.sub.base_limit_minor, exponent)
    )
    tariff = forms.tariff or ChangeTariffForm(prefix="tariff", tariff_id=str(card.sub.tariff_id))
    tariff.tariff_id.choices = tariff_choices(card.tariffs, currency_of(page))
    contacts = forms.contacts or ContactsForm(
        prefix="contacts",
        full_name=card.sub.full_name,
        phone=card.sub.phone or "",
        email=card.sub.email or "",
    )
    return {
        "top_up": top_up,
        "pp": pp,
        "threshold_form": threshold,
        "tariff_form": tariff,
        "password_form": forms.password or CabinetPasswordForm(prefix="password"),
        "contacts": contacts,
        "status_form": forms.status or StatusForm(prefix="status"),
        "opened": forms.opened,
    }


def card_page(
    page: Page, subscriber_id: int, forms: Forms | None = None, status_code: int = 200
) -> Response:
    with read_only(page.engine) as conn:
        card = _load(conn, page, subscriber_id)
    return show(
        page,
        "card.html",
        status_code=status_code,
        card=card,
        sub=card.sub,
        currency=currency_of(page),
        status_names=STATUS_NAMES,
        method_names=METHOD_NAMES,
        promised_statuses=PROMISED_STATUSES,
        promised_sources=PROMISED_SOURCES,
        last_day=last_day,
        manager=page.can("subscribers.manage"),
        **_fresh_forms(card, page, forms or Forms()),
    )


@router.get(CARD)
def subscriber_card(page: SubscribersPage, subscriber_id: int) -> Response:
    return card_page(page, subscriber_id)


def _back(subscriber_id: int, anchor: str = "") -> str:
    return f"{HOME}/{subscriber_id}" + (f"#{anchor}" if anchor else "")


def _money(page: Page, amount_minor: int) -> str:
    currency = page.tenant.currency
    return i18n.format_money(amount_minor, currency, currency_exponent(currency))


def _flash_status_change(page: Page, conn: Connection, before: str, after: str) -> None:
    if before != ACTIVE and after == ACTIVE and before != NEW:
        page.flash_next(conn, "success", _("The subscriber is back in service."))
    elif before != BLOCKED and after == BLOCKED:
        page.flash_next(
            conn,
            "warning",
            _("The balance does not cover the charge due: the subscriber is blocked for debt."),
        )


# --------------------------------------------------------------------------- money


@router.post(CARD + "/top-up")
def subscriber_top_up(page: SubscribersPage, subscriber_id: int, posted: Posted) -> Response:
    form = TopUpForm(posted, prefix="topup")
    valid = form.validate()
    exponent = currency_exponent(page.tenant.currency)
    amount = read_money(form, "amount", exponent) if form.amount.data else None
    method = str(form.method.data or "")
    if method not in TOPUP_METHODS:
        form.add_error("method", _("Choose from the list."))
    if valid and amount is not None and not form.has_errors:
        t = page.tenant.id

        def work(conn: Connection) -> billing.TopUpView:
            before = registry.get_subscriber(conn, t, subscriber_id)
            done = billing.top_up(
                conn,
                tenant_id=t,
                subscriber_id=subscriber_id,
                amount_minor=amount,
                operation_id=operation_of(form),
                method=method,
                actor=page.actor,
            )
            if done.replayed:
                page.flash_next(
                    conn, "info", _("This top-up was made already: the form was sent twice.")
                )
                return done
            after = registry.get_subscriber(conn, t, subscriber_id)
            page.flash_next(
                conn,
                "success",
                _("A top-up of %(amount)s is made.", amount=_money(page, done.amount_minor)),
            )
            _flash_status_change(page, conn, before.status, after.status)
            return done

        if save(page, form, work, {"amount": "amount"}) is not None:
            return redirect(_back(subscriber_id), page.request)
    return card_page(page, subscriber_id, Forms(top_up=form, opened="top-up"), 422)


@router.post(CARD + "/promised")
def subscriber_take_promised(page: SubscribersPage, subscriber_id: int, posted: Posted) -> Response:
    form = PromisedForm(posted, prefix="pp")
    service_id = object_id(form.service_id.data)
    if service_id is None:
        form.add_error("service_id", _("Choose a promised payment service from the list."))
    # Only the credit terms' managers may set the tariff's rules aside.
    ignore_rules = bool(form.ignore_rules.data) and page.can("subscribers.manage")
    if service_id is not None:
        t = page.tenant.id

        def work(conn: Connection) -> promised.PromisedView:
            before = registry.get_subscriber(conn, t, subscriber_id)
            taken = promised.take(
                conn,
                tenant_id=t,
                subscriber_id=subscriber_id,
                service_id=service_id,
                operation_id=operation_of(form),
                actor=page.actor,
                source="staff",
                ignore_rules=ignore_rules,
            )
            if taken.replayed:
                page.flash_next(
                    conn,
                    "info",
                    _("This promised payment was taken already: the form was sent twice."),
                )
                return taken
            after = registry.get_subscriber(conn, t, subscriber_id)
            page.flash_next(
                conn,
                "success",
                _(
                    "A promised payment of %(amount)s is taken, in force to %(day)s inclusive; "
                    "the threshold is now %(threshold)s.",
                    amount=_money(page, taken.amount_minor),
                    day=i18n.format_date(last_day(taken.ends_at)),
                    threshold=_money(page, after.threshold_minor),
                ),
            )
            _flash_status_change(page, conn, before.status, after.status)
            return taken

        # Every refusal of a promised payment is about the service chosen for it.
        if save(page, form, work, {}, default="service_id") is not None:
            return redirect(_back(subscriber_id), page.request)
    return card_page(page, subscriber_id, Forms(promised=form, opened="promised"), 422)


# --------------------------------------------------------------------------- status


def _status_action(page: Page, subscriber_id: int, verb: Callable[[Connection], str]) -> Response:
    """Activate, switch off or on; back to the card, or the card with the refusal."""
    form = StatusForm(prefix="status")
    t = page.tenant.id

    def work(conn: Connection) -> bool:
        before = registry.get_subscriber(conn, t, subscriber_id).status
        page.flash_next(conn, "success", verb(conn))
        after = registry.get_subscriber(conn, t, subscriber_id).status
        _flash_status_change(page, conn, before, after)
        return True

    if save(page, form, work, {}) is not None:
        return redirect(_back(subscriber_id), page.request)
    return card_page(page, subscriber_id, Forms(status=form, opened="status"), 422)


@router.post(CARD + "/activate")
def subscriber_activate(page: SubscribersPage, subscriber_id: int) -> Response:
    def verb(conn: Connection) -> str:
        billing.activate(
            conn, tenant_id=page.tenant.id, subscriber_id=subscriber_id, actor=page.actor
        )
        return _("The service is started.")

    return _status_action(page, subscriber_id, verb)


@router.post(CARD + "/disable")
def subscriber_disable(page: ManagePage, subscriber_id: int) -> Response:
    def verb(conn: Connection) -> str:
        billing.disable(
            conn, tenant_id=page.tenant.id, subscriber_id=subscriber_id, actor=page.actor
        )
        return _("The subscriber is switched off: nothing is charged.")

    return _status_action(page, subscriber_id, verb)


@router.post(CARD + "/enable")
def subscriber_enable(page: ManagePage, subscriber_id: int) -> Response:
    def verb(conn: Connection) -> str:
        billing.enable(
            conn, tenant_id=page.tenant.id, subscriber_id=subscriber_id, actor=page.actor
        )
        return _("The subscriber is switched on.")

    return _status_action(page, subscriber_id, verb)


# --------------------------------------------------------------------------- terms


@router.post(CARD + "/threshold")
def subscriber_threshold(page: ManagePage, subscriber_id: int, posted: Posted) -> Response:
    form = ThresholdForm(posted, prefix="threshold")
    valid = form.validate()
    limit = read_threshold(form, "threshold", currency_exponent(page.tenant.currency))
    if valid and limit is not None:
        t = page.tenant.id

        def work(conn: Connection) -> bool:
            before = registry.get_subscriber(conn, t, subscriber_id).status
            billing.set_threshold(
                conn,
                tenant_id=t,
                subscriber_id=subscriber_id,
                base_limit_minor=limit,
                actor=page.actor,
            )
            after = registry.get_subscriber(conn, t, subscriber_id)
            page.flash_next(
                conn,
                "success",
                _(
                    "The threshold is set to %(threshold)s.",
                    threshold=_money(page, after.base_threshold_minor),
                ),
            )
            _flash_status_change(page, conn, before, after.status)
            return True

        if save(page, form, work, {"threshold": "threshold"}) is not None:
            return redirect(_back(subscriber_id), page.request)
    return card_page(page, subscriber_id, Forms(threshold=form, opened="threshold"), 422)


@router.post(CARD + "/tariff")
def subscriber_tariff(page: ManagePage, subscriber_id: int, posted: Posted) -> Response:
    form = ChangeTariffForm(posted, prefix="tariff")
    tariff_id = object_id(form.tariff_id.data)
    if tariff_id is None:
        form.add_error("tariff_id", _("Choose a tariff from the list."))
    else:
        t = page.tenant.id

        def work(conn: Connection) -> bool:
            billing.change_tariff(
                conn,
                tenant_id=t,
                subscriber_id=subscriber_id,
                tariff_id=tariff_id,
                actor=page.actor,
            )
            name = tariffs.get_tariff(conn, t, tariff_id).name
            page.flash_next(
                conn,
                "success",
                _("The tariff is now “%(name)s”, charged from the next period.", name=name),
            )
            return True

        fields: dict[str, str] = {"tariff_id": "tariff_id", E.TARIFF_NOT_FOUND: "tariff_id"}
        if save(page, form, work, fields) is not None:
            return redirect(_back(subscriber_id), page.request)
    return card_page(page, subscriber_id, Forms(tariff=form, opened="tariff"), 422)


# --------------------------------------------------------------------------- the person


@router.post(CARD + "/password")
def subscriber_password(page: SubscribersPage, subscriber_id: int, posted: Posted) -> Response:
    form = CabinetPasswordForm(posted, prefix="password")
    if form.validate():
        password = str(form.password.data or "")

        def work(conn: Connection) -> bool:
            registry.set_password(
                conn,
                tenant_id=page.tenant.id,
                subscriber_id=subscriber_id,
                password=password,
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("The password for the cabinet is set."))
            return True

        if save(page, form, work, {"password": "password"}) is not None:
            return redirect(_back(subscriber_id), page.request)
    form.password.data = ""  # a password is never sent back to the browser
    return card_page(page, subscriber_id, Forms(password=form, opened="password"), 422)


@router.post(CARD + "/contacts")
def subscriber_contacts(page: SubscribersPage, subscriber_id: int, posted: Posted) -> Response:
    form = ContactsForm(posted, prefix="contacts")
    if form.validate():

        def work(conn: Connection) -> SubscriberView:
            done = registry.update_contacts(
                conn,
                tenant_id=page.tenant.id,
                subscriber_id=subscriber_id,
                full_name=str(form.full_name.data or ""),
                phone=str(form.phone.data or "").strip() or None,
                email=str(form.email.data or "").strip() or None,
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("The contacts are saved."))
            return done

        fields: dict[str, str] = {
            "full_name": "full_name",
            LoyaltyErrorCode.INVALID_PHONE: "phone",
            LoyaltyErrorCode.INVALID_EMAIL: "email",
        }
        if save(page, form, work, fields) is not None:
            return redirect(_back(subscriber_id), page.request)
    return card_page(page, subscriber_id, Forms(contacts=form, opened="contacts"), 422)
