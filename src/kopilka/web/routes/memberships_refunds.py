"""Refunds of memberships sold online (SPEC M-7; seed 004 "Возврат платежей"): owners and
administrators find the membership (its number or activation code, typed or scanned, or
the client's e-mail), see its payment first (the provider, the provider's payment id,
what was paid with the commission, what is refunded already and each refund), type the
amount (what is left, unless less is given back), confirm it on a second page and the
money goes back through the provider to the card it came from
(``refunds.refund_through_provider``).

The refund form carries an operation id made when it was shown, and the confirmation
carries it on: a confirmation sent twice refunds once (the second says so). A provider
that does not answer leaves the refund waiting (``provider_unavailable``): the page says
to try again, and "Execute" asks the provider again with the same key, as does "Ask the
provider again" by a waiting refund in the list. A membership attached to a visitor and
refunded whole is marked refunded on the visitor's profile by the same refund.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy import Connection, func, select
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.core.money import currency_exponent, format_amount, parse_amount
from kopilka.loyalty.cards import normalise_email
from kopilka.memberships import attaching, catalogue, refunds
from kopilka.memberships.attaching import MembershipView
from kopilka.memberships.error_codes import MembershipErrorCode as E
from kopilka.memberships.providers import registry
from kopilka.memberships.providers.base import PaymentProvider, ProviderError
from kopilka.memberships.refunds import RefundView
from kopilka.memberships.sales import OrderView
from kopilka.memberships.schema import membership_orders, memberships
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.front_desk import Posted, object_id, read_money, typed
from kopilka.web.routes.memberships import (
    HOME,
    ONE,
    currency_ns,
    membership_of,
    order_of,
    public_base,
    refusal_text,
    show,
)

router = APIRouter(include_in_schema=False)

RefundsPage = Annotated[Page, Depends(require("memberships.refunds"))]
REFUNDS = HOME + "/refunds"
REFUND = ONE + "/refund"
FOUND_AT_MOST = 20


class RefundForm(WebForm):
    amount = StringField(
        lazy("Amount to refund"),
        validators=[DataRequired()],
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )
    operation_id = HiddenField()


class ConfirmForm(WebForm):
    amount = HiddenField()
    operation_id = HiddenField()


def _fresh_id() -> str:
    return uuid.uuid4().hex


def _well_formed(shown_id: str) -> bool:
    """An id this screen could have made (a uuid's hex), not anything a post carries."""
    return 8 <= len(shown_id) <= 64 and shown_id.isascii() and shown_id.isalnum()


def _shown_id(form: RefundForm | ConfirmForm) -> str:
    shown = str(form.operation_id.data or "").strip()
    return shown if _well_formed(shown) else _fresh_id()


def operation_of(shown_id: str) -> str:
    """The domain's operation id of a refund form: the id it was shown with."""
    return f"staff:{shown_id}"


# --------------------------------------------------------------------------- finding


def _by_email(conn: Connection, page: Page, text: str) -> list[MembershipView]:
    """The memberships bought with this e-mail (in any case), the newest first."""
    address = normalise_email(text).lower()
    ids = conn.execute(
        select(memberships.c.id)
        .join(membership_orders, membership_orders.c.id == memberships.c.order_id)
        .where(
            memberships.c.tenant_id == page.tenant.id,
            membership_orders.c.tenant_id == page.tenant.id,
            func.lower(membership_orders.c.email) == address,
        )
        .order_by(memberships.c.id.desc())
        .limit(FOUND_AT_MOST)
    ).scalars()
    return [attaching.get_membership(conn, page.tenant.id, i) for i in ids]


@router.get(REFUNDS)
def refunds_find(page: RefundsPage, q: str = "") -> Response:
    text = q.strip()[:254]
    error = ""
    found: list[MembershipView] = []
    with read_only(page.engine) as conn:
        try:
            if "@" in text:
                found = _by_email(conn, page, text)
                if not found:
                    error = _("No membership was bought with this e-mail.")
            elif text:
                one = attaching.find_membership(conn, page.tenant.id, text)
                return redirect(f"{HOME}/{one.id}/refund")
            else:
                found = attaching.list_memberships(conn, page.tenant.id, limit=FOUND_AT_MOST)
        except KopilkaError as refused:
            error = refusal_text(refused, page.tenant.currency)
    return show(
        page,
        "refunds.html",
        tab="refunds",
        q=q,
        rows=found,
        find_error=error,
        searched=bool(text),
        currency=currency_ns(page.tenant.currency),
    )


# --------------------------------------------------------------------------- the payment


@dataclass
class Payment:
    """A membership with its order, as the refund screens show it."""

    membership: MembershipView
    order: OrderView
    refunds: list[RefundView]
    left_minor: int
    visitor: catalogue.VisitorView | None
    provider_now: str

    @property
    def exponent(self) -> int:
        return currency_exponent(self.order.currency)

    @property
    def pending(self) -> list[RefundView]:
        return [r for r in self.refunds if r.status == "pending"]


def _payment(page: Page, membership_id: int) -> Payment:
    with read_only(page.engine) as conn:
        membership = membership_of(conn, page, membership_id)
        order = order_of(conn, page, membership)
        if order is None:
            raise HTTPException(404)
        visitor = (
            catalogue.get_visitor(conn, page.tenant.id, membership.visitor_id)
            if membership.visitor_id is not None
            else None
        )
        return Payment(
            membership=membership,
            order=order,
            refunds=refunds.list_refunds(conn, page.tenant.id, order.id),
            left_minor=max(refunds.refundable(conn, order), 0),
            visitor=visitor,
            provider_now=catalogue.get_settings(conn, page.tenant.id).provider,
        )


def _refund_form(pay: Payment, data: Any = None) -> RefundForm:
    if data is not None:
        return RefundForm(data)
    amount = typed(pay.left_minor, pay.exponent) if pay.left_minor else ""
    return RefundForm(amount=amount, operation_id=_fresh_id())


def refund_page(
    page: Page,
    membership_id: int,
    form: RefundForm | None = None,
    status_code: int = 200,
) -> Response:
    pay = _payment(page, membership_id)
    return show(
        page,
        "refund.html",
        status_code=status_code,
        tab="refunds",
        pay=pay,
        m=pay.membership,
        order=pay.order,
        form=form or _refund_form(pay),
        currency=currency_ns(pay.order.currency),
    )


@router.get(REFUND)
def refund_view(page: RefundsPage, membership_id: int) -> Response:
    return refund_page(page, membership_id)


def _can_refund(form: WebForm, pay: Payment) -> bool:
    """What the screen itself can tell before anything is asked: paid, something left,
    the provider that took the payment still the studio's."""
    if pay.order.status != "paid" or pay.left_minor <= 0:
        form.add_error("", refusal_text(KopilkaError(E.ORDER_NOT_PAID, ""), pay.order.currency))
        return False
    return _same_provider(form, pay)


def _same_provider(form: WebForm, pay: Payment) -> bool:
    """A refund goes back through the provider that took the payment: the studio's
    provider now (its settings are the only ones kept)."""
    if pay.order.provider == pay.provider_now:
        return True
    form.add_error(
        "",
        _(
            "The payment was taken by %(taken)s, and the studio now works with "
            "%(now)s: switch the provider back in Settings to refund it.",
            taken=pay.order.provider,
            now=pay.provider_now,
        ),
    )
    return False


def _money(pay: Payment, amount_minor: int) -> str:
    return i18n.format_money(amount_minor, pay.order.currency, pay.exponent)


@router.post(REFUND)
def refund_ask(page: RefundsPage, membership_id: int, posted: Posted) -> Response:
    """The amount typed: checked, then the confirmation shows what will happen."""
    pay = _payment(page, membership_id)
    form = _refund_form(pay, posted)
    form.validate()
    amount = read_money(form, "amount", pay.exponent) if form.amount.data else None
    if amount is not None and amount > pay.left_minor:
        form.add_error(
            "amount", _("At most %(amount)s can be given back.", amount=_money(pay, pay.left_minor))
        )
    if not _can_refund(form, pay) or form.has_errors or amount is None:
        return refund_page(page, membership_id, form, 422)
    confirm = ConfirmForm(amount=format_amount(amount, pay.exponent), operation_id=_shown_id(form))
    return _confirm_page(page, pay, confirm, amount)


def _confirm_page(
    page: Page, pay: Payment, form: ConfirmForm, amount_minor: int, status_code: int = 200
) -> Response:
    return show(
        page,
        "refund_confirm.html",
        status_code=status_code,
        tab="refunds",
        pay=pay,
        m=pay.membership,
        order=pay.order,
        form=form,
        amount_minor=amount_minor,
        whole=pay.order.refunded_minor + amount_minor == pay.order.total_minor,
        currency=currency_ns(pay.order.currency),
    )


def _provider(page: Page) -> PaymentProvider:
    """The studio's provider as its settings say (the one that took the payment: see
    ``_can_refund``)."""
    with read_only(page.engine) as conn:
        settings = catalogue.get_settings(conn, page.tenant.id)
    return registry.provider_for(
        settings.provider,
        settings.provider_config,
        engine=page.engine,
        public_base=public_base(page),
        tenant_id=page.tenant.id,
    )


def _execute(
    page: Page, pay: Payment, amount_minor: int, operation_id: str
) -> RefundView | KopilkaError:
    """The three steps of the domain; a refusal (or a provider that cannot even be set
    up from the settings) is returned to be shown."""
    try:
        return refunds.refund_through_provider(
            page.engine,
            _provider(page),
            tenant_id=page.tenant.id,
            order_id=pay.order.id,
            amount_minor=amount_minor,
            operation_id=operation_id,
            actor=page.actor,
        )
    except KopilkaError as error:
        return error
    except ProviderError as error:
        return KopilkaError(E.PROVIDER_UNAVAILABLE, str(error))


def _known(pay: Payment, operation_id: str) -> RefundView | None:
    """This operation's refund, if the confirmation was sent before: made (a form sent
    twice) or waiting for the provider (this request asks it again)."""
    return next((r for r in pay.refunds if r.operation_id == operation_id), None)


def _flash_done(page: Page, pay: Payment, done: RefundView, *, made_before: bool) -> None:
    number = pay.membership.number
    with page.engine.begin() as conn:
        if made_before:
            page.flash_next(
                conn, "info", _("This refund was made already: the form was sent twice.")
            )
        elif done.status == "succeeded":
            page.flash_next(
                conn,
                "success",
                _(
                    "A refund of %(amount)s is made: the money goes back to the card it was "
                    "paid with.",
                    amount=_money(pay, done.amount_minor),
                ),
            )
            after = attaching.get_membership(conn, page.tenant.id, pay.membership.id)
            if after.status == "refunded" and pay.visitor is not None:
                page.flash_next(
                    conn,
                    "info",
                    _(
                        "Membership %(number)s is marked refunded on the profile of %(name)s.",
                        number=number,
                        name=pay.visitor.full_name,
                    ),
                )
        elif done.status == "canceled":
            page.flash_next(conn, "error", _("The payment provider declined the refund."))
        else:
            page.flash_next(
                conn,
                "warning",
                _(
                    "The payment provider took the refund and has not finished it yet: ask "
                    "it again later by the refund below."
                ),
            )


def _read_confirm(pay: Payment, posted: FormData) -> tuple[ConfirmForm, int | None]:
    form = ConfirmForm(posted)
    try:
        amount = parse_amount(str(form.amount.data or ""), pay.exponent, positive=True)
    except KopilkaError:
        amount = None
    form.operation_id.data = _shown_id(form)
    return form, amount


@router.post(REFUND + "/confirm")
def refund_confirm(page: RefundsPage, membership_id: int, posted: Posted) -> Response:
    pay = _payment(page, membership_id)
    form, amount = _read_confirm(pay, posted)
    operation_id = operation_of(str(form.operation_id.data))
    known = _known(pay, operation_id)
    made_before = known is not None and known.status != "pending"
    # What is left and whether it is paid are the domain's to say, under the order's
    # lock: the same confirmation sent twice at once is one refund, not a refusal.
    if amount is None or not _same_provider(form, pay):
        again = _refund_form(pay)
        again.form_errors.extend(form.form_errors or [_("Check what is entered.")])
        return refund_page(page, membership_id, again, 422)
    done = _execute(page, pay, amount, operation_id)
    if isinstance(done, RefundView):
        _flash_done(page, pay, done, made_before=made_before)
        return redirect(f"{HOME}/{membership_id}/refund", page.request)
    message = refusal_text(done, pay.order.currency)
    if done.code == E.PROVIDER_UNAVAILABLE:
        now = _payment(page, membership_id)
        finished = _known(now, operation_id)
        if finished is not None and finished.status == "succeeded":
            # The same confirmation sent at once from another click finished it.
            _flash_done(page, now, finished, made_before=True)
            return redirect(f"{HOME}/{membership_id}/refund", page.request)
        # The refund waits; the same confirmation asks the provider again, same key.
        form.form_errors.append(message)
        return _confirm_page(page, now, form, amount, 503)
    again = _refund_form(pay)
    again.amount.data = typed(amount, pay.exponent)
    again.add_error("amount" if done.code == E.REFUND_TOO_LARGE else "", message)
    return refund_page(page, membership_id, again, 422)


@router.post(REFUND + "/retry")
def refund_retry(page: RefundsPage, membership_id: int, posted: Posted) -> Response:
    """A refund left waiting, asked of the provider again (same operation, same key)."""
    pay = _payment(page, membership_id)
    refund_id = object_id(posted.get("refund_id"))
    waiting = next((r for r in pay.pending if r.id == refund_id), None)
    if waiting is None:
        raise HTTPException(404)
    done = _execute(page, pay, waiting.amount_minor, waiting.operation_id)
    if isinstance(done, RefundView):
        _flash_done(page, pay, done, made_before=False)
    else:
        with page.engine.begin() as conn:
            page.flash_next(conn, "error", refusal_text(done, pay.order.currency))
    return redirect(f"{HOME}/{membership_id}/refund", page.request)
