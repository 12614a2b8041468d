"""Events and webhooks (SPEC X-3) over HTTP; owners and administrators only.

* ``GET /api/v1/events``: the tenant's events, oldest first, in the shape webhooks carry
  them. ``?after=evt_42`` resumes after an event the caller has (the usual
  ``?cursor=<next_cursor>`` pages as everywhere); ``?type=`` (repeatable) filters.
* ``/api/v1/webhooks/endpoints``: list, add (the reply carries the signing ``secret``,
  the only time it is shown), read, change, delete; ``POST .../{id}/rotate-secret``
  (owners only) replaces the secret and shows the new one, the old one signing beside it
  for 24 hours.
* ``/api/v1/webhooks/deliveries``: each event to each endpoint, with its attempts
  (``?endpoint_id=``, ``?status=pending|delivered|failed``, by cursor); ``POST
  .../{id}/redeliver`` makes a failed or pending one due now.
* ``GET /api/v1/webhooks/event-types``: the types there are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from kopilka.api.deps import (
    MAX_ID,
    MAX_PAGE,
    EngineDep,
    PageDep,
    Principal,
    decode_cursor,
    encode_cursor,
    require_roles,
)
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput
from kopilka.events import webhooks as wh
from kopilka.events.catalogue import EVENT_TYPES
from kopilka.events.error_codes import EventErrorCode as E
from kopilka.events.feed import EventView, list_events, parse_event_key
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.roles import PERMISSIONS

router = APIRouter(prefix=API_PREFIX, tags=["events and webhooks"])

EventReader = Annotated[Principal, Depends(require_roles(*sorted(PERMISSIONS["events.view"])))]
WebhookManager = Annotated[
    Principal, Depends(require_roles(*sorted(PERMISSIONS["settings.webhooks"])))
]
SecretKeeper = Annotated[
    Principal, Depends(require_roles(*sorted(PERMISSIONS["settings.webhook_secrets"])))
]
EndpointId = Annotated[int, Path(ge=1, le=MAX_ID)]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_ID)]
# Wide enough for anything sensible; the rules (and their codes) are the domain's.
LooseText = Annotated[str, Field(max_length=2000)]
EventTypes = Annotated[list[str], Field(max_length=50)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- events


class EventOut(BaseModel):
    """An event as webhooks carry it (the same members, the same values)."""

    id: str = Field(examples=["evt_42"], description="also the webhooks' `webhook-id`")
    type: str = Field(examples=["promised_payment.taken"])
    occurred_at: str = Field(
        examples=["2026-12-07T08:03:44.032253+00:00"], description="ISO 8601 with offset"
    )
    tenant: str = Field(examples=["demo"], description="the tenant's short name")
    data: dict[str, Any] = Field(description="the event's payload; see docs/webhooks.md")


class EventList(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


def event_out(event: EventView) -> EventOut:
    return EventOut(**event.envelope())


@router.get("/events", responses=problem_responses(401, 403, 422, 503))
def events_feed(
    principal: EventReader,
    engine: EngineDep,
    after: Annotated[
        str | None,
        Query(max_length=40, description="an event id such as `evt_42`: the events after it"),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page")
    ] = None,
    type_: Annotated[
        list[str] | None,
        Query(alias="type", max_length=50, description="only these types (repeatable)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page")] = 50,
) -> EventList:
    """The tenant's events, oldest first: an alternative (or a back-up) to webhooks. To
    follow the feed, keep the `id` of the last event handled and ask with `after=` it."""
    if after is not None and cursor is not None:
        raise InvalidInput(E.INVALID_EVENT_ID, "send either after or cursor, not both")
    after_id = 0
    if after is not None:
        after_id = parse_event_key(after)
    elif cursor is not None:
        after_id = decode_cursor(cursor)
    with read_only(engine) as conn:
        found = list_events(
            conn, principal.tenant_id, after_id=after_id, types=type_ or (), limit=limit + 1
        )
    more = len(found) > limit
    found = found[:limit]
    return EventList(
        items=[event_out(event) for event in found],
        next_cursor=encode_cursor(found[-1].id) if more else None,
    )


class EventTypeOut(BaseModel):
    type: str
    description: str


@router.get("/webhooks/event-types", responses=problem_responses(401, 403, 503))
def event_types(principal: WebhookManager) -> list[EventTypeOut]:
    """The event types there are, for an endpoint's `event_types` and the feed's `type`."""
    return [EventTypeOut(type=name, description=text) for name, text in EVENT_TYPES.items()]


# --------------------------------------------------------------------------- endpoints


class EndpointOut(BaseModel):
    id: int
    url: str
    description: str
    event_types: list[str] = Field(description="the types sent; empty: every type")
    is_active: bool
    previous_secret_valid_until: datetime | None = Field(
        description="after a rotation: until when the old secret still signs beside the new"
    )
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        description="the signing secret; shown only now: keep it",
    )


class EndpointList(BaseModel):
    items: list[EndpointOut]


class EndpointIn(Strict):
    url: LooseText = Field(examples=["https://crm.example.ru/kopilka/webhooks"])
    description: LooseText = ""
    event_types: EventTypes = Field(
        default_factory=list, description="the types to send; empty or absent: every type"
    )
    is_active: bool = True


class EndpointPatch(Strict):
    """Only the fields sent change; none of them may be null."""

    url: LooseText | None = None
    description: LooseText | None = None
    event_types: EventTypes | None = None
    is_active: bool | None = None


def endpoint_fields(endpoint: wh.Endpoint) -> dict[str, Any]:
    expires = endpoint.previous_secret_expires_at
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "is_active": endpoint.is_active,
        "previous_secret_valid_until": expires if expires and expires > utcnow() else None,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


@router.get("/webhooks/endpoints", responses=problem_responses(401, 403, 503))
def endpoints_list(principal: WebhookManager, engine: EngineDep) -> EndpointList:
    """The tenant's endpoints in the order they were added (never their secrets)."""
    with read_only(engine) as conn:
        found = wh.list_endpoints(conn, principal.tenant_id)
    return EndpointList(items=[EndpointOut(**endpoint_fields(e)) for e in found])


