"""The loyalty module of the company, on screen (seed 002; SPEC P-9, C-7): owners only.

The tab shows whether the module is on and how much loyalty data there is, switches it on
and off (each switch an audit event; off, the POS gateway refuses every card request),
downloads everything as a zip, and removes it for good.

Removal asks three times, as the seed's "Выключение механизма биллинга" does: the module
must be switched off; the owner types the company's short name; and on the last page,
which carries a purge request (a secret good once, for a few minutes, for this owner
only: ``kopilka.loyalty.billing.request_purge``), confirms once more. The purge runs in
one transaction: a refusal at any step removes nothing.
"""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import Connection
from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length

from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.billing import (
    LoyaltyStatus,
    PurgeConfirmation,
    PurgeReport,
    export_loyalty,
    loyalty_status,
    purge_loyalty,
    request_purge,
    set_loyalty_enabled,
    snapshot,
)
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.tenancy.audit import record_audit
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.settings import _show  # the settings section's frame and tabs

router = APIRouter(include_in_schema=False)

LoyaltyPage = Annotated[Page, Depends(require("settings.loyalty"))]
HOME = "/settings/loyalty"
PURGE = "/settings/loyalty/purge"


async def _form_data(request: Request) -> FormData:
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]


class SlugForm(WebForm):
    slug = StringField(
        lazy("Company code"),
        validators=[DataRequired(), Length(max=64)],
        render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"},
    )


class ConfirmForm(WebForm):
    token = HiddenField()
    slug = HiddenField()


def _status(page: Page) -> LoyaltyStatus:
    with read_only(page.engine) as conn:
        return loyalty_status(conn, page.tenant.id)


def _counts(rows: dict[str, int]) -> dict[str, int]:
    """The figures people recognise, out of the rows by table."""
    return {
        "programs": rows.get("loyalty_programs", 0),
        "cards": rows.get("cards", 0),
        "certificates": rows.get("certificates", 0),
        "checks": rows.get("pos_checks", 0),
        "transfers": rows.get("transfers", 0),
        "rows": sum(rows.values()),
    }


# --------------------------------------------------------------------------- the tab


@router.get(HOME)
def loyalty_home(page: LoyaltyPage) -> Response:
    status = _status(page)
    return _show(
        page,
        "loyalty.html",
        "loyalty",
        status=status,
        counts=_counts(status.rows),
    )


@router.post("/settings/loyalty/switch")
def loyalty_switch(page: LoyaltyPage, posted: Posted) -> Response:
    """``enabled=on`` or ``enabled=off``; switching to what it is already changes nothing."""
    wanted = str(posted.get("enabled", ""))
    if wanted not in ("on", "off"):
        return redirect(HOME, page.request)

    def work(conn: Connection) -> None:
        changed = set_loyalty_enabled(
            conn, tenant_id=page.tenant.id, enabled=wanted == "on", actor=page.actor
        )
        if not changed:
            message = _("Nothing changed: the loyalty module is so already.")
        elif wanted == "on":
            message = _("The loyalty module is on: the terminals serve cards again.")
        else:
            message = _("The loyalty module is off: the terminals refuse every card request.")
        page.flash_next(conn, "success", message)

    run_transaction(page.engine, work)
    return redirect(HOME, page.request)


@router.get("/settings/loyalty/export")
def loyalty_export(page: LoyaltyPage) -> FileResponse:
    """Every loyalty row of the company as a zip, read in one snapshot and written to a
    temporary file first, so the download is whole or fails before it starts; then it
    streams from the disk in chunks, and the file is removed once it is sent."""
    handle, path = tempfile.mkstemp(prefix="kopilka-loyalty-", suffix=".zip")
    try:
        with os.fdopen(handle, "wb") as out, snapshot(page.engine) as conn:
            report = export_loyalty(conn, page.tenant.id, out)
        # Personal data of card holders leave the server: the audit log says who took them.
        run_transaction(
            page.engine,
            lambda conn: record_audit(
                conn,
                tenant_id=page.tenant.id,
                actor=page.actor,
                action="loyalty.export",
                object_type="tenant",
                object_id=page.tenant.id,
                details={"rows": report.total_rows, "checksum": report.checksum},
            ),
        )
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"loyalty-{page.tenant.slug}-{utcnow():%Y%m%d-%H%M%S}.zip",
        background=BackgroundTask(os.unlink, path),
    )


