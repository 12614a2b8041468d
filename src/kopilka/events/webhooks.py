"""Webhook endpoints and their deliveries (SPEC X-3): where a tenant's events are sent.

An endpoint is a URL (http or https, never with a user name or password in it), a
description, the event types it wants (none: every type), a switch, and its signing
secret (``kopilka.events.signing``). The secret is shown once, when the endpoint is made;
after that only an owner may see it again (``reveal_secret``) or replace it
(``rotate_secret``). A replaced secret keeps signing beside the new one for
``ROTATION_GRACE``, so a receiver can switch over without rejecting a delivery.

A delivery is one event to one endpoint, written by ``kopilka.events.outbox.emit``::

    pending ──2xx──> delivered
       │  ^
       │  └── no 2xx: tried again later (kopilka.events.delivery.RETRY_DELAYS)
       └───── no 2xx on the last try, or 410 Gone ──> failed ──redeliver──> pending

``redeliver`` makes a failed or pending delivery due now, with a new round of tries; each
try is a row of ``webhook_attempts`` and stays. A switched-off endpoint gets no new
deliveries, and those it has wait until it is switched on again.

Every change writes one audit event; the secret never goes into one, nor into a ``repr``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import Connection, Select, delete, func, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import InvalidInput, NotFound, Refused
from kopilka.events.catalogue import check_event_types
from kopilka.events.error_codes import EventErrorCode as E
from kopilka.events.feed import event_key
from kopilka.events.schema import events, webhook_attempts, webhook_deliveries, webhook_endpoints
from kopilka.events.signing import new_secret
from kopilka.tenancy.audit import record_audit

MAX_URL = 500
MAX_DESCRIPTION = 200
ROTATION_GRACE = timedelta(hours=24)
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATUSES = (PENDING, DELIVERED, FAILED)
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    tenant_id: int
    url: str
    description: str
    event_types: tuple[str, ...]  # empty: every type
    is_active: bool
    created_at: datetime
    updated_at: datetime
    # Kept for signing only: never shown but by the actions that are for showing it,
    # never logged, never in an audit event.
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False, default=None)
    previous_secret_expires_at: datetime | None = None


def signing_secrets(
    secret: str, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> tuple[str, ...]:
    """The secrets a delivery at ``now`` is signed with: the current one, and the one it
    replaced while that is still honoured."""
    if previous and previous_expires_at is not None and now < previous_expires_at:
        return (secret, previous)
    return (secret,)


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        id=row.id,
        tenant_id=row.tenant_id,
        url=row.url,
        description=row.description,
        event_types=tuple(row.event_types or ()),
        is_active=bool(row.is_active),
        created_at=row.created_at,
        updated_at=row.updated_at,
        secret=row.secret,
        previous_secret=row.previous_secret,
        previous_secret_expires_at=row.previous_secret_expires_at,
    )


def _endpoint_not_found(endpoint_id: int) -> NotFound:
    return NotFound(
        E.WEBHOOK_ENDPOINT_NOT_FOUND,
        f"webhook endpoint {endpoint_id} does not exist",
        endpoint_id=endpoint_id,
    )


def _endpoint_row(conn: Connection, tenant_id: int, endpoint_id: int, *, lock: bool) -> Any:
    query = select(webhook_endpoints).where(
        webhook_endpoints.c.tenant_id == tenant_id, webhook_endpoints.c.id == endpoint_id
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise _endpoint_not_found(endpoint_id)
    return row


def get_endpoint(conn: Connection, tenant_id: int, endpoint_id: int) -> Endpoint:
    return _endpoint(_endpoint_row(conn, tenant_id, endpoint_id, lock=False))


def list_endpoints(conn: Connection, tenant_id: int) -> list[Endpoint]:
    """The tenant's endpoints in the order they were added."""
    query = (
        select(webhook_endpoints)
        .where(webhook_endpoints.c.tenant_id == tenant_id)
        .order_by(webhook_endpoints.c.id)
    )
    return [_endpoint(row) for row in conn.execute(query)]


def _bad_url(reason: str, detail: str) -> InvalidInput:
    """``reason`` (length, spaces, unreadable, scheme, host, credentials, fragment) lets a
    screen say it in the reader's language."""
    return InvalidInput(E.INVALID_WEBHOOK_URL, detail, field="url", reason=reason)