@router.post(
    "/webhooks/endpoints",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422, 503),
)
def endpoint_create(
    body: EndpointIn, principal: WebhookManager, engine: EngineDep
) -> EndpointWithSecret:
    """An endpoint with a new signing secret, which this reply shows once. A bad URL is
    422 `invalid_webhook_url`, an unknown type 422 `unknown_event_type`."""
    created = run_transaction(
        engine,
        lambda conn: wh.create_endpoint(
            conn,
            tenant_id=principal.tenant_id,
            url=body.url,
            description=body.description,
            event_types=body.event_types,
            is_active=body.is_active,
            actor=principal.actor,
        ),
    )
    return EndpointWithSecret(**endpoint_fields(created), secret=created.secret)


@router.get(
    "/webhooks/endpoints/{endpoint_id:int}", responses=problem_responses(401, 403, 404, 422, 503)
)
def endpoint_read(
    endpoint_id: EndpointId, principal: WebhookManager, engine: EngineDep
) -> EndpointOut:
    with read_only(engine) as conn:
        return EndpointOut(
            **endpoint_fields(wh.get_endpoint(conn, principal.tenant_id, endpoint_id))
        )


@router.patch(
    "/webhooks/endpoints/{endpoint_id:int}", responses=problem_responses(401, 403, 404, 422, 503)
)
def endpoint_update(
    endpoint_id: EndpointId, body: EndpointPatch, principal: WebhookManager, engine: EngineDep
) -> EndpointOut:
    """Change the URL, description, types or switch. Deliveries already queued go to the
    endpoint as it is when they are sent."""
    changes: dict[str, Any] = {}
    for name in sorted(body.model_fields_set):
        value = getattr(body, name)
        if value is None:
            raise InvalidInput(E.INVALID_WEBHOOK_ENDPOINT, f"{name} may not be null", field=name)
        changes[name] = value
    updated = run_transaction(
        engine,
        lambda conn: wh.update_endpoint(
            conn,
            tenant_id=principal.tenant_id,
            endpoint_id=endpoint_id,
            actor=principal.actor,
            **changes,
        ),
    )
    return EndpointOut(**endpoint_fields(updated))


