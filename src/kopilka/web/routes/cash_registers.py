"""Cash registers and their receipts on screen (SPEC H-6).

* Settings -> "Cash registers" (owners and administrators, like payment types): the
  company's registers (ATOL Online v5), added, edited and switched off. The password is
  write-only: the form never shows it, and an edit that leaves it empty keeps it.
* "Receipts" (everyone who serves hotel guests): every receipt with its status, the
  register's error when it failed, and a Retry button (htmx swaps the row in place;
  without scripts the form posts and the page comes back).

Every write is one transaction through ``kopilka.fiscal``; a refusal lands by its field.
Retry sends the receipt at once, after its transaction: the page waits for the register
for at most the register's timeout.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from wtforms import BooleanField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.fiscal import receipts as rc
from kopilka.fiscal import registers as rg
from kopilka.fiscal.atol import DEFAULT_BASE_URL, SNO_VALUES
from kopilka.fiscal.error_codes import FiscalErrorCode as E
from kopilka.ledger.posting import run_transaction
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.paging import paging_of
from kopilka.web.routes.settings import _show  # the settings section's frame

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

RegistersPage = Annotated[Page, Depends(require("settings.payment_types"))]
ReceiptsPage = Annotated[Page, Depends(require("hotel"))]
HOME = "/settings/cash-registers"
RECEIPTS = "/receipts"
TAB = "cash-registers"

SNO_LABELS = {
    "osn": lazy("General taxation system (OSN)"),
    "usn_income": lazy("Simplified, on income (USN)"),
    "usn_income_outcome": lazy("Simplified, on income less expenses (USN)"),
    "esn": lazy("Unified agricultural tax (ESKhN)"),
    "patent": lazy("Patent taxation system"),
}
assert set(SNO_LABELS) == set(SNO_VALUES)
STATUS_LABELS = {
    rc.PENDING: lazy("Waiting to be sent"),
    rc.WAIT: lazy("Being registered"),
    rc.DONE: lazy("Registered"),
    rc.FAILED: lazy("Failed"),
}
OPERATION_LABELS = {rc.SELL: lazy("Sale"), rc.SELL_REFUND: lazy("Refund")}
SOURCE_LABELS = {
    "hotel_payment": lazy("Folio payment"),
    "hotel_refund": lazy("Folio refund"),
}


async def _form_data(request: Request) -> FormData:
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]


class CashRegisterForm(WebForm):
    name = StringField(
        lazy("Name"),
        validators=[DataRequired(), Length(max=rg.MAX_NAME)],
        render_kw={"maxlength": rg.MAX_NAME},
    )
    base_url = StringField(
        lazy("Address of the service"),
        validators=[DataRequired(), Length(max=300)],
        default=DEFAULT_BASE_URL,
        render_kw={"spellcheck": "false", "autocomplete": "off"},
    )
    login = StringField(
        lazy("Login"),
        validators=[DataRequired(), Length(max=100)],
        render_kw={"spellcheck": "false", "autocomplete": "off"},
    )
    # Never filled in by the server: the password is write-only.
    password = PasswordField(
        lazy("Password"),
        validators=[Length(max=200)],
        render_kw={"autocomplete": "new-password"},
    )
    group_code = StringField(
        lazy("Group code"),
        validators=[DataRequired(), Length(max=100)],
        render_kw={"spellcheck": "false", "autocomplete": "off"},
    )
    inn = StringField(
        lazy("Seller's INN"),
        validators=[DataRequired(), Length(max=12)],
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )
    sno = SelectField(
        lazy("Taxation system"),
        choices=[SelectChoice(value, label) for value, label in SNO_LABELS.items()],
    )
    payment_address = StringField(
        lazy("Place of settlement"),
        validators=[DataRequired(), Length(max=256)],
        render_kw={"maxlength": 256},
    )
    company_email = StringField(
        lazy("Seller's e-mail"),
        validators=[DataRequired(), Length(max=64)],
        render_kw={"type": "email", "autocomplete": "off"},
    )
    enabled = BooleanField(lazy("Switched on: takes receipts"), default=True)

    def settings(self) -> dict[str, Any]:
        """The settings typed (an empty password: the one there is stays)."""
        return {
            name: (getattr(self, name).data or "").strip()
            for name in (
                "base_url",
                "login",
                "group_code",
                "inn",
                "sno",
                "payment_address",
                "company_email",
            )
        } | {"password": self.password.data or ""}


# --------------------------------------------------------------------------- helpers


def _setting_messages() -> dict[str, str]:
    return {
        "base_url": _("Enter the address of the service, such as %(url)s.", url=DEFAULT_BASE_URL),
        "login": _("Enter the login the service gave."),
        "password": _("Enter the password the service gave."),
        "group_code": _("Enter the group code the service gave: letters, digits, _, - and ."),
        "inn": _("Enter an INN of 10 or 12 digits with valid check digits."),
        "payment_address": _("Enter 1 to 256 characters."),
        "sno": _("Choose the taxation system from the list."),
        "company_email": _("Enter an e-mail address, such as hotel@example.ru."),
    }


def _refuse(form: CashRegisterForm, error: KopilkaError) -> None:
    """A domain refusal shown by its field, in the reader's language."""
    field = str(error.params.get("field", ""))
    if error.code == E.CASH_REGISTER_EXISTS:
        form.add_error("name", _("A cash register with this name exists already."))
    elif error.code == E.INVALID_REGISTER_SETTING and field in _setting_messages():
        form.add_error(field, _setting_messages()[field])
    elif error.code == E.INVALID_CASH_REGISTER and field == "name":
        form.add_error("name", _("Enter 1 to 100 characters."))
    else:
        form.add_error("", _("Check the cash register's settings."))