def clean_url(url: object) -> str:
    """An absolute http or https URL with a host and no credentials, at most ``MAX_URL``
    characters; ``invalid_webhook_url`` saying what is wrong otherwise."""
    text = url.strip() if isinstance(url, str) else ""
    if not 1 <= len(text) <= MAX_URL:
        raise _bad_url("length", f"a webhook URL is 1 to {MAX_URL} characters")
    if _SPACE_OR_CONTROL.search(text):
        raise _bad_url("spaces", "a webhook URL has no spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port  # a port out of range or not a number raises here
    except ValueError as error:
        raise _bad_url("unreadable", "the webhook URL cannot be read as a URL") from error
    if parts.scheme.lower() not in ("http", "https"):
        raise _bad_url("scheme", "a webhook URL starts with https:// (or http://)")
    if not parts.hostname:
        raise _bad_url("host", "a webhook URL names a host, such as https://crm.example.ru/hooks")
    if "@" in parts.netloc:
        # Credentials in a URL end up in logs and screens; the signature is the proof.
        raise _bad_url(
            "credentials",
            "a webhook URL carries no user name or password; the signature is the proof",
        )
    if parts.fragment or text.endswith("#"):
        raise _bad_url("fragment", "a webhook URL has no #fragment (it is never sent)")
    assert port is None or 0 <= port <= 65535
    return text


def _clean_description(description: object) -> str:
    text = description.strip() if isinstance(description, str) else None
    if text is None or len(text) > MAX_DESCRIPTION:
        raise InvalidInput(
            E.INVALID_WEBHOOK_ENDPOINT,
            f"a description is text of at most {MAX_DESCRIPTION} characters",
            field="description",
        )
    return text


def _check_active(is_active: object) -> bool:
    if not isinstance(is_active, bool):
        raise InvalidInput(
            E.INVALID_WEBHOOK_ENDPOINT, "is_active is true or false", field="is_active"
        )
    return is_active


def _audited(key: str, value: Any) -> Any:
    """A field as the audit trail keeps it (flat values: types as one string)."""
    if key == "event_types":
        return ",".join(value) or "*"
    return value


def create_endpoint(
    conn: Connection,
    *,
    tenant_id: int,
    url: str,
    actor: Actor,
    description: str = "",
    event_types: Iterable[str] = (),
    is_active: bool = True,
) -> Endpoint:
    """A new endpoint with a fresh secret (in the returned ``Endpoint.secret``: show it to
    the person who made it, once). Everything is checked before anything is written."""
    clean: dict[str, Any] = {
        "url": clean_url(url),
        "description": _clean_description(description),
        "event_types": check_event_types(event_types),
        "is_active": _check_active(is_active),
    }
    now = utcnow()
    endpoint_id = conn.execute(
        webhook_endpoints.insert().returning(webhook_endpoints.c.id),
        {
            **clean,
            "tenant_id": tenant_id,
            "secret": new_secret(),
            "created_at": now,
            "updated_at": now,
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="webhook_endpoint.create",
        object_type="webhook_endpoint",
        object_id=endpoint_id,
        details={key: _audited(key, value) for key, value in clean.items()},
    )
    created = get_endpoint(conn, tenant_id, endpoint_id)
    assert created.url == clean["url"] and created.secret.startswith("whsec_")
    return created


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED
"""A field ``update_endpoint`` leaves as it is."""

Keep = Literal[_Unchanged.UNCHANGED]


def update_endpoint(
    conn: Connection,
    *,
    tenant_id: int,
    endpoint_id: int,
    actor: Actor,
    url: str | Keep = UNCHANGED,
    description: str | Keep = UNCHANGED,
    event_types: Iterable[str] | Keep = UNCHANGED,
    is_active: bool | Keep = UNCHANGED,
) -> Endpoint:
    """Change the given fields; one audit event names each change with what it was. A
    call that changes nothing writes nothing. Deliveries already queued keep going to
    the endpoint (to its new URL, if that changed)."""
    current = _endpoint(_endpoint_row(conn, tenant_id, endpoint_id, lock=True))
    asked: dict[str, Any] = {}
    if url is not UNCHANGED:
        asked["url"] = clean_url(url)
    if description is not UNCHANGED:
        asked["description"] = _clean_description(description)
    if event_types is not UNCHANGED:
        asked["event_types"] = check_event_types(event_types)
    if is_active is not UNCHANGED:
        asked["is_active"] = _check_active(is_active)
    was = {
        "url": current.url,
        "description": current.description,
        "event_types": list(current.event_types),
        "is_active": current.is_active,
    }
    values = {key: value for key, value in asked.items() if value != was[key]}
    if not values:
        return current
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(**values, updated_at=utcnow())
    )
    details: dict[str, Any] = {}
    for key, value in values.items():
        details[key] = _audited(key, value)
        details[f"{key}_was"] = _audited(key, was[key])
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="webhook_endpoint.update",
        object_type="webhook_endpoint",
        object_id=endpoint_id,
        details=details,
    )
    updated = get_endpoint(conn, tenant_id, endpoint_id)
    assert updated.secret == current.secret
    return updated


