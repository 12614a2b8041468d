"""Webhook endpoints: what a URL may be, types checked, changes audited (never the
secret), deletion takes the deliveries with it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kopilka.core.errors import InvalidInput, NotFound
from kopilka.events import webhooks as wh
from kopilka.tenancy.schema import audit_events
from tests.events.conftest import NOWHERE, Hooks


@pytest.mark.parametrize(
    "url",
    [
        "https://crm.example.ru/kopilka/hooks",
        "http://10.0.0.5:8080/hooks?token=abc",
        "https://[::1]:8443/hooks",
        "HTTPS://Example.RU",
    ],
)
def test_good_urls(url: str) -> None:
    assert wh.clean_url(f"  {url} ") == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "1 to 500"),
        ("https://example.ru/" + "a" * 500, "1 to 500"),
        ("ftp://example.ru/hooks", "https://"),
        ("example.ru/hooks", "https://"),
        ("javascript:alert(1)", "https://"),
        ("https:///hooks", "names a host"),
        ("https://user:pass@example.ru/hooks", "no user name or password"),
        ("https://token@example.ru/hooks", "no user name or password"),
        ("https://example.ru/ho oks", "no spaces"),
        ("https://example.ru:99999/", "cannot be read"),
        ("https://example.ru/hooks#part", "#fragment"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        wh.clean_url(url)
    assert refused.value.code == "invalid_webhook_url"
    assert says in refused.value.detail
    assert refused.value.params["field"] == "url" and refused.value.params["reason"]


def test_an_endpoint_is_made_changed_and_deleted_with_an_audit_trail(hooks: Hooks) -> None:
    made = hooks.endpoint(
        "https://crm.example.ru/hooks",
        ["subscriber.activated", "promised_payment.taken", "subscriber.activated"],
        description=" CRM ",
    )
    assert made.event_types == ("subscriber.activated", "promised_payment.taken")
    assert made.description == "CRM" and made.is_active
    changed = hooks.tx(
        lambda conn: wh.update_endpoint(
            conn,
            tenant_id=hooks.tenant.id,
            endpoint_id=made.id,
            url="https://crm.example.ru/v2",
            event_types=[],
            description="CRM",  # unchanged: not in the audit event
            actor=hooks.actor,
        )
    )
    assert changed.url == "https://crm.example.ru/v2" and changed.event_types == ()
    assert changed.secret == made.secret
    same = hooks.tx(
        lambda conn: wh.update_endpoint(
            conn, tenant_id=hooks.tenant.id, endpoint_id=made.id, is_active=True, actor=hooks.actor
        )
    )
    assert same == changed  # nothing changed, nothing written
    hooks.emit("subscriber.activated")
    hooks.tx(
        lambda conn: wh.reveal_secret(
            conn, tenant_id=hooks.tenant.id, endpoint_id=made.id, actor=hooks.actor
        )
    )
    hooks.tx(
        lambda conn: wh.rotate_secret(
            conn, tenant_id=hooks.tenant.id, endpoint_id=made.id, actor=hooks.actor
        )
    )
    hooks.tx(
        lambda conn: wh.delete_endpoint(
            conn, tenant_id=hooks.tenant.id, endpoint_id=made.id, actor=hooks.actor
        )
    )
    assert hooks.deliveries() == []
    with pytest.raises(NotFound) as gone:
        hooks.read(lambda conn: wh.get_endpoint(conn, hooks.tenant.id, made.id))
    assert gone.value.code == "webhook_endpoint_not_found"

    trail = hooks.read(
        lambda conn: conn.execute(
            select(audit_events.c.action, audit_events.c.details)
            .where(
                audit_events.c.tenant_id == hooks.tenant.id,
                audit_events.c.object_type == "webhook_endpoint",
            )
            .order_by(audit_events.c.id)
        ).all()
    )
    assert [row.action for row in trail] == [
        "webhook_endpoint.create",
        "webhook_endpoint.update",
        "webhook_endpoint.reveal_secret",
        "webhook_endpoint.rotate_secret",
        "webhook_endpoint.delete",
    ]
    assert trail[0].details["event_types"] == "subscriber.activated,promised_payment.taken"
    assert trail[1].details == {
        "url": "https://crm.example.ru/v2",
        "url_was": "https://crm.example.ru/hooks",
        "event_types": "*",
        "event_types_was": "subscriber.activated,promised_payment.taken",
    }
    assert trail[4].details["deliveries_removed"] == 1
    assert made.secret.removeprefix("whsec_") not in str([row.details for row in trail])


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"event_types": ["subscriber.deleted"]}, "unknown_event_type"),
        ({"event_types": "subscriber.activated"}, "unknown_event_type"),
        ({"description": "x" * 201}, "invalid_webhook_endpoint"),
        ({"url": "https://a:b@example.ru"}, "invalid_webhook_url"),
    ],
)
def test_bad_fields_write_nothing(hooks: Hooks, fields: dict[str, object], code: str) -> None:
    asked: dict[str, object] = {"url": "https://crm.example.ru/hooks", **fields}
    with pytest.raises(InvalidInput) as refused:
        hooks.tx(
            lambda conn: wh.create_endpoint(
                conn,
                tenant_id=hooks.tenant.id,
                actor=hooks.actor,
                **asked,  # type: ignore[arg-type]
            )
        )
    assert refused.value.code == code
    assert hooks.read(lambda conn: wh.list_endpoints(conn, hooks.tenant.id)) == []


def test_another_tenants_endpoints_and_deliveries_do_not_exist(
    hooks: Hooks, other_hooks: Hooks
) -> None:
    theirs = other_hooks.endpoint(f"{NOWHERE}/theirs")
    other_hooks.emit()
    (delivery,) = other_hooks.deliveries()
    assert hooks.read(lambda conn: wh.list_endpoints(conn, hooks.tenant.id)) == []
    assert hooks.deliveries() == []
    with pytest.raises(NotFound):
        hooks.read(lambda conn: wh.get_endpoint(conn, hooks.tenant.id, theirs.id))
    with pytest.raises(NotFound):
        hooks.read(lambda conn: wh.get_delivery(conn, hooks.tenant.id, delivery.id))
    with pytest.raises(NotFound):
        hooks.tx(
            lambda conn: wh.redeliver(
                conn, tenant_id=hooks.tenant.id, delivery_id=delivery.id, actor=hooks.actor
            )
        )
    for action in (wh.delete_endpoint, wh.rotate_secret):
        with pytest.raises(NotFound):
            hooks.tx(
                lambda conn, act=action: act(  # type: ignore[misc]
                    conn, tenant_id=hooks.tenant.id, endpoint_id=theirs.id, actor=hooks.actor
                )
            )
    assert [d.status for d in other_hooks.deliveries()] == ["pending"]  # theirs stands
