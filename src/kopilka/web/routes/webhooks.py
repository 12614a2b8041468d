"""Settings -> Webhooks (SPEC X-3): where the tenant's events are sent, and how it went.

* The endpoints (owners and administrators): added, edited, switched off, deleted. The
  signing secret is shown once, on the page that follows adding one; afterwards an owner
  may reveal it or replace it (the old one signs beside the new for a day).
* The delivery log: every event sent to every endpoint, newest first, with its status,
  tries, the endpoint's last answer and the next try; a delivery's page lists each
  attempt and the event as it was sent. Redeliver makes a failed or pending delivery due
  now (htmx swaps the row in place; without scripts the form posts and the page comes
  back); the server's worker sends it within seconds.

Every write is one transaction through ``kopilka.events.webhooks``; a refusal lands by
its field, in the reader's language.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from wtforms import BooleanField, SelectChoice, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.events import webhooks as wh
from kopilka.events.catalogue import EVENT_TYPES
from kopilka.events.delivery import MAX_ATTEMPTS
from kopilka.events.error_codes import EventErrorCode as E
from kopilka.events.feed import get_event
from kopilka.ledger.posting import run_transaction
from kopilka.web.deps import Page, redirect, render, require, safe_next
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.paging import paging_of
from kopilka.web.routes.settings import _show  # the settings section's frame

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

WebhooksPage = Annotated[Page, Depends(require("settings.webhooks"))]
SecretsPage = Annotated[Page, Depends(require("settings.webhook_secrets"))]
HOME = "/settings/webhooks"
LOG = HOME + "/deliveries"
TAB = "webhooks"

EVENT_LABELS = {
    "subscriber.activated": lazy("Subscriber activated"),
    "subscriber.status_changed": lazy("Subscriber's status changed"),
    "promised_payment.taken": lazy("Promised payment taken"),
    "promised_payment.ended": lazy("Promised payment ended"),
    "membership.sold": lazy("Membership sold"),
    "membership.refunded": lazy("Membership refunded"),
}
assert set(EVENT_LABELS) == set(EVENT_TYPES)
STATUS_LABELS = {
    wh.PENDING: lazy("Being delivered"),
    wh.DELIVERED: lazy("Delivered"),
    wh.FAILED: lazy("Not delivered"),
}


async def _form_data(request: Request) -> FormData:
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]


class EndpointForm(WebForm):
    url = StringField(
        lazy("Address (URL)"),
        validators=[DataRequired(), Length(max=wh.MAX_URL)],
        render_kw={
            "inputmode": "url",
            "size": 60,
            "maxlength": wh.MAX_URL,
            "spellcheck": "false",
            "autocomplete": "off",
            "placeholder": "https://crm.example.ru/kopilka/hooks",
        },
    )
    description = StringField(
        lazy("Description"),
        validators=[Length(max=wh.MAX_DESCRIPTION)],
        render_kw={"maxlength": wh.MAX_DESCRIPTION},
    )
    event_types = SelectMultipleField(
        lazy("Events to send"),
        choices=[SelectChoice(name, label) for name, label in EVENT_LABELS.items()],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validate_choice=True,
    )
    is_active = BooleanField(lazy("Switched on: events are sent"), default=True)

    def fields(self) -> dict[str, Any]:
        return {
            "url": (self.url.data or "").strip(),
            "description": (self.description.data or "").strip(),
            "event_types": list(self.event_types.data or []),
            "is_active": bool(self.is_active.data),
        }


# --------------------------------------------------------------------------- helpers


def _url_messages() -> dict[str, str]:
    example = "https://crm.example.ru/kopilka/hooks"
    return {
        "credentials": _(
            "Leave the user name and password out of the address: the signature proves "
            "the events are ours."
        ),
        "fragment": _("Leave the #part out of the address: it is never sent."),
        "length": _("Enter an address of at most %(count)s characters.", count=wh.MAX_URL),
        "": _("Enter an address that starts with https://, such as %(url)s.", url=example),
    }


def _refuse(form: EndpointForm, error: KopilkaError) -> None:
    """A domain refusal shown by its field, in the reader's language."""
    if error.code == E.INVALID_WEBHOOK_URL:
        messages = _url_messages()
        form.add_error("url", messages.get(str(error.params.get("reason")), messages[""]))
    elif error.code == E.INVALID_WEBHOOK_ENDPOINT and error.params.get("field") == "description":
        form.add_error(
            "description", _("Enter at most %(count)s characters.", count=wh.MAX_DESCRIPTION)
        )
    elif error.code == E.UNKNOWN_EVENT_TYPE:
        form.add_error("event_types", _("Choose the events from the list."))
    else:
        form.add_error("", _("Check the endpoint's settings."))


def _save(page: Page, form: EndpointForm, work: Callable[[Connection], T]) -> T | None:
    try:
        return run_transaction(page.engine, work)
    except NotFound as error:
        raise HTTPException(404) from error
    except KopilkaError as error:
        _refuse(form, error)
        return None


