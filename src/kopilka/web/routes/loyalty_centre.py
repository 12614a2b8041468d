"""The Settings tab "Loyalty centre" (SPEC H-5, seed 000): owners and administrators.

Where the points that pay guests' bills come from: the company's own cards, or an
external loyalty processing centre over HTTP (the seed's "Kontur"; another Kopilka
server is one), with its address, the key Kopilka presents there and how long to wait
for it. The key is write-only: the tab shows only a hint of it, and a save with the key
field left empty keeps the key set before. "Test connection" asks the saved centre for
its point units, and for a card's balances when a number is typed, and says what went
wrong in words a person can act on. Every save is one transaction through
``kopilka.hotel.loyalty_centre``; a refusal lands next to its field and writes nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.datastructures import FormData
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, Unavailable
from kopilka.hotel import loyalty_centre as lc
from kopilka.hotel.loyalty_provider import CentreCheck, external_provider
from kopilka.loyalty.programs import LoyaltyErrorCode
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.cards import STATUS_NAMES
from kopilka.web.routes.settings import _save, _show  # the settings section's frame

router = APIRouter(include_in_schema=False)

CentrePage = Annotated[Page, Depends(require("settings.payment_types"))]
HOME = "/settings/loyalty-centre"
TAB = "loyalty-centre"
OWN, EXTERNAL = "own", "external"


async def _form_data(request: Request) -> FormData:
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]


class CentreForm(WebForm):
    mode = SelectField(
        lazy("Points for paying bills"),
        choices=[
            SelectChoice(OWN, lazy("The company's own cards")),
            SelectChoice(EXTERNAL, lazy("An external loyalty centre")),
        ],
        default=OWN,
    )
    base_url = StringField(
        lazy("Centre's address"),
        validators=[Length(max=lc.MAX_URL)],
        render_kw={
            "maxlength": lc.MAX_URL,
            "spellcheck": "false",
            "autocomplete": "off",
            "placeholder": "https://centre.example",
            "size": 50,
        },
    )
    # Write-only: never filled in from what is saved.
    api_key = PasswordField(
        lazy("Key"),
        validators=[Length(max=lc.MAX_KEY)],
        render_kw={"maxlength": lc.MAX_KEY, "autocomplete": "new-password", "size": 50},
    )
    timeout_ms = IntegerField(
        lazy("Wait for an answer, milliseconds"),
        default=lc.DEFAULT_TIMEOUT_MS,
        validators=[
            InputRequired(),
            NumberRange(min=lc.MIN_TIMEOUT_MS, max=lc.MAX_TIMEOUT_MS),
        ],
        render_kw={"min": lc.MIN_TIMEOUT_MS, "max": lc.MAX_TIMEOUT_MS, "step": 100},
    )
    enabled = BooleanField(lazy("Switched on"), default=True)


class CheckForm(WebForm):
    card = StringField(
        lazy("Card number (optional)"),
        validators=[Optional(), Length(max=64)],
        render_kw={"maxlength": 64, "autocomplete": "off", "inputmode": "numeric"},
    )


def _refusals() -> dict[str, tuple[str, str]]:
    return {
        lc.E.INVALID_CENTRE_URL: (
            "base_url",
            _(
                "Enter an address starting with http:// or https://, such as https://centre.example."
            ),
        ),
        lc.E.INVALID_CENTRE_KEY: (
            "api_key",
            _("Enter the key the centre gave: visible characters without spaces."),
        ),
        lc.E.INVALID_CENTRE_TIMEOUT: ("timeout_ms", _("Enter 100 to 60000 milliseconds.")),
    }


def _home(
    page: Page,
    *,
    form: CentreForm | None = None,
    check_form: CheckForm | None = None,
    checked: CentreCheck | None = None,
    failure: str | None = None,
    status_code: int = 200,
) -> Response:
    with read_only(page.engine) as conn:
        view = lc.centre_view(conn, page.tenant.id)
    if form is None:
        data: dict[str, object] = {"mode": OWN, "timeout_ms": lc.DEFAULT_TIMEOUT_MS}
        if view is not None:
            data = {
                "mode": EXTERNAL,
                "base_url": view.base_url,
                "timeout_ms": view.timeout_ms,
                "enabled": view.enabled,
            }
        form = CentreForm(data=data)
    return _show(
        page,
        "loyalty_centre.html",
        TAB,
        status_code=status_code,
        view=view,
        form=form,
        check_form=check_form or CheckForm(),
        checked=checked,
        failure=failure,
        number=i18n.format_number,
        status_names=STATUS_NAMES,
    )


@router.get(HOME)
def centre_home(page: CentrePage) -> Response:
    return _home(page)


@router.post(HOME)
def centre_save(page: CentrePage, posted: Posted) -> Response:
    form = CentreForm(posted)
    valid = form.validate()
    if form.mode.data == OWN:

        def clear(conn: Connection) -> bool:
            lc.clear_centre(conn, tenant_id=page.tenant.id, actor=page.actor)
            page.flash_next(conn, "success", _("Bills are paid with the company's own cards."))
            return True

        if _save(page, form, clear, _refusals):
            return redirect(HOME, page.request)
        return _home(page, form=form, status_code=422)
    if not (form.base_url.data or "").strip():
        form.add_error("base_url", _("Enter the centre's address."))
    if valid and not form.has_errors:

        def save(conn: Connection) -> lc.CentreView:
            saved = lc.set_centre(
                conn,
                tenant_id=page.tenant.id,
                base_url=form.base_url.data or "",
                api_key=form.api_key.data or None,
                timeout_ms=int(form.timeout_ms.data or 0),
                enabled=bool(form.enabled.data),
                actor=page.actor,
            )
            page.flash_next(
                conn, "success", _("The loyalty centre is saved. Test the connection now.")
            )
            return saved

        if _save(page, form, save, _refusals):
            return redirect(HOME, page.request)
    return _home(page, form=form, status_code=422)


@router.post(HOME + "/check")
def centre_check(page: CentrePage, posted: Posted) -> Response:
    check_form = CheckForm(posted)
    if not check_form.validate():
        return _home(page, check_form=check_form, status_code=422)
    with read_only(page.engine) as conn:
        centre = lc.get_centre(conn, page.tenant.id)
        provider = None if centre is None else external_provider(conn, centre)
    if provider is None:
        return _home(page, check_form=check_form, failure=_("Save a centre first."))
    number = (check_form.card.data or "").strip() or None
    try:
        checked = provider.check(number)
    except KopilkaError as error:
        return _home(page, check_form=check_form, failure=_failure(error, number or ""))
    return _home(page, check_form=check_form, checked=checked)


def _failure(error: KopilkaError, number: str) -> str:
    """What went wrong, in words a person can act on."""
    if isinstance(error, Unavailable):
        reason = error.params.get("reason")
        if reason == "timeout":
            return _("The centre did not answer in time: try again, or wait longer.")
        if reason == "unreachable":
            return _("The centre cannot be reached: check its address and the network.")
        if reason == "rejected_key":
            return _("The centre did not accept the key: enter the key it gave.")
        if reason == "malformed":
            return _(
                "Something answers at this address, but not a loyalty centre: check the address."
            )
        status = str(error.params.get("http_status", ""))
        return _("The centre failed to answer (HTTP %(status)s): try again later.", status=status)
    if error.code == LoyaltyErrorCode.LOYALTY_MODULE_DISABLED:
        return _("The centre answers, but its loyalty module is switched off.")
    if error.code == LoyaltyErrorCode.CARD_NOT_FOUND:
        return _("The centre answers, but has no card numbered %(number)s.", number=number)
    if error.code == LoyaltyErrorCode.INVALID_CARD_NUMBER:
        return _("The centre answers, but the card number is not one: check it.")
    return error.detail