# --------------------------------------------------------------------------- the purge


def _purge_page(
    page: Page, form: SlugForm, status: LoyaltyStatus, *, status_code: int = 200
) -> Response:
    return _show(
        page,
        "loyalty_purge.html",
        "loyalty",
        status_code=status_code,
        form=form,
        status=status,
        counts=_counts(status.rows),
    )


def _refuse_while_on(page: Page) -> Response:
    with page.engine.begin() as conn:
        page.flash_next(conn, "error", _("Switch the loyalty module off before removing its data."))
    return redirect(HOME, page.request)


@router.get(PURGE)
def purge_start(page: LoyaltyPage) -> Response:
    """The second confirmation (the switch was the first): type the company's code."""
    status = _status(page)
    if status.enabled:
        return _refuse_while_on(page)
    return _purge_page(page, SlugForm(), status)


@router.post(PURGE)
def purge_request(page: LoyaltyPage, posted: Posted) -> Response:
    """The typed code is checked; a purge request is made and the last page asks again."""
    form = SlugForm(posted)
    status = _status(page)
    if status.enabled:
        return _refuse_while_on(page)
    if form.validate() and (form.slug.data or "").strip().lower() != page.tenant.slug:
        form.add_error("slug", _("This is not the company's code; type it as shown."))
    if form.has_errors:
        return _purge_page(page, form, status, status_code=422)
    try:
        request = run_transaction(
            page.engine,
            lambda conn: request_purge(conn, tenant_id=page.tenant.id, actor=page.actor),
        )
    except KopilkaError as error:
        if error.code == E.LOYALTY_STILL_ENABLED:
            return _refuse_while_on(page)
        raise
    confirm = ConfirmForm(data={"token": request.token, "slug": page.tenant.slug})
    return _show(
        page,
        "loyalty_purge_confirm.html",
        "loyalty",
        form=confirm,
        counts=_counts(status.rows),
        expires_at=request.expires_at,
    )


@router.post("/settings/loyalty/purge/confirm")
def purge_confirm(page: LoyaltyPage, posted: Posted) -> Response:
    """The third confirmation: the purge itself, all at once; then what was removed."""
    form = ConfirmForm(posted)
    confirmation = PurgeConfirmation(str(form.token.data or ""), str(form.slug.data or ""))

    def work(conn: Connection) -> PurgeReport:
        report = purge_loyalty(
            conn, tenant_id=page.tenant.id, confirmation=confirmation, actor=page.actor
        )
        page.flash_next(conn, "success", _removed(report))
        return report

    try:
        run_transaction(page.engine, work)
    except KopilkaError as error:
        refusals: dict[str, tuple[str, str]] = {
            E.LOYALTY_STILL_ENABLED: (
                HOME,
                _("Switch the loyalty module off before removing its data."),
            ),
            E.PURGE_REQUEST_INVALID: (
                PURGE,
                _("The confirmation has expired or was used already; start the removal again."),
            ),
            E.PURGE_NOT_CONFIRMED: (
                PURGE,
                _("This is not the company's code; type it as shown."),
            ),
            E.PURGE_CROSSES_LEDGER: (
                HOME,
                _(
                    "Nothing was removed: loyalty operations also moved accounts that stay "
                    "(%(accounts)s).",
                    accounts=", ".join(map(str, error.params.get("accounts", [])[:10])),
                ),
            ),
        }
        if error.code not in refusals:
            raise
        target, message = refusals[error.code]
        with page.engine.begin() as conn:
            page.flash_next(conn, "error", message)
        return redirect(target, page.request)
    return redirect(HOME, page.request)


def _removed(report: PurgeReport) -> str:
    counts = _counts(report.removed)
    return _(
        "The loyalty data are removed: programs %(programs)s, cards %(cards)s, "
        "gift certificates %(certificates)s, checks %(checks)s; %(rows)s rows in all.",
        **{key: i18n.format_number(value, 0) for key, value in counts.items()},
    )