def _endpoint(page: Page, endpoint_id: int) -> wh.Endpoint:
    with read_only(page.engine) as conn:
        try:
            return wh.get_endpoint(conn, page.tenant.id, endpoint_id)
        except NotFound as error:
            raise HTTPException(404) from error


_LONG_RUN = re.compile(r"\S{40}")


def breakable(text: str) -> str:
    """``text`` with a zero-width space in every run of 40 characters without one, so a
    long token of an answer (JSON without spaces, a hash) wraps on screen."""
    return _LONG_RUN.sub(lambda run: run.group(0) + "\u200b", text)


def _labels() -> dict[str, Any]:
    return {"event_labels": EVENT_LABELS, "status_labels": STATUS_LABELS}


def _home(page: Page, form: EndpointForm | None = None, status_code: int = 200) -> Response:
    with read_only(page.engine) as conn:
        endpoints = wh.list_endpoints(conn, page.tenant.id)
        failed = wh.failed_by_endpoint(conn, page.tenant.id)
    return _show(
        page,
        "webhooks.html",
        TAB,
        status_code=status_code,
        endpoints=endpoints,
        failed=failed,
        form=form or EndpointForm(),
        **_labels(),
    )


def _secret_page(page: Page, endpoint: wh.Endpoint, why: str) -> Response:
    return _show(page, "webhook_secret.html", TAB, endpoint=endpoint, why=why)


# --------------------------------------------------------------------------- endpoints


@router.get(HOME)
def webhooks_home(page: WebhooksPage) -> Response:
    return _home(page)


@router.post(HOME)
def webhook_create(page: WebhooksPage, posted: Posted) -> Response:
    form = EndpointForm(posted)
    if form.validate():
        created = _save(
            page,
            form,
            lambda conn: wh.create_endpoint(
                conn, tenant_id=page.tenant.id, actor=page.actor, **form.fields()
            ),
        )
        if created is not None:
            return _secret_page(page, created, "created")
    return _home(page, form, 422)


def _edit_page(
    page: Page, target: wh.Endpoint, form: EndpointForm, status_code: int = 200
) -> Response:
    return _show(
        page,
        "webhook_edit.html",
        TAB,
        status_code=status_code,
        target=target,
        form=form,
        can_see_secret=page.can("settings.webhook_secrets"),
        **_labels(),
    )


@router.get(HOME + "/{endpoint_id:int}")
def webhook_edit(page: WebhooksPage, endpoint_id: int) -> Response:
    target = _endpoint(page, endpoint_id)
    form = EndpointForm(
        data={
            "url": target.url,
            "description": target.description,
            "event_types": list(target.event_types),
            "is_active": target.is_active,
        }
    )
    return _edit_page(page, target, form)


@router.post(HOME + "/{endpoint_id:int}")
def webhook_update(page: WebhooksPage, endpoint_id: int, posted: Posted) -> Response:
    target = _endpoint(page, endpoint_id)
    form = EndpointForm(posted)
    if form.validate():

        def work(conn: Connection) -> wh.Endpoint:
            updated = wh.update_endpoint(
                conn,
                tenant_id=page.tenant.id,
                endpoint_id=endpoint_id,
                actor=page.actor,
                **form.fields(),
            )
            page.flash_next(conn, "success", _("The endpoint %(url)s is saved.", url=updated.url))
            return updated

        if _save(page, form, work):
            return redirect(HOME, page.request)
    return _edit_page(page, target, form, 422)


@router.post(HOME + "/{endpoint_id:int}/switch")
def webhook_switch(page: WebhooksPage, endpoint_id: int, posted: Posted) -> Response:
    """Switch an endpoint on or off from the list."""
    is_active = posted.get("is_active") == "1"

    def work(conn: Connection) -> None:
        changed = wh.update_endpoint(
            conn,
            tenant_id=page.tenant.id,
            endpoint_id=endpoint_id,
            is_active=is_active,
            actor=page.actor,
        )
        text = (
            _("The endpoint %(url)s is switched on.", url=changed.url)
            if is_active
            else _("The endpoint %(url)s is switched off.", url=changed.url)
        )
        page.flash_next(conn, "success", text)

    try:
        run_transaction(page.engine, work)
    except NotFound as error:
        raise HTTPException(404) from error
    return redirect(HOME, page.request)


@router.get(HOME + "/{endpoint_id:int}/delete")
def webhook_delete_confirm(page: WebhooksPage, endpoint_id: int) -> Response:
    target = _endpoint(page, endpoint_id)
    with read_only(page.engine) as conn:
        deliveries = wh.count_deliveries(conn, page.tenant.id, endpoint_id=endpoint_id)
    return _show(page, "webhook_delete.html", TAB, target=target, deliveries=deliveries)


@router.post(HOME + "/{endpoint_id:int}/delete")
def webhook_delete(page: WebhooksPage, endpoint_id: int) -> Response:
    target = _endpoint(page, endpoint_id)

    def work(conn: Connection) -> None:
        wh.delete_endpoint(
            conn, tenant_id=page.tenant.id, endpoint_id=endpoint_id, actor=page.actor
        )
        page.flash_next(conn, "success", _("The endpoint %(url)s is deleted.", url=target.url))

    try:
        run_transaction(page.engine, work)
    except NotFound as error:
        raise HTTPException(404) from error
    return redirect(HOME, page.request)


