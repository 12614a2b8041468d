"""Gift certificates on screen (SPEC C-9): find, issue a range, sell, pay with, block.

Cashiers (permission ``cards``) find certificates, sell them and take payments at the
desk; issuing and blocking take ``cards.manage``. Selling and paying are idempotent: the
form carries an operation id made when it was shown, so a double click posts once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response
from sqlalchemy import Connection
from wtforms import BooleanField, HiddenField, IntegerField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.core.money import currency_exponent
from kopilka.ledger.balances import history
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty import certificates as certs
from kopilka.loyalty.programs import LoyaltyErrorCode
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.cards import (
    Posted,
    currency_unit,
    read_amount,
    read_day,
    save_form,
    show_section,
)

router = APIRouter(include_in_schema=False)

E = LoyaltyErrorCode
CardsPage = Annotated[Page, Depends(require("cards"))]
ManagePage = Annotated[Page, Depends(require("cards.manage"))]

PER_PAGE = 50
CERT_STATUSES = {
    "issued": lazy("Not sold"),
    "active": lazy("Active"),
    "blocked": lazy("Blocked"),
    "expired": lazy("Expired"),
}


class RangeForm(WebForm):
    prefix = StringField(lazy("Prefix"), validators=[Length(max=20)])
    first = IntegerField(lazy("First number"), validators=[InputRequired(), NumberRange(min=0)])
    last = IntegerField(lazy("Last number"), validators=[InputRequired(), NumberRange(min=0)])
    width = IntegerField(
        lazy("Digits in the number"), validators=[Optional(), NumberRange(min=1, max=30)]
    )
    check_digit = BooleanField(lazy("Add a check digit (Luhn)"))
    validity_days = IntegerField(
        lazy("Valid for, days after the sale"),
        validators=[Optional(), NumberRange(min=1, max=3650)],
    )


class SellForm(WebForm):
    nominal = StringField(lazy("Nominal"), validators=[DataRequired()])
    expires = StringField(lazy("Valid until"), render_kw={"type": "date"})
    operation_id = HiddenField()


class PayForm(WebForm):
    amount = StringField(lazy("Amount"), validators=[DataRequired()])
    check_id = StringField(lazy("Check or order"), validators=[Length(max=100)])
    operation_id = HiddenField()


class BlockForm(WebForm):
    reason = StringField(lazy("Reason"), validators=[DataRequired(), Length(max=200)])


def _exponent(page: Page) -> int:
    return currency_exponent(page.tenant.currency)


@router.get("/cards/certificates")
def certificates_list(page: CardsPage, q: str = "", status: str = "", after: int = 0) -> Response:
    prefix = "".join(ch for ch in q if ch.isascii() and ch.isdigit())
    chosen = status if status in CERT_STATUSES else None
    with read_only(page.engine) as conn:
        found = certs.list_certificates(
            conn,
            page.tenant.id,
            after_id=max(after, 0),
            limit=PER_PAGE + 1,
            status=chosen,
            number_prefix=prefix or None,
        )
    more = len(found) > PER_PAGE
    found = found[:PER_PAGE]
    args = {"q": q, "status": status}
    next_url = None
    if more and found:
        query = "&".join(f"{k}={v}" for k, v in args.items() if v)
        next_url = f"/cards/certificates?{query}&after={found[-1].id}".replace("?&", "?")
    filters = [
        (
            "status",
            _("Status"),
            [(key, str(label)) for key, label in CERT_STATUSES.items()],
            chosen or "",
        )
    ]
    return show_section(
        page,
        "certificates.html",
        "certificates",
        certificates=found,
        q=q,
        filters=filters,
        cert_statuses=CERT_STATUSES,
        next_url=next_url,
        first_page=after <= 0,
        currency=currency_unit(page.tenant.currency, _exponent(page)),
        form=RangeForm(),
    )


@router.post("/cards/certificates")
def certificates_issue(page: ManagePage, posted: Posted) -> Response:
    form = RangeForm(posted)
    if form.validate():
        first, last = int(form.first.data or 0), int(form.last.data or 0)
        if last < first:
            form.add_error("last", _("The last number is not below the first."))
        else:

            def work(conn: Connection) -> list[int]:
                ids = certs.issue_certificate_range(
                    conn,
                    tenant_id=page.tenant.id,
                    prefix=form.prefix.data or "",
                    first=first,
                    last=last,
                    check_digit=bool(form.check_digit.data),
                    width=form.width.data,
                    validity_days=form.validity_days.data,
                    actor=page.actor,
                )
                page.flash_next(
                    conn,
                    "success",
                    i18n.ngettext(
                        "%(num)s certificate issued.", "%(num)s certificates issued.", len(ids)
                    ),
                )
                return ids

            fields: dict[str, tuple[str, str]] = {
                E.CERTIFICATE_EXISTS: ("first", _("Some of these numbers exist already.")),
                E.INVALID_CERTIFICATE_RANGE: (
                    "prefix",
                    _("A prefix is digits only, and the numbers fit."),
                ),
            }
            if save_form(page, form, work, fields) is not None:
                return redirect("/cards/certificates", page.request)
    return show_section(
        page,
        "certificates.html",
        "certificates",
        status_code=422,
        certificates=[],
        q="",
        filters=[],
        cert_statuses=CERT_STATUSES,
        next_url=None,
        first_page=True,
        currency=currency_unit(page.tenant.currency, _exponent(page)),
        form=form,
    )


def _certificate(conn: Connection, page: Page, certificate_id: int) -> certs.CertificateView:
    try:
        return certs.get_certificate(conn, page.tenant.id, certificate_id)
    except NotFound:
        raise HTTPException(404) from None


def _certificate_page(
    page: Page,
    certificate_id: int,
    *,
    sell: SellForm | None = None,
    pay: PayForm | None = None,
    block: BlockForm | None = None,
    status_code: int = 200,
) -> Response:
    with read_only(page.engine) as conn:
        certificate = _certificate(conn, page, certificate_id)
        lines = history(
            conn, page.tenant.id, certificate.account_id, newest_first=True, limit=PER_PAGE
        )
    return show_section(
        page,
        "certificate.html",
        "certificates",
        status_code=status_code,
        certificate=certificate,
        cert_statuses=CERT_STATUSES,
        currency=currency_unit(certificate.currency, certificate.exponent),
        lines=lines,
        sell=sell or SellForm(data={"operation_id": uuid.uuid4().hex}),
        pay=pay or PayForm(data={"operation_id": uuid.uuid4().hex}),
        block=block or BlockForm(),
        usable=certificate.status == "active"
        and (certificate.expires_at is None or certificate.expires_at > datetime.now(UTC)),
    )


@router.get("/cards/certificates/{certificate_id:int}")
def certificate_page(page: CardsPage, certificate_id: int) -> Response:
    return _certificate_page(page, certificate_id)


def _refusals() -> dict[str, tuple[str, str]]:
    return {
        E.ALREADY_SOLD: ("", _("The certificate is sold already.")),
        E.CERTIFICATE_NOT_SOLD: ("", _("The certificate is not sold yet.")),
        E.CERTIFICATE_BLOCKED: ("", _("The certificate is blocked.")),
        E.CERTIFICATE_EXPIRED: ("", _("The certificate has expired.")),
        E.INSUFFICIENT_CERTIFICATE_BALANCE: (
            "amount",
            _("The certificate has less than that left."),
        ),
        E.CERTIFICATE_OPERATION_CONFLICT: ("", _("This form was sent already; reload the page.")),
        E.INVALID_CERTIFICATE: ("", _("Check the dates and the amount.")),
        E.REASON_REQUIRED: ("reason", _("Say why.")),
    }


@router.post("/cards/certificates/{certificate_id:int}/sale")
def certificate_sell(page: CardsPage, certificate_id: int, posted: Posted) -> Response:
    form = SellForm(posted)
    with read_only(page.engine) as conn:
        certificate = _certificate(conn, page, certificate_id)
    valid = form.validate()
    nominal = read_amount(form, "nominal", certificate.exponent) if form.nominal.data else None
    ok_day, expires = read_day(form, "expires")
    if valid and ok_day and nominal is not None and not form.has_errors:

        def work(conn: Connection) -> Any:
            sale = certs.sell_certificate(
                conn,
                tenant_id=page.tenant.id,
                number=certificate.number,
                nominal_minor=nominal,
                operation_id=f"web:{form.operation_id.data or uuid.uuid4().hex}",
                expires_at=expires,
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("The certificate is sold."))
            return sale

        if save_form(page, form, work, _refusals()) is not None:
            return redirect(f"/cards/certificates/{certificate_id}", page.request)
    return _certificate_page(page, certificate_id, sell=form, status_code=422)


@router.post("/cards/certificates/{certificate_id:int}/payments")
def certificate_pay(page: CardsPage, certificate_id: int, posted: Posted) -> Response:
    form = PayForm(posted)
    with read_only(page.engine) as conn:
        certificate = _certificate(conn, page, certificate_id)
    valid = form.validate()
    amount = read_amount(form, "amount", certificate.exponent) if form.amount.data else None
    if valid and amount is not None and not form.has_errors:

        def work(conn: Connection) -> Any:
            payment = certs.pay_with_certificate(
                conn,
                tenant_id=page.tenant.id,
                number=certificate.number,
                amount_minor=amount,
                operation_id=f"web:{form.operation_id.data or uuid.uuid4().hex}",
                check_id=form.check_id.data or None,
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("The payment is taken."))
            return payment

        if save_form(page, form, work, _refusals()) is not None:
            return redirect(f"/cards/certificates/{certificate_id}", page.request)
    return _certificate_page(page, certificate_id, pay=form, status_code=422)


@router.post("/cards/certificates/{certificate_id:int}/block")
def certificate_block(page: ManagePage, certificate_id: int, posted: Posted) -> Response:
    form = BlockForm(posted)
    with read_only(page.engine) as conn:
        certificate = _certificate(conn, page, certificate_id)
    if form.validate():

        def work(conn: Connection) -> Any:
            done = certs.block_certificate(
                conn,
                tenant_id=page.tenant.id,
                number=certificate.number,
                reason=form.reason.data or "",
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("The certificate is blocked."))
            return done

        if save_form(page, form, work, _refusals()) is not None:
            return redirect(f"/cards/certificates/{certificate_id}", page.request)
    return _certificate_page(page, certificate_id, block=form, status_code=422)


@router.post("/cards/certificates/{certificate_id:int}/unblock")
def certificate_unblock(page: ManagePage, certificate_id: int) -> Response:
    with read_only(page.engine) as conn:
        certificate = _certificate(conn, page, certificate_id)

    def work(conn: Connection) -> None:
        certs.unblock_certificate(
            conn, tenant_id=page.tenant.id, number=certificate.number, actor=page.actor
        )
        page.flash_next(conn, "success", _("The certificate is unblocked."))

    try:
        run_transaction(page.engine, work)
    except KopilkaError as error:
        raise HTTPException(409, error.detail) from error
    return redirect(f"/cards/certificates/{certificate_id}", page.request)
