"""The Settings tab "Payment types" (SPEC H-3, P-8): owners and administrators.

The tab lists the company's payment types (kind, switch, and for loyalty points the unit,
the exchange rate and the share payable), adds and edits them, and maps the codes the
terminals send (r_keeper's currency codes, seed 001) to them, for every terminal or for
one. The points fields of the new-type form appear when the kind "loyalty points" is
chosen: htmx asks the server for the form again as the kind changes; without scripts,
the form comes back with them after the first attempt. Every write is one transaction
through ``kopilka.payments``; a refusal lands next to its field and writes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from wtforms import BooleanField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import list_units
from kopilka.ledger.error_codes import LedgerErrorCode
from kopilka.ledger.posting import run_transaction
from kopilka.payments import codes as pc
from kopilka.payments import types as pt
from kopilka.payments.error_codes import PaymentErrorCode as E
from kopilka.payments.types import PaymentKind
from kopilka.tenancy.actions import TenancyErrorCode, list_terminals
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.cards import read_percent
from kopilka.web.routes.settings import _save, _show  # the settings section's frame

router = APIRouter(include_in_schema=False)

PaymentTypesPage = Annotated[Page, Depends(require("settings.payment_types"))]
HOME = "/settings/payment-types"
TAB = "payment-types"

KIND_LABELS = {
    PaymentKind.CASH: lazy("Cash"),
    PaymentKind.CARD: lazy("Bank card"),
    PaymentKind.BANK_TRANSFER: lazy("Bank transfer"),
    PaymentKind.DEPOSIT: lazy("Deposit"),
    PaymentKind.ROOM_CHARGE: lazy("Charge to the room"),
    PaymentKind.POINTS: lazy("Loyalty points"),
    PaymentKind.GIFT_CERTIFICATE: lazy("Gift certificate"),
    PaymentKind.OTHER: lazy("Other"),
}
_KINDS = [SelectChoice(kind.value, label) for kind, label in KIND_LABELS.items()]


async def _form_data(request: Request) -> FormData:
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]


class PaymentTypeForm(WebForm):
    name = StringField(
        lazy("Name"),
        validators=[DataRequired(), Length(max=pt.MAX_NAME)],
        render_kw={"maxlength": pt.MAX_NAME},
    )
    # Choosing a kind asks for the form again, with the points fields or without them.
    kind = SelectField(
        lazy("Kind"),
        choices=_KINDS,
        default=PaymentKind.CASH.value,
        render_kw={
            "hx-get": f"{HOME}/form",
            "hx-trigger": "change",
            "hx-target": "#payment-type-form",
            "hx-swap": "outerHTML",
            "hx-include": "closest form",
        },
    )
    enabled = BooleanField(lazy("Switched on: may be used"), default=True)
    unit_code = SelectField(lazy("Point unit"), default="")
    rate = StringField(lazy("One point is worth, in the currency"), default="1")
    max_share = StringField(lazy("Pay with points at most, % of what is owed"), default="0")


class EditPaymentTypeForm(WebForm):
    name = StringField(
        lazy("Name"),
        validators=[DataRequired(), Length(max=pt.MAX_NAME)],
        render_kw={"maxlength": pt.MAX_NAME},
    )
    enabled = BooleanField(lazy("Switched on: may be used"))
    rate = StringField(lazy("One point is worth, in the currency"))
    max_share = StringField(lazy("Pay with points at most, % of what is owed"))


class PaymentCodeForm(WebForm):
    code = StringField(
        lazy("Code"),
        validators=[DataRequired(), Length(max=pc.MAX_CODE)],
        render_kw={"maxlength": pc.MAX_CODE, "spellcheck": "false", "autocomplete": "off"},
    )
    payment_type_id = SelectField(lazy("Payment type"))
    terminal_id = SelectField(lazy("Terminal"), default="")


# --------------------------------------------------------------------------- helpers


def _rate_message() -> str:
    return _(
        "Enter a number above zero, at most 1 000 000, with at most 6 decimals, such as 1 or 0,5."
    )


def _type_errors() -> dict[str, tuple[str, str]]:
    return {
        E.INVALID_PAYMENT_TYPE: ("", _("Check the payment type.")),
        E.PAYMENT_TYPE_EXISTS: ("name", _("A payment type with this name exists already.")),
        E.POINTS_TYPE_EXISTS: ("unit_code", _("These points have their payment type already.")),
        E.UNIT_NOT_POINTS: ("unit_code", _("Choose the points, not a currency.")),
        LedgerErrorCode.UNKNOWN_UNIT: ("unit_code", _("Choose the points from the list.")),
        E.INVALID_EXCHANGE_RATE: ("rate", _rate_message()),
        E.INVALID_PERCENT: ("max_share", _("Enter a percentage from 0 to 100.")),
    }


def _code_errors() -> dict[str, tuple[str, str]]:
    return {
        E.INVALID_PAYMENT_CODE: (
            "code",
            _("A code is 1 to 32 letters, digits or signs, without spaces."),
        ),
        E.PAYMENT_CODE_EXISTS: (
            "code",
            _("This code is mapped already for these terminals; remove that mapping first."),
        ),
        E.PAYMENT_TYPE_NOT_FOUND: ("payment_type_id", _("Choose a payment type from the list.")),
        TenancyErrorCode.TERMINAL_NOT_FOUND: ("terminal_id", _("Choose a terminal from the list.")),
    }


def _read_rate(form: WebForm, field: str) -> Decimal | None:
    """The exchange rate as people type it (``0,5``), exactly; else an error by the field."""
    text = str(getattr(form, field).data or "").strip().replace("\u00a0", "").replace(" ", "")
    try:
        rate = pt.parse_rate(text.replace(",", "."))
        pt.rate_micro_of(rate)  # its range and precision
    except KopilkaError:
        form.add_error(field, _rate_message())
        return None
    return rate


def _as_typed(text: str) -> str:
    """A decimal as people of the current language write it (``0,5`` in Russian)."""
    return text.replace(".", ",") if i18n.current_locale() == "ru" else text


def _type_form(page: Page, conn: Connection, data: Any = None) -> PaymentTypeForm:
    form = PaymentTypeForm(data, prefix="type")
    form.unit_code.choices = [
        SelectChoice("", _("Choose…")),
        *(
            SelectChoice(u.code, f"{u.name or u.code} ({u.code})")
            for u in list_units(conn, page.tenant.id)
            if u.kind == UnitKind.POINTS
        ),
    ]
    return form


def _code_form(
    conn: Connection, page: Page, types: list[pt.PaymentType], data: Any = None
) -> PaymentCodeForm:
    form = PaymentCodeForm(data, prefix="map")
    form.payment_type_id.choices = [SelectChoice(str(t.id), t.name) for t in types]
    form.terminal_id.choices = [
        SelectChoice("", _("Every terminal")),
        *(
            SelectChoice(str(t.id), t.name)
            for t in list_terminals(conn, page.tenant.id)
            if not t.revoked
        ),
    ]
    return form


def _home(
    page: Page,
    *,
    type_form: PaymentTypeForm | None = None,
    code_form: PaymentCodeForm | None = None,
    status_code: int = 200,
) -> Response:
    with read_only(page.engine) as conn:
        types = pt.list_payment_types(conn, page.tenant.id)
        mapped = pc.list_payment_codes(conn, page.tenant.id)
        terminals = {t.id: t.name for t in list_terminals(conn, page.tenant.id)}
        type_form = type_form or _type_form(page, conn)
        code_form = code_form or _code_form(conn, page, types)
    return _show(
        page,
        "payment_types.html",
        TAB,
        status_code=status_code,
        types=types,
        codes=mapped,
        terminals=terminals,
        kinds=KIND_LABELS,
        form=type_form,
        code_form=code_form,
        rate=lambda micro: _as_typed(pt.format_rate(micro)),
        percent=lambda bp: i18n.format_number(bp, 2) + "\u00a0%",
    )


# --------------------------------------------------------------------------- types


@router.get(HOME)
def payment_types_home(page: PaymentTypesPage) -> Response:
    return _home(page)


@router.get(f"{HOME}/form")
def payment_type_form(page: PaymentTypesPage, request: Request) -> Response:
    """The new-type form again as the kind changes (htmx): the points fields or none."""
    if request.headers.get("HX-Request") != "true":
        return redirect(HOME)
    with read_only(page.engine) as conn:
        form = _type_form(page, conn, request.query_params)
    return render(page, "settings/_payment_type_form.html", form=form)


@router.post(HOME)
def payment_type_create(page: PaymentTypesPage, posted: Posted) -> Response:
    with read_only(page.engine) as conn:
        form = _type_form(page, conn, posted)
    valid = form.validate()
    points = form.kind.data == PaymentKind.POINTS.value
    rate = share = None
    if points:
        if not form.unit_code.data:
            form.add_error("unit_code", _("Choose the points this type spends."))
        rate = _read_rate(form, "rate")
        share = read_percent(form, "max_share")
    if valid and not form.has_errors:
        name = (form.name.data or "").strip()

        def work(conn: Connection) -> pt.PaymentType:
            created = pt.create_payment_type(
                conn,
                tenant_id=page.tenant.id,
                name=name,
                kind=form.kind.data or "",
                enabled=bool(form.enabled.data),
                unit_code=form.unit_code.data if points else None,
                exchange_rate=rate,
                max_share_bp=share,
                actor=page.actor,
            )
            page.flash_next(
                conn, "success", _("Payment type “%(name)s” is added.", name=created.name)
            )
            return created

        if _save(page, form, work, _type_errors):
            return redirect(HOME, page.request)
    return _home(page, type_form=form, status_code=422)


def _payment_type(page: Page, payment_type_id: int) -> pt.PaymentType:
    with read_only(page.engine) as conn:
        try:
            return pt.get_payment_type(conn, page.tenant.id, payment_type_id)
        except NotFound as error:
            raise HTTPException(404) from error


def _edit_page(
    page: Page, target: pt.PaymentType, form: EditPaymentTypeForm, status_code: int = 200
) -> Response:
    return _show(
        page,
        "payment_type_edit.html",
        TAB,
        status_code=status_code,
        target=target,
        form=form,
        kinds=KIND_LABELS,
    )


@router.get(HOME + "/{payment_type_id:int}")
def payment_type_edit(page: PaymentTypesPage, payment_type_id: int) -> Response:
    target = _payment_type(page, payment_type_id)
    data: dict[str, object] = {"name": target.name, "enabled": target.enabled}
    if target.rate_micro is not None and target.max_share_bp is not None:
        data["rate"] = _as_typed(pt.format_rate(target.rate_micro))
        data["max_share"] = _as_typed(pt.format_percent(target.max_share_bp))
    return _edit_page(page, target, EditPaymentTypeForm(data=data))


@router.post(HOME + "/{payment_type_id:int}")
def payment_type_update(page: PaymentTypesPage, payment_type_id: int, posted: Posted) -> Response:
    target = _payment_type(page, payment_type_id)
    form = EditPaymentTypeForm(posted)
    valid = form.validate()
    rate = share = None
    if target.is_points:
        rate = _read_rate(form, "rate")
        share = read_percent(form, "max_share")
    if valid and not form.has_errors:

        def work(conn: Connection) -> pt.PaymentType:
            updated = pt.update_payment_type(
                conn,
                tenant_id=page.tenant.id,
                payment_type_id=payment_type_id,
                name=form.name.data or "",
                enabled=bool(form.enabled.data),
                exchange_rate=pt.UNCHANGED if rate is None else rate,
                max_share_bp=pt.UNCHANGED if share is None else share,
                actor=page.actor,
            )
            page.flash_next(
                conn, "success", _("Payment type “%(name)s” is saved.", name=updated.name)
            )
            return updated

        if _save(page, form, work, _type_errors):
            return redirect(HOME, page.request)
    return _edit_page(page, target, form, 422)


# --------------------------------------------------------------------------- codes


@router.post(f"{HOME}/codes")
def payment_code_add(page: PaymentTypesPage, posted: Posted) -> Response:
    with read_only(page.engine) as conn:
        types = pt.list_payment_types(conn, page.tenant.id)
        form = _code_form(conn, page, types, posted)
    if form.validate():
        terminal = form.terminal_id.data or ""

        def work(conn: Connection) -> pc.PaymentCode:
            added = pc.add_payment_code(
                conn,
                tenant_id=page.tenant.id,
                code=form.code.data or "",
                payment_type_id=int(form.payment_type_id.data or 0),
                terminal_id=int(terminal) if terminal else None,
                actor=page.actor,
            )
            page.flash_next(
                conn,
                "success",
                _(
                    "Code %(code)s now means “%(name)s”.",
                    code=added.code,
                    name=added.payment_type.name,
                ),
            )
            return added

        if _save(page, form, work, _code_errors):
            return redirect(HOME, page.request)
    return _home(page, code_form=form, status_code=422)


@router.post(HOME + "/codes/{payment_code_id:int}/delete")
def payment_code_remove(page: PaymentTypesPage, payment_code_id: int) -> Response:
    def work(conn: Connection) -> None:
        removed = pc.remove_payment_code(
            conn, tenant_id=page.tenant.id, payment_code_id=payment_code_id, actor=page.actor
        )
        page.flash_next(conn, "success", _("Code %(code)s is removed.", code=removed.code))

    try:
        run_transaction(page.engine, work)
    except NotFound as error:
        raise HTTPException(404) from error
    return redirect(HOME, page.request)