def delete_endpoint(conn: Connection, *, tenant_id: int, endpoint_id: int, actor: Actor) -> None:
    """Remove an endpoint with its deliveries and their attempts (the events stay in the
    feed). A delivery being sent meanwhile is dropped when its answer comes."""
    current = _endpoint(_endpoint_row(conn, tenant_id, endpoint_id, lock=True))
    deliveries = select(webhook_deliveries.c.id).where(
        webhook_deliveries.c.tenant_id == tenant_id,
        webhook_deliveries.c.endpoint_id == endpoint_id,
    )
    conn.execute(
        delete(webhook_attempts).where(
            webhook_attempts.c.tenant_id == tenant_id,
            webhook_attempts.c.delivery_id.in_(deliveries),
        )
    )
    removed = conn.execute(
        delete(webhook_deliveries).where(
            webhook_deliveries.c.tenant_id == tenant_id,
            webhook_deliveries.c.endpoint_id == endpoint_id,
        )
    ).rowcount
    conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="webhook_endpoint.delete",
        object_type="webhook_endpoint",
        object_id=endpoint_id,
        details={"url": current.url, "deliveries_removed": removed},
    )


def rotate_secret(
    conn: Connection,
    *,
    tenant_id: int,
    endpoint_id: int,
    actor: Actor,
    now: datetime | None = None,
) -> Endpoint:
    """A new secret for the endpoint (in the returned ``Endpoint.secret``); the one it
    replaces still signs beside it for ``ROTATION_GRACE`` (one rotated before that drops
    out at once)."""
    current = _endpoint(_endpoint_row(conn, tenant_id, endpoint_id, lock=True))
    moment = now or utcnow()
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(
            secret=new_secret(),
            previous_secret=current.secret,
            previous_secret_expires_at=moment + ROTATION_GRACE,
            updated_at=moment,
        )
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="webhook_endpoint.rotate_secret",
        object_type="webhook_endpoint",
        object_id=endpoint_id,
        details={"previous_secret_expires_at": (moment + ROTATION_GRACE).isoformat()},
    )
    rotated = get_endpoint(conn, tenant_id, endpoint_id)
    assert rotated.secret != current.secret and rotated.previous_secret == current.secret
    return rotated


def reveal_secret(conn: Connection, *, tenant_id: int, endpoint_id: int, actor: Actor) -> str:
    """The endpoint's secret, for showing to an owner; who saw it is audited."""
    endpoint = get_endpoint(conn, tenant_id, endpoint_id)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="webhook_endpoint.reveal_secret",
        object_type="webhook_endpoint",
        object_id=endpoint_id,
    )
    return endpoint.secret


# --------------------------------------------------------------------------- deliveries


@dataclass(frozen=True, slots=True)
class AttemptView:
    id: int
    delivery_id: int
    at: datetime
    status_code: int | None  # None: no answer (the error says why)
    error: str
    duration_ms: int
    response_excerpt: str

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code <= 299


@dataclass(frozen=True, slots=True)
class DeliveryView:
    id: int
    tenant_id: int
    endpoint_id: int
    endpoint_url: str
    event_id: int
    event_type: str
    status: str  # pending | delivered | failed
    attempts: int  # tries in this round (since it was queued or redelivered)
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str
    delivered_at: datetime | None
    created_at: datetime

    @property
    def event_key(self) -> str:
        return event_key(self.event_id)

    @property
    def redeliverable(self) -> bool:
        return self.status in (PENDING, FAILED)


def _deliveries() -> Select[Any]:
    return select(
        webhook_deliveries,
        webhook_endpoints.c.url.label("endpoint_url"),
        events.c.type.label("event_type"),
    ).select_from(
        webhook_deliveries.join(
            webhook_endpoints, webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id
        ).join(events, events.c.id == webhook_deliveries.c.event_id)
    )


def _delivery(row: Any) -> DeliveryView:
    return DeliveryView(
        id=row.id,
        tenant_id=row.tenant_id,
        endpoint_id=row.endpoint_id,
        endpoint_url=row.endpoint_url,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
    )


def _delivery_not_found(delivery_id: int) -> NotFound:
    return NotFound(
        E.WEBHOOK_DELIVERY_NOT_FOUND,
        f"webhook delivery {delivery_id} does not exist",
        delivery_id=delivery_id,
    )


def get_delivery(conn: Connection, tenant_id: int, delivery_id: int) -> DeliveryView:
    row = conn.execute(
        _deliveries().where(
            webhook_deliveries.c.tenant_id == tenant_id, webhook_deliveries.c.id == delivery_id
        )
    ).first()
    if row is None:
        raise _delivery_not_found(delivery_id)
    return _delivery(row)


