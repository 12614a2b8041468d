"""Events and webhooks over HTTP (SPEC X-3, X-6, X-1): managers only, the secret shown
once (and to owners on rotation), the feed by cursor, problem+json for bad input, and
another tenant's ids do not exist."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from starlette.exceptions import StarletteDeprecationWarning

from kopilka.api.app import create_app
from kopilka.core.actor import Actor
from kopilka.events.outbox import emit
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import Tenant, create_tenant
from tests.api.conftest import Api, _owner_api, assert_problem, database_url
from tests.events.conftest import NOWHERE, Hooks
from tests.events.receiver import Receiver

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; plain httpx still works and is what we have.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

B = "/api/v1"
ENDPOINTS = f"{B}/webhooks/endpoints"
DELIVERIES = f"{B}/webhooks/deliveries"
_apps: dict[str, Any] = {}


@pytest.fixture(scope="session", autouse=True)
def _dispose_event_apps() -> Iterator[None]:
    yield
    for app in _apps.values():
        app.state.engine.dispose()


def _client(engine: Engine) -> TestClient:
    url = database_url(engine)
    if url not in _apps:
        _apps[url] = create_app(url)
    return TestClient(_apps[url])


@pytest.fixture
def api(engine: Engine, tenant: Tenant, actor: Actor) -> Api:
    return _owner_api(_client(engine), engine, tenant, actor)


@pytest.fixture
def other(engine: Engine, actor: Actor) -> Api:
    with engine.begin() as conn:
        tenant = create_tenant(
            conn, slug=f"o-{uuid.uuid4().hex[:12]}", name="Other tenant", actor=actor
        )
    return _owner_api(_client(engine), engine, tenant, actor)


def patch(api: Api, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
    return api.client.patch(
        path, json=body, headers={"Authorization": f"Bearer {token or api.token}"}
    )


def delete(api: Api, path: str, token: str | None = None) -> httpx.Response:
    return api.client.delete(path, headers={"Authorization": f"Bearer {token or api.token}"})


def fire(api: Api, type: str = "promised_payment.taken", subject_id: int = 7) -> int:
    return run_transaction(
        api.engine,
        lambda conn: emit(
            conn,
            tenant_id=api.tenant.id,
            type=type,
            subject_type=type.split(".")[0],
            subject_id=subject_id,
            payload={"subscriber_id": subject_id},
        ),
    )


def add(api: Api, url: str = f"{NOWHERE}/hooks", **fields: Any) -> dict[str, Any]:
    return api.ok(api.post(ENDPOINTS, {"url": url, **fields}), 201)


def test_an_endpoint_is_added_read_changed_and_deleted_and_its_secret_shown_once(
    api: Api,
) -> None:
    made = add(api, description="CRM", event_types=["subscriber.activated"])
    assert made["secret"].startswith("whsec_") and len(made["secret"]) == 38
    assert made["event_types"] == ["subscriber.activated"] and made["is_active"] is True
    assert made["previous_secret_valid_until"] is None
    shown = {k: v for k, v in made.items() if k != "secret"}
    path = f"{ENDPOINTS}/{made['id']}"
    read = api.get(path)
    assert api.ok(read) == shown and made["secret"] not in read.text
    listed = api.get(ENDPOINTS)
    assert api.ok(listed)["items"] == [shown] and made["secret"] not in listed.text

    changed = patch(api, path, {"event_types": [], "is_active": False})
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == [] and changed.json()["is_active"] is False
    assert "secret" not in changed.json()

    rotated = api.ok(api.post(f"{path}/rotate-secret"))
    assert rotated["secret"] != made["secret"] and rotated["previous_secret_valid_until"]

    assert delete(api, path).status_code == 204
    assert_problem(api.get(path), 404, "webhook_endpoint_not_found")
    assert_problem(delete(api, path), 404, "webhook_endpoint_not_found")


def test_bad_input_is_problem_json_with_stable_codes(api: Api) -> None:
    assert_problem(api.post(ENDPOINTS, {"url": "ftp://x.ru"}), 422, "invalid_webhook_url")
    assert_problem(api.post(ENDPOINTS, {"url": "https://u:p@x.ru/h"}), 422, "invalid_webhook_url")
    unknown = assert_problem(
        api.post(ENDPOINTS, {"url": "https://x.ru/h", "event_types": ["card.sold"]}),
        422,
        "unknown_event_type",
    )
    assert "subscriber.activated" in unknown["detail"]
    assert_problem(
        api.post(ENDPOINTS, {"url": "https://x.ru/h", "description": "d" * 300}),
        422,
        "invalid_webhook_endpoint",
    )
    assert_problem(
        api.post(ENDPOINTS, {"url": "https://x.ru/h", "secret": "mine"}), 422, "invalid_request"
    )
    made = add(api)
    assert_problem(
        patch(api, f"{ENDPOINTS}/{made['id']}", {"url": None}), 422, "invalid_webhook_endpoint"
    )
    assert_problem(api.get(f"{B}/events", params={"type": "card.sold"}), 422, "unknown_event_type")
    assert_problem(api.get(f"{B}/events", params={"after": "42"}), 422, "invalid_event_id")
    assert_problem(
        api.get(f"{B}/events", params={"after": "evt_1", "cursor": "x"}), 422, "invalid_event_id"
    )
    assert_problem(api.get(f"{B}/events", params={"cursor": "nonsense"}), 422, "invalid_cursor")
    assert_problem(api.get(DELIVERIES, params={"status": "lost"}), 422, "invalid_request")
    assert api.ok(api.get(ENDPOINTS))["items"][0]["id"] == made["id"]  # only the good one


def test_the_feed_pages_by_cursor_resumes_after_an_id_and_filters_by_type(api: Api) -> None:
    ids = [fire(api, "promised_payment.taken", n) for n in range(3)]
    ids.append(fire(api, "subscriber.activated", 9))
    first = api.ok(api.get(f"{B}/events", params={"limit": 2}))
    assert [e["id"] for e in first["items"]] == [f"evt_{i}" for i in ids[:2]]
    assert first["items"][0] == {
        "id": f"evt_{ids[0]}",
        "type": "promised_payment.taken",
        "occurred_at": first["items"][0]["occurred_at"],
        "tenant": api.tenant.slug,
        "data": {"subscriber_id": 0},
    }
    assert first["items"][0]["occurred_at"].endswith("+00:00")
    second = api.ok(api.get(f"{B}/events", params={"limit": 2, "cursor": first["next_cursor"]}))
    assert [e["id"] for e in second["items"]] == [f"evt_{i}" for i in ids[2:]]
    assert second["next_cursor"] is None
    after = api.ok(api.get(f"{B}/events", params={"after": f"evt_{ids[1]}"}))
    assert [e["id"] for e in after["items"]] == [f"evt_{i}" for i in ids[2:]]
    assert api.ok(api.get(f"{B}/events", params={"after": f"evt_{ids[-1]}"}))["items"] == []
    only = api.ok(
        api.get(
            f"{B}/events", params=[("type", "subscriber.activated"), ("type", "membership.sold")]
        )
    )
    assert [e["id"] for e in only["items"]] == [f"evt_{ids[-1]}"]
    types = api.get(f"{B}/webhooks/event-types")
    assert types.status_code == 200
    assert "subscriber.status_changed" in {t["type"] for t in types.json()}


def test_deliveries_are_listed_with_attempts_and_redelivered(
    api: Api, receiver: Receiver, hooks: Hooks
) -> None:
    receiver.then = 500
    made = add(api, url=receiver.url)
    receiver.secrets.append(made["secret"])
    fire(api)
    # hooks is the same tenant as api (both come from the test's `tenant`).
    for step in range(7):
        hooks.run(step)
    listed = api.ok(api.get(DELIVERIES, params={"endpoint_id": made["id"], "status": "failed"}))
    (delivery,) = listed["items"]
    assert delivery["status"] == "failed" and delivery["attempts"] == 7
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500] * 7
    assert delivery["attempt_log"][0]["response_excerpt"].startswith("answer 500")
    assert delivery["event_type"] == "promised_payment.taken"
    assert delivery["event_id"].startswith("evt_")
    assert delivery["endpoint_id"] == made["id"]
    assert api.ok(api.get(f"{DELIVERIES}/{delivery['id']}")) == delivery
    assert api.ok(api.get(DELIVERIES, params={"status": "delivered"}))["items"] == []

    again = api.ok(api.post(f"{DELIVERIES}/{delivery['id']}/redeliver"))
    assert again["status"] == "pending" and again["attempts"] == 0
    assert len(again["attempt_log"]) == 7
    receiver.then = 200
    hooks.run(8)
    arrived = api.ok(api.get(f"{DELIVERIES}/{delivery['id']}"))
    assert arrived["status"] == "delivered" and arrived["delivered_at"]
    assert_problem(
        api.post(f"{DELIVERIES}/{delivery['id']}/redeliver"), 422, "delivery_not_redeliverable"
    )
    assert_problem(api.post(f"{DELIVERIES}/999999999/redeliver"), 404, "webhook_delivery_not_found")


def test_deliveries_page_by_cursor(api: Api) -> None:
    add(api)
    for n in range(3):
        fire(api, subject_id=n)
    first = api.ok(api.get(DELIVERIES, params={"limit": 2}))
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = api.ok(api.get(DELIVERIES, params={"limit": 2, "cursor": first["next_cursor"]}))
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert all(d["status"] == "pending" and d["attempt_log"] == [] for d in first["items"])


def test_only_owners_and_administrators_and_only_owners_rotate(api: Api) -> None:
    made = add(api)
    path = f"{ENDPOINTS}/{made['id']}"
    admin = api.staff_token("administrator")
    assert api.ok(api.get(path, token=admin))["id"] == made["id"]
    assert api.ok(api.get(f"{B}/events", token=admin))["items"] == []
    assert_problem(api.post(f"{path}/rotate-secret", token=admin), 403, "forbidden")
    by_admin = api.ok(api.post(ENDPOINTS, {"url": "https://x.ru/a"}, token=admin), 201)
    assert by_admin["secret"].startswith("whsec_")  # the maker sees it, once
    _, terminal = api.terminal_key()
    for token in (api.staff_token("cashier"), api.staff_token("front_desk"), terminal):
        for reply in (
            api.get(ENDPOINTS, token=token),
            api.get(path, token=token),
            api.post(ENDPOINTS, {"url": "https://x.ru/h"}, token=token),
            patch(api, path, {"is_active": False}, token=token),
            delete(api, path, token=token),
            api.post(f"{path}/rotate-secret", token=token),
            api.get(DELIVERIES, token=token),
            api.post(f"{DELIVERIES}/1/redeliver", token=token),
            api.get(f"{B}/events", token=token),
            api.get(f"{B}/webhooks/event-types", token=token),
        ):
            assert_problem(reply, 403, "forbidden")
    assert_problem(api.client.get(ENDPOINTS), 401, "not_authenticated")
    assert api.ok(api.get(path))["is_active"] is True  # nothing changed


def test_another_tenant_sees_none_of_it(api: Api, other: Api) -> None:
    made = add(api)
    event_id = fire(api)
    (delivery,) = api.ok(api.get(DELIVERIES))["items"]
    path = f"{ENDPOINTS}/{made['id']}"
    assert other.ok(other.get(ENDPOINTS))["items"] == []
    assert other.ok(other.get(DELIVERIES))["items"] == []
    assert other.ok(other.get(f"{B}/events"))["items"] == []
    assert other.ok(other.get(f"{B}/events", params={"after": "evt_1"}))["items"] == []
    for reply in (
        other.get(path),
        patch(other, path, {"is_active": False}),
        delete(other, path),
        other.post(f"{path}/rotate-secret"),
        other.get(DELIVERIES, params={"endpoint_id": made["id"]}),
    ):
        assert_problem(reply, 404, "webhook_endpoint_not_found")
    for reply in (
        other.get(f"{DELIVERIES}/{delivery['id']}"),
        other.post(f"{DELIVERIES}/{delivery['id']}/redeliver"),
    ):
        assert_problem(reply, 404, "webhook_delivery_not_found")
    mine = api.ok(api.get(path))
    assert mine["is_active"] is True and mine["url"] == made["url"]
    assert api.ok(api.get(f"{B}/events"))["items"][0]["id"] == f"evt_{event_id}"


def test_the_openapi_document_lists_the_routes(api: Api) -> None:
    paths = api.ok(api.client.get(f"{B}/openapi.json"))["paths"]
    for path in (
        "/api/v1/events",
        "/api/v1/webhooks/endpoints",
        "/api/v1/webhooks/endpoints/{endpoint_id}",
        "/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret",
        "/api/v1/webhooks/deliveries",
        "/api/v1/webhooks/deliveries/{delivery_id}/redeliver",
    ):
        assert path in paths, path
