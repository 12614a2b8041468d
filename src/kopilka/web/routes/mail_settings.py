"""Settings -> E-mail: what Kopilka sent to clients, and what it could not.

* The log (owners and administrators): every message of the outbox, newest first, with
  its recipient, subject, kind, status, tries, the server's last answer and when it was
  sent; filtered by status, paged by id ("older" continues below the last one shown).
* A message's page: the same, with the text and HTML it carries.
* "Send again" makes a failed message due now, with a new round of tries (htmx swaps the
  row in place; without scripts the form posts and the page comes back); the server's
  worker sends it within seconds.

The messages themselves are written by the domains (``kopilka.mail.outbox.queue_mail``);
this screen only reads them and sends a failed one again, in one transaction.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from kopilka.core.db import read_only
from kopilka.core.errors import NotFound, Refused
from kopilka.ledger.posting import run_transaction
from kopilka.mail import outbox
from kopilka.mail.sender import MAX_ATTEMPTS
from kopilka.mail.smtp import SmtpConfig
from kopilka.web.deps import Page, redirect, render, require, safe_next
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.settings import _show  # the settings section's frame

router = APIRouter(include_in_schema=False)

MailPage = Annotated[Page, Depends(require("settings.mail"))]
HOME = "/settings/mail"
TAB = "mail"
PER_PAGE = 50

STATUS_LABELS = {
    outbox.PENDING: lazy("Waiting to be sent"),
    outbox.SENT: lazy("Sent"),
    outbox.FAILED: lazy("Not sent"),
}
# What the domains send; a kind not named here is shown as it is stored.
KIND_LABELS = {
    "membership_sold": lazy("Membership sold"),
}


def _labels() -> dict[str, Any]:
    return {
        "status_labels": STATUS_LABELS,
        "kind_labels": KIND_LABELS,
        "max_attempts": MAX_ATTEMPTS,
    }


def _cursor(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


@router.get(HOME)
def mail_log(page: MailPage, request: Request) -> Response:
    status = request.query_params.get("status") or None
    status = status if status in outbox.STATUSES else None
    before = _cursor(request.query_params.get("before", ""))
    with read_only(page.engine) as conn:
        counts = outbox.count_mail(conn, page.tenant.id)
        found = outbox.list_mail(
            conn, page.tenant.id, status=status, before_id=before, limit=PER_PAGE + 1
        )
    shown, more = found[:PER_PAGE], len(found) > PER_PAGE
    keep = {"status": status} if status else {}
    older = f"{HOME}?{urlencode({**keep, 'before': shown[-1].id})}" if more else None
    first_page = HOME + (f"?{urlencode(keep)}" if keep else "")
    config = SmtpConfig.from_settings()
    return _show(
        page,
        "mail.html",
        TAB,
        messages=shown,
        counts=counts,
        status=status,
        older_url=older,
        newest_url=first_page if before is not None else None,
        server=config.where,
        sender=config.mail_from,
        **_labels(),
    )


@router.get(HOME + "/{mail_id:int}")
def mail_message(page: MailPage, mail_id: int) -> Response:
    with read_only(page.engine) as conn:
        try:
            message = outbox.get_mail(conn, page.tenant.id, mail_id)
        except NotFound as error:
            raise HTTPException(404) from error
    return _show(page, "mail_message.html", TAB, m=message, **_labels())


@router.post(HOME + "/{mail_id:int}/retry")
def mail_retry(page: MailPage, mail_id: int) -> Response:
    kind, text = "success", _("Message No. %(id)s will be sent again in a few seconds.", id=mail_id)
    try:
        message = run_transaction(
            page.engine,
            lambda conn: outbox.retry_now(
                conn, tenant_id=page.tenant.id, mail_id=mail_id, actor=page.actor
            ),
        )
    except NotFound as error:
        raise HTTPException(404) from error
    except Refused:
        # Sent or sent again meanwhile: the row shows how it stands.
        kind = "error"
        text = _("Message No. %(id)s is not among the unsent ones any more.", id=mail_id)
        with read_only(page.engine) as conn:
            message = outbox.get_mail(conn, page.tenant.id, mail_id)
    if page.request.headers.get("HX-Request") == "true":
        return render(page, "settings/_mail_row.html", m=message, **_labels())
    with page.engine.begin() as conn:
        page.flash_next(conn, kind, text)
    # Back where the button was: the message's page, or the log as it was filtered.
    back = urlsplit(page.request.headers.get("referer") or "")
    target = safe_next(back.path + (f"?{back.query}" if back.query else ""))
    return redirect(target if target.startswith(HOME) else HOME, page.request)