def _filtered(
    query: Select[Any], tenant_id: int, endpoint_id: int | None, status: str | None
) -> Select[Any]:
    assert status is None or status in STATUSES
    query = query.where(webhook_deliveries.c.tenant_id == tenant_id)
    if endpoint_id is not None:
        query = query.where(webhook_deliveries.c.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(webhook_deliveries.c.status == status)
    return query


def list_deliveries(
    conn: Connection,
    tenant_id: int,
    *,
    endpoint_id: int | None = None,
    status: str | None = None,
    after_id: int = 0,
    limit: int = 50,
    offset: int = 0,
    newest_first: bool = False,
) -> list[DeliveryView]:
    """The tenant's deliveries (to one endpoint, in one status), by id: oldest first
    after ``after_id`` (the API's pages), or newest first by ``offset`` (the screens')."""
    assert limit >= 1 and offset >= 0 and not (newest_first and after_id)
    query = _filtered(_deliveries(), tenant_id, endpoint_id, status)
    if newest_first:
        query = query.order_by(webhook_deliveries.c.id.desc()).offset(offset)
    else:
        query = query.where(webhook_deliveries.c.id > after_id).order_by(webhook_deliveries.c.id)
    return [_delivery(row) for row in conn.execute(query.limit(limit))]


def count_deliveries(
    conn: Connection, tenant_id: int, *, endpoint_id: int | None = None, status: str | None = None
) -> int:
    query = _filtered(
        select(func.count()).select_from(webhook_deliveries), tenant_id, endpoint_id, status
    )
    return int(conn.execute(query).scalar_one())


def failed_by_endpoint(conn: Connection, tenant_id: int) -> dict[int, int]:
    """How many deliveries failed, per endpoint (only endpoints with failures)."""
    query = (
        select(webhook_deliveries.c.endpoint_id, func.count())
        .where(webhook_deliveries.c.tenant_id == tenant_id, webhook_deliveries.c.status == FAILED)
        .group_by(webhook_deliveries.c.endpoint_id)
    )
    return {int(endpoint_id): int(count) for endpoint_id, count in conn.execute(query)}


def attempts_of(
    conn: Connection, tenant_id: int, delivery_ids: Collection[int]
) -> dict[int, list[AttemptView]]:
    """Each delivery's attempts, oldest first (a delivery never tried: an empty list)."""
    found: dict[int, list[AttemptView]] = {delivery_id: [] for delivery_id in delivery_ids}
    if not found:
        return found
    query = (
        select(webhook_attempts)
        .where(
            webhook_attempts.c.tenant_id == tenant_id,
            webhook_attempts.c.delivery_id.in_(list(found)),
        )
        .order_by(webhook_attempts.c.delivery_id, webhook_attempts.c.id)
    )
    for row in conn.execute(query):
        found[row.delivery_id].append(
            AttemptView(
                id=row.id,
                delivery_id=row.delivery_id,
                at=row.at,
                status_code=row.status_code,
                error=row.error,
                duration_ms=row.duration_ms,
                response_excerpt=row.response_excerpt,
            )
        )
    return found


def redeliver(
    conn: Connection,
    *,
    tenant_id: int,
    delivery_id: int,
    actor: Actor,
    now: datetime | None = None,
) -> DeliveryView:
    """Make a failed or pending delivery due now, with a new round of tries (its past
    attempts stay in the log). A delivered one is ``delivery_not_redeliverable``; one to a
    switched-off endpoint ``webhook_endpoint_disabled``."""
    row = conn.execute(
        select(webhook_deliveries)
        .where(webhook_deliveries.c.tenant_id == tenant_id, webhook_deliveries.c.id == delivery_id)
        .with_for_update()
    ).first()
    if row is None:
        raise _delivery_not_found(delivery_id)
    if row.status == DELIVERED:
        raise Refused(
            E.DELIVERY_NOT_REDELIVERABLE,
            f"webhook delivery {delivery_id} arrived already; there is nothing to redeliver",
            delivery_id=delivery_id,
        )
    endpoint = get_endpoint(conn, tenant_id, row.endpoint_id)
    if not endpoint.is_active:
        raise Refused(
            E.WEBHOOK_ENDPOINT_DISABLED,
            f"webhook endpoint {endpoint.id} is switched off; switch it on to redeliver",
            endpoint_id=endpoint.id,
        )
    conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id == delivery_id)
        .values(status=PENDING, attempts=0, next_attempt_at=now or utcnow())
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="webhook_delivery.redeliver",
        object_type="webhook_delivery",
        object_id=delivery_id,
        details={
            "status_was": row.status,
            "attempts_was": row.attempts,
            "event_id": row.event_id,
            "endpoint_id": row.endpoint_id,
        },
    )
    again = get_delivery(conn, tenant_id, delivery_id)
    assert again.status == PENDING and again.attempts == 0
    return again