def _save(page: Page, form: CashRegisterForm, work: Callable[[Connection], T]) -> T | None:
    try:
        return run_transaction(page.engine, work)
    except NotFound as error:
        raise HTTPException(404) from error
    except KopilkaError as error:
        _refuse(form, error)
        return None


def _register(page: Page, register_id: int) -> rg.CashRegister:
    with read_only(page.engine) as conn:
        try:
            return rg.get_register(conn, page.tenant.id, register_id)
        except NotFound as error:
            raise HTTPException(404) from error


def _home(page: Page, form: CashRegisterForm | None = None, status_code: int = 200) -> Response:
    with read_only(page.engine) as conn:
        found = rg.list_registers(conn, page.tenant.id)
        failed = rc.count_receipts(conn, page.tenant.id, rc.FAILED)
    return _show(
        page,
        "cash_registers.html",
        TAB,
        status_code=status_code,
        registers=found,
        form=form or CashRegisterForm(),
        sno_labels=SNO_LABELS,
        failed=failed,
        can_see_receipts=page.can("hotel"),
    )


# --------------------------------------------------------------------------- registers


@router.get(HOME)
def cash_registers_home(page: RegistersPage) -> Response:
    return _home(page)


@router.post(HOME)
def cash_register_create(page: RegistersPage, posted: Posted) -> Response:
    form = CashRegisterForm(posted)
    valid = form.validate()
    if not form.password.data:
        form.add_error("password", _("Enter the password the service gave."))
    if valid and not form.has_errors:

        def work(conn: Connection) -> rg.CashRegister:
            created = rg.create_register(
                conn,
                tenant_id=page.tenant.id,
                name=form.name.data or "",
                settings=form.settings(),
                enabled=bool(form.enabled.data),
                actor=page.actor,
            )
            page.flash_next(
                conn, "success", _("Cash register “%(name)s” is added.", name=created.name)
            )
            return created

        if _save(page, form, work):
            return redirect(HOME, page.request)
    return _home(page, form, 422)


def _edit_page(
    page: Page, target: rg.CashRegister, form: CashRegisterForm, status_code: int = 200
) -> Response:
    return _show(
        page,
        "cash_registers_edit.html",
        TAB,
        status_code=status_code,
        target=target,
        form=form,
    )


@router.get(HOME + "/{register_id:int}")
def cash_register_edit(page: RegistersPage, register_id: int) -> Response:
    target = _register(page, register_id)
    shown = target.public_settings
    data = {key: shown.get(key) for key in CashRegisterForm().settings() if key != "password"}
    form = CashRegisterForm(data={"name": target.name, "enabled": target.enabled, **data})
    return _edit_page(page, target, form)


@router.post(HOME + "/{register_id:int}")
def cash_register_update(page: RegistersPage, register_id: int, posted: Posted) -> Response:
    target = _register(page, register_id)
    form = CashRegisterForm(posted)
    if form.validate():

        def work(conn: Connection) -> rg.CashRegister:
            updated = rg.update_register(
                conn,
                tenant_id=page.tenant.id,
                register_id=register_id,
                name=form.name.data or "",
                enabled=bool(form.enabled.data),
                settings=form.settings(),
                actor=page.actor,
            )
            page.flash_next(
                conn, "success", _("Cash register “%(name)s” is saved.", name=updated.name)
            )
            return updated

        if _save(page, form, work):
            return redirect(HOME, page.request)
    return _edit_page(page, target, form, 422)