@router.delete(
    "/webhooks/endpoints/{endpoint_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422, 503),
)
def endpoint_delete(
    endpoint_id: EndpointId, principal: WebhookManager, engine: EngineDep
) -> Response:
    """Remove the endpoint with its deliveries and their attempts; the events stay."""
    run_transaction(
        engine,
        lambda conn: wh.delete_endpoint(
            conn, tenant_id=principal.tenant_id, endpoint_id=endpoint_id, actor=principal.actor
        ),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/webhooks/endpoints/{endpoint_id:int}/rotate-secret",
    responses=problem_responses(401, 403, 404, 422, 503),
)
def endpoint_rotate_secret(
    endpoint_id: EndpointId, principal: SecretKeeper, engine: EngineDep
) -> EndpointWithSecret:
    """Owners only: a new signing secret, shown in this reply. The old one keeps signing
    beside it (a second signature in `webhook-signature`) until
    `previous_secret_valid_until`, 24 hours."""
    rotated = run_transaction(
        engine,
        lambda conn: wh.rotate_secret(
            conn, tenant_id=principal.tenant_id, endpoint_id=endpoint_id, actor=principal.actor
        ),
    )
    return EndpointWithSecret(**endpoint_fields(rotated), secret=rotated.secret)


# --------------------------------------------------------------------------- deliveries


class AttemptOut(BaseModel):
    at: datetime
    status_code: int | None = Field(description="the endpoint's answer; null: no answer")
    error: str = Field(description="why it failed (empty on success)")
    duration_ms: int
    response_excerpt: str = Field(description="the first 500 characters of the answer")


class DeliveryOut(BaseModel):
    id: int
    endpoint_id: int
    event_id: str = Field(examples=["evt_42"])
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int = Field(description="tries since it was queued or redelivered")
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[AttemptOut] = Field(description="every try, oldest first")


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


def delivery_out(delivery: wh.DeliveryView, attempts: list[wh.AttemptView]) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_key,
        event_type=delivery.event_type,
        status=delivery.status,  # type: ignore[arg-type]
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
        attempt_log=[
            AttemptOut(
                at=a.at,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
                response_excerpt=a.response_excerpt,
            )
            for a in attempts
        ],
    )


@router.get("/webhooks/deliveries", responses=problem_responses(401, 403, 404, 422, 503))
def deliveries_list(
    principal: WebhookManager,
    engine: EngineDep,
    page: PageDep,
    endpoint_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status_: Annotated[
        Literal["pending", "delivered", "failed"] | None, Query(alias="status")
    ] = None,
) -> DeliveryList:
    """Deliveries oldest first, each with its attempts, by pages."""
    with read_only(engine) as conn:
        if endpoint_id is not None:
            wh.get_endpoint(conn, principal.tenant_id, endpoint_id)  # 404 if not the tenant's
        found = wh.list_deliveries(
            conn,
            principal.tenant_id,
            endpoint_id=endpoint_id,
            status=status_,
            after_id=page.after_id or 0,
            limit=page.limit + 1,
        )
        more = len(found) > page.limit
        found = found[: page.limit]
        attempts = wh.attempts_of(conn, principal.tenant_id, [d.id for d in found])
    return DeliveryList(
        items=[delivery_out(d, attempts[d.id]) for d in found],
        next_cursor=encode_cursor(found[-1].id) if more else None,
    )


@router.get(
    "/webhooks/deliveries/{delivery_id:int}",
    responses=problem_responses(401, 403, 404, 422, 503),
)
def delivery_read(
    delivery_id: DeliveryId, principal: WebhookManager, engine: EngineDep
) -> DeliveryOut:
    with read_only(engine) as conn:
        delivery = wh.get_delivery(conn, principal.tenant_id, delivery_id)
        attempts = wh.attempts_of(conn, principal.tenant_id, [delivery.id])
    return delivery_out(delivery, attempts[delivery.id])


@router.post(
    "/webhooks/deliveries/{delivery_id:int}/redeliver",
    responses=problem_responses(401, 403, 404, 422, 503),
)
def delivery_redeliver(
    delivery_id: DeliveryId, principal: WebhookManager, engine: EngineDep
) -> DeliveryOut:
    """Make a failed or pending delivery due now, with a new round of tries; the worker
    sends it within seconds. A delivered one is 422 `delivery_not_redeliverable`; one to
    a switched-off endpoint 422 `webhook_endpoint_disabled`."""

    def work(conn: Connection) -> DeliveryOut:
        delivery = wh.redeliver(
            conn, tenant_id=principal.tenant_id, delivery_id=delivery_id, actor=principal.actor
        )
        return delivery_out(
            delivery, wh.attempts_of(conn, principal.tenant_id, [delivery.id])[delivery.id]
        )

    return run_transaction(engine, work)