@router.post(HOME + "/{endpoint_id:int}/reveal")
def webhook_reveal(page: SecretsPage, endpoint_id: int) -> Response:
    """Owners: the secret, shown on a page of its own (and the showing audited)."""
    try:
        run_transaction(
            page.engine,
            lambda conn: wh.reveal_secret(
                conn, tenant_id=page.tenant.id, endpoint_id=endpoint_id, actor=page.actor
            ),
        )
    except NotFound as error:
        raise HTTPException(404) from error
    return _secret_page(page, _endpoint(page, endpoint_id), "revealed")


@router.post(HOME + "/{endpoint_id:int}/rotate")
def webhook_rotate(page: SecretsPage, endpoint_id: int) -> Response:
    """Owners: a new secret; the old one signs beside it for a day."""
    try:
        rotated = run_transaction(
            page.engine,
            lambda conn: wh.rotate_secret(
                conn, tenant_id=page.tenant.id, endpoint_id=endpoint_id, actor=page.actor
            ),
        )
    except NotFound as error:
        raise HTTPException(404) from error
    return _secret_page(page, rotated, "rotated")


# --------------------------------------------------------------------------- deliveries


def _log_filters(request: Request) -> tuple[int | None, str | None]:
    raw = request.query_params.get("endpoint_id", "")
    endpoint_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    status = request.query_params.get("status") or None
    return endpoint_id, status if status in wh.STATUSES else None


@router.get(LOG)
def deliveries_log(page: WebhooksPage, request: Request) -> Response:
    endpoint_id, status = _log_filters(request)
    paging = paging_of(request)
    with read_only(page.engine) as conn:
        endpoints = wh.list_endpoints(conn, page.tenant.id)
        if endpoint_id not in {e.id for e in endpoints}:
            endpoint_id = None
        total = wh.count_deliveries(conn, page.tenant.id, endpoint_id=endpoint_id, status=status)
        found = wh.list_deliveries(
            conn,
            page.tenant.id,
            endpoint_id=endpoint_id,
            status=status,
            newest_first=True,
            limit=paging.limit,
            offset=paging.offset,
        )
    return _show(
        page,
        "webhook_deliveries.html",
        TAB,
        deliveries=found,
        endpoints=endpoints,
        endpoint_id=endpoint_id,
        status=status,
        paging=paging.with_total(total),
        max_attempts=MAX_ATTEMPTS,
        **_labels(),
    )


@router.get(LOG + "/{delivery_id:int}")
def delivery_page(page: WebhooksPage, delivery_id: int) -> Response:
    with read_only(page.engine) as conn:
        try:
            delivery = wh.get_delivery(conn, page.tenant.id, delivery_id)
        except NotFound as error:
            raise HTTPException(404) from error
        attempts = wh.attempts_of(conn, page.tenant.id, [delivery_id])[delivery_id]
        event = get_event(conn, page.tenant.id, delivery.event_id)
    body = json.dumps(event.envelope(), ensure_ascii=False, indent=2)
    return _show(
        page,
        "webhook_delivery.html",
        TAB,
        d=delivery,
        attempts=attempts,
        body=body,
        breakable=breakable,
        max_attempts=MAX_ATTEMPTS,
        **_labels(),
    )


@router.post(LOG + "/{delivery_id:int}/redeliver")
def delivery_redeliver(page: WebhooksPage, delivery_id: int) -> Response:
    kind, text = (
        "success",
        _("Delivery No. %(id)s will be sent again in a few seconds.", id=delivery_id),
    )
    try:
        delivery = run_transaction(
            page.engine,
            lambda conn: wh.redeliver(
                conn, tenant_id=page.tenant.id, delivery_id=delivery_id, actor=page.actor
            ),
        )
    except NotFound as error:
        raise HTTPException(404) from error
    except KopilkaError as error:
        # Delivered meanwhile, or the endpoint switched off: the row shows how it stands.
        kind = "error"
        text = (
            _("Switch the endpoint on first: a switched-off endpoint gets nothing.")
            if error.code == E.WEBHOOK_ENDPOINT_DISABLED
            else _("Delivery No. %(id)s has arrived already.", id=delivery_id)
        )
        with read_only(page.engine) as conn:
            delivery = wh.get_delivery(conn, page.tenant.id, delivery_id)
    if page.request.headers.get("HX-Request") == "true":
        return render(page, "settings/_webhook_delivery_row.html", d=delivery, **_labels())
    with page.engine.begin() as conn:
        page.flash_next(conn, kind, text)
    # Back where the button was: the delivery's page, or the log as it was filtered.
    back = urlsplit(page.request.headers.get("referer") or "")
    target = safe_next(back.path + (f"?{back.query}" if back.query else ""))
    return redirect(target if target.startswith(LOG) else LOG, page.request)