@router.post(HOME + "/{register_id:int}/switch")
def cash_register_switch(page: RegistersPage, register_id: int, posted: Posted) -> Response:
    """Switch a register on or off from the list."""
    enabled = posted.get("enabled") == "1"

    def work(conn: Connection) -> None:
        changed = rg.set_register_enabled(
            conn,
            tenant_id=page.tenant.id,
            register_id=register_id,
            enabled=enabled,
            actor=page.actor,
        )
        text = (
            _("Cash register “%(name)s” is switched on.", name=changed.name)
            if enabled
            else _("Cash register “%(name)s” is switched off.", name=changed.name)
        )
        page.flash_next(conn, "success", text)

    try:
        run_transaction(page.engine, work)
    except NotFound as error:
        raise HTTPException(404) from error
    return redirect(HOME, page.request)


# --------------------------------------------------------------------------- receipts


# The adapter's own words about a failure (English, for the API and the log) as people
# read them here; the register's words (ATOL's Russian text) pass through unchanged.
_ERRORS = (
    (
        re.compile(
            r"^(?:getToken: )?ATOL ?(?P<code>\d*)(?: \(\w*\))?, HTTP \d+: (?P<text>.*)$", re.S
        ),
        lazy("ATOL error %(code)s: %(text)s"),
    ),
    (
        re.compile(r"^ATOL could not be reached: (?P<text>.*)$", re.S),
        lazy("The register could not be reached: %(text)s"),
    ),
    (
        re.compile(r"^ATOL did not answer in time"),
        lazy("The register did not answer in time."),
    ),
    (
        re.compile(r"^(?:getToken: )?(?:ATOL answered )?HTTP (?P<code>\d+)"),
        lazy("The register answered with an error (HTTP %(code)s)."),
    ),
    (
        re.compile(r"^the register's settings: (?P<text>.*)$", re.S),
        lazy("The cash register's settings are not valid: %(text)s"),
    ),
)


def error_text(message: str | None) -> str:
    """A receipt's ``last_error`` in the reader's language, as far as the words are ours."""
    if not message:
        return ""
    for pattern, template in _ERRORS:
        match = pattern.match(message)
        if match:
            return _(template.message, **match.groupdict())
    return message


def _receipt_context() -> dict[str, Any]:
    return {
        "error_text": error_text,
        "status_labels": STATUS_LABELS,
        "operation_labels": OPERATION_LABELS,
        "source_label": lambda source_type: str(SOURCE_LABELS.get(source_type, source_type)),
        "rub": lambda minor, exponent: i18n.format_money(minor, "RUB", exponent),
    }


@router.get(RECEIPTS)
def receipts_home(page: ReceiptsPage, request: Request) -> Response:
    status = request.query_params.get("status") or None
    if status not in (None, *rc.STATUSES):
        status = None
    paging = paging_of(request)
    with read_only(page.engine) as conn:
        total = rc.count_receipts(conn, page.tenant.id, status)
        found = rc.list_receipts(
            conn,
            page.tenant.id,
            status=status,
            newest_first=True,
            limit=paging.limit,
            offset=paging.offset,
        )
    return render(
        page,
        "receipts/list.html",
        receipts=found,
        status=status,
        paging=paging.with_total(total),
        statuses=[(value, str(label)) for value, label in STATUS_LABELS.items()],
        **_receipt_context(),
    )


def _outcome_message(receipt: rc.ReceiptView) -> tuple[str, str]:
    if receipt.status in (rc.WAIT, rc.DONE):
        return "success", _("Receipt No. %(id)s is accepted by the register.", id=receipt.id)
    if receipt.status == rc.FAILED:
        return "error", _(
            "The register refused receipt No. %(id)s again: %(error)s",
            id=receipt.id,
            error=error_text(receipt.last_error),
        )
    return "info", _(
        "The register did not answer; receipt No. %(id)s will be sent again later.",
        id=receipt.id,
    )


@router.post(RECEIPTS + "/{receipt_id:int}/retry")
def receipt_retry(page: ReceiptsPage, receipt_id: int) -> Response:
    try:
        receipt = rc.retry_and_send(page.engine, page.tenant.id, receipt_id, page.actor)
    except NotFound as error:
        raise HTTPException(404) from error
    except KopilkaError:
        # Done meanwhile (by the job or another person): the list shows how it stands.
        with read_only(page.engine) as conn:
            receipt = rc.get_receipt(conn, page.tenant.id, receipt_id)
    if page.request.headers.get("HX-Request") == "true":
        return render(page, "receipts/_row.html", r=receipt, **_receipt_context())
    kind, text = _outcome_message(receipt)
    with page.engine.begin() as conn:
        page.flash_next(conn, kind, text)
    return redirect(RECEIPTS, page.request)
