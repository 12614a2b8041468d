"""Isolation of tenants and roles, swept over every route of the app (issue 9).

Tenant A is the demo business (``kopilka.demo``) under a slug of its own, plus what the
demo lacks (a POS check with a refund, a redemption, a certificate payment, a webhook
delivery, a fiscal receipt, an e-mail, a job, memberships sold online, a FarCards link),
with a marker string in its user-entered text. Tenant B is empty but for its owner, a
terminal and a FarCards link.

The sweep enumerates ``app.routes`` and fills every path parameter with the id of A's
object of that kind (a route with a parameter the table does not know fails the test, so
a new route is covered or noticed). Bodies are made from the OpenAPI schema, forms from
the form the page shows (else a generic one), and every body, form or query field that
names an object gets A's. Every method is called:

* with B's owner token and B's terminal key (API) and B's owner session (web): refused
  when it names A's object, and never a marker, card or certificate number or secret of
  A in the reply;
* public pages (shop, cabinet, payment notifications, FarCards, sign-in, health): B's
  credentials get no more than an anonymous caller; B's FarCards secret at A's address
  gets what a made-up one gets; A's objects and A's cabinet session at B's address show
  nothing of A;
* with every role of A that the route's dependency does not admit: 403.

Afterwards A's rows are exactly what they were, and no row anywhere refers to a row of
another tenant (every foreign key between tenant-scoped tables is checked).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import Connection, Engine, func, select, text
from starlette.exceptions import StarletteDeprecationWarning

import kopilka.demo as demo
import kopilka.schema
from kopilka.api.app import create_app
from kopilka.api.deps import get_principal
from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.events import webhooks
from kopilka.events.outbox import emit
from kopilka.farcards.terminals import configure_terminal
from kopilka.jobs import ledger_check
from kopilka.jobs.runner import get_job, start_job
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.cards import update_holder
from kopilka.mail.outbox import queue_mail
from kopilka.memberships import catalogue, sales
from kopilka.memberships.catalogue import TypeIn
from kopilka.memberships.providers.base import PaymentState, ProviderPayment
from kopilka.tenancy.actions import (
    Tenant,
    create_tenant,
    create_terminal,
    create_user,
    issue_staff_token,
)
from kopilka.tenancy.roles import PERMISSIONS
from kopilka.web.deps import get_page

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

ROLES = ("owner", "administrator", "cashier", "front_desk")
TERMINAL = "terminal"
PASSWORD = "correct horse battery"
_addresses = itertools.count(1)
_apps: dict[str, FastAPI] = {}
_worlds: dict[str, World] = {}


# --------------------------------------------------------------------------- the routes


@dataclass(frozen=True)
class Route:
    path: str  # as declared, converters stripped: /cards/{card_id}
    method: str
    kind: str  # "api" (bearer), "web" (session), "public"
    roles: frozenset[str] | None  # who may call it (None: anyone of its kind)
    permission: str | None  # the web permission, when there is one
    query: tuple[tuple[str, bool, dict[str, Any]], ...]  # (name, required, schema)
    body_schema: dict[str, Any] | None  # the JSON body's schema (API)

    @property
    def params(self) -> list[str]:
        return re.findall(r"{([^}]+)}", self.path)


# Routes with no sign-in dependency: public by design (health, sign-in, the shop, the
# cabinet, the payment providers' notifications, FarCards with its own secret in the path,
# the sandbox provider's payment page, the API's docs).
PUBLIC = re.compile(
    r"^/(healthz|readyz|metrics|login|language|api/v1/auth/token|api/v1/openapi\.json|"
    r"api/docs.*|farcards/.*|cabinet/.*|buy/.*|pay/.*|sandbox/pay/.*)$"
)
# Routes any signed-in caller may use (a role check would be wrong there); a route that
# asks only for a session or a principal and is missing here fails the test.
ANY_ROLE = {
    ("web", "GET", "/"),
    ("web", "GET", "/settings"),  # the menu of what the role may open
    ("web", "POST", "/branch"),
    ("web", "POST", "/logout"),
    # The ledger's primitives: every principal, terminals included (docs/api.md).
    ("api", "GET", "/api/v1/units"),
    ("api", "GET", "/api/v1/accounts"),
    ("api", "GET", "/api/v1/accounts/{account_id}"),
    ("api", "GET", "/api/v1/accounts/{account_id}/balance"),
    ("api", "GET", "/api/v1/accounts/{account_id}/entries"),
    ("api", "GET", "/api/v1/accounts/{account_id}/turnovers"),
    ("api", "GET", "/api/v1/turnovers"),
    ("api", "POST", "/api/v1/transfers"),
    ("api", "GET", "/api/v1/transfers"),
    ("api", "GET", "/api/v1/transfers/{transfer_id}"),
    ("api", "POST", "/api/v1/transfers/{transfer_id}/reverse"),
    ("api", "POST", "/api/v1/holds"),
    ("api", "GET", "/api/v1/holds/{hold_id}"),
    ("api", "POST", "/api/v1/holds/{hold_id}/capture"),
    ("api", "POST", "/api/v1/holds/{hold_id}/void"),
}
# Run last: they end B's session or switch B's modules off (still checked, just after
# everything that needs them).
LAST = re.compile(r"/logout$|/billing/(disable|purge)|/settings/loyalty/(switch|purge)")


def _closure(call: Any) -> dict[str, Any]:
    cells = getattr(call, "__closure__", None) or ()
    return dict(zip(call.__code__.co_freevars, (c.cell_contents for c in cells), strict=True))


def _walk(dependant: Any) -> Iterator[Any]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def _schema(openapi: dict[str, Any], path: str, method: str) -> dict[str, Any] | None:
    operation = openapi["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return schema if isinstance(schema, dict) else None


def app_routes(app: FastAPI) -> list[Route]:
    """Every (path, method) the app answers, with who may call it, read from its
    dependencies: ``require_roles`` (API) and ``require`` (web) keep what they admit in
    their closures."""
    openapi = app.openapi()
    found: list[Route] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        effective = getattr(context, "_route_context", None)
        if not isinstance(route, APIRoute):
            continue  # /static, the docs' pages (plain Starlette routes)
        dependant = effective.dependant if effective is not None else route.dependant
        path = re.sub(r"{([^}:]+):[^}]+}", r"{\1}", str(context.path))
        calls = [d.call for d in _walk(dependant) if d.call is not None]
        roles: set[str] | None = None
        permission = None
        for call in calls:
            closure = _closure(call) if callable(call) and hasattr(call, "__code__") else {}
            if "roles" in closure and isinstance(closure["roles"], tuple):
                roles = set(closure["roles"]) if roles is None else roles & set(closure["roles"])
            if "permission" in closure and isinstance(closure["permission"], str):
                permission = closure["permission"]
                roles = set(PERMISSIONS[permission])
        if get_page in calls:
            kind = "web"
        elif get_principal in calls:
            kind = "api"
        else:
            kind = "public"
        query = tuple(
            (str(p.alias or p.name), bool(p.field_info.is_required()), {})
            for d in _walk(dependant)
            for p in d.query_params
        )
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            found.append(
                Route(
                    path,
                    method,
                    kind,
                    frozenset(roles) if roles is not None else None,
                    permission,
                    query,
                    _schema(openapi, str(context.path_format or context.path), method)
                    if kind != "web"
                    else None,
                )
            )
    return found


# --------------------------------------------------------------------------- tenant A


@dataclass
class World:
    app: FastAPI
    engine: Engine
    mark: str
    a: Tenant
    b: Tenant
    values: dict[str, str]  # path/field name -> A's object of that kind
    overrides: dict[tuple[str, str], str]  # (path prefix, name) -> A's value
    needles: list[str]  # strings only A's replies may hold
    a_tokens: dict[str, str]  # role -> A's staff token; "terminal" -> A's key
    b_token: str
    b_key: str
    b_farcards_secret: str

    def value(self, path: str, name: str) -> str:
        for (prefix, key), value in self.overrides.items():
            if key == name and path.startswith(prefix):
                return value
        if name not in self.values:
            raise KeyError(f"no value of A for {{{name}}} in {path}: add it to the world")
        return self.values[name]

    def fill(self, route: Route) -> str:
        path = route.path
        for name in route.params:
            path = path.replace("{" + name + "}", str(self.value(route.path, name)))
        return path


def _tx(engine: Engine, work: Callable[[Connection], Any]) -> Any:
    return run_transaction(engine, work)


def _scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with read_only(engine) as conn:
        return conn.execute(text(sql), params).scalar()


def _client(app: FastAPI, **headers: str) -> TestClient:
    n = next(_addresses)
    return TestClient(app, client=(f"10.99.{n // 250 % 250}.{n % 250}", 40000), headers=headers)


def _ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200, 201)), (
        response.request.url,
        response.status_code,
        response.text[:500],
    )
    return response.json() if "json" in response.headers.get("content-type", "") else None


def _build_a(engine: Engine, app: FastAPI, mark: str) -> tuple[Tenant, dict[str, Any]]:
    """The demo under a slug of its own, and what the demo lacks."""
    actor = Actor.cli("isolation")
    slug = f"iso-a-{uuid.uuid4().hex[:10]}"
    saved = demo.DEMO_SLUG, demo.DEMO_NAME
    demo.DEMO_SLUG, demo.DEMO_NAME = slug, f"Company {mark}"
    try:
        info = demo.load_demo(engine, actor=actor)
    finally:
        demo.DEMO_SLUG, demo.DEMO_NAME = saved
    a = info.tenant
    assert info.terminal_key is not None
    t = a.id
    got: dict[str, Any] = {"terminal_key": info.terminal_key}

    def q(sql: str) -> Any:
        value = _scalar(engine, sql, t=t)
        assert value is not None, sql
        return value

    terminal_id = q("SELECT min(id) FROM terminals WHERE tenant_id = :t")
    card_id = q("SELECT min(id) FROM cards WHERE tenant_id = :t AND holder_name IS NOT NULL")
    card_number = q(f"SELECT number FROM cards WHERE id = {card_id}")

    def extras(conn: Connection) -> dict[str, Any]:
        update_holder(
            conn,
            tenant_id=t,
            card_id=card_id,
            name=f"Holder {mark}",
            phone="+7 916 000-00-01",
            email=f"holder-{mark}@example.ru",
            actor=actor,
        )
        _link, secret = configure_terminal(
            conn, tenant_id=t, terminal_id=terminal_id, restaurant_code="1", actor=actor
        )
        endpoint = webhooks.create_endpoint(
            conn,
            tenant_id=t,
            url=f"https://hooks.example.ru/{mark}",
            description=f"Endpoint {mark}",
            actor=actor,
        )
        emit(
            conn,
            tenant_id=t,
            type="promised_payment.taken",
            subject_type="promised_payment",
            subject_id=7,
            payload={"subscriber_id": 7, "amount": "500.00", "note": mark},
        )
        mail_id = queue_mail(
            conn,
            tenant_id=t,
            kind="test",
            ref=f"ref-{mark}",
            to_addr=f"client-{mark}@example.ru",
            subject=f"Subject {mark}",
            body_text=f"Body {mark}",
        )
        from kopilka.fiscal.registers import create_register

        register = create_register(
            conn,
            tenant_id=t,
            name=f"Register {mark}",
            settings={
                "base_url": "http://127.0.0.1:9/",
                "login": "login",
                "password": "password",
                "group_code": "group",
                "inn": "7707083893",
                "payment_address": "https://shop.example.ru",
                "sno": "usn_income",
                "company_email": "shop@example.ru",
                "timeout_ms": 500,
            },
            actor=actor,
        )
        payment_id = conn.execute(
            text("SELECT min(id) FROM hotel_payments WHERE tenant_id = :t"), {"t": t}
        ).scalar_one()
        from kopilka.fiscal.receipts import request_receipt

        amount = 100_00
        receipt = request_receipt(
            conn,
            tenant_id=t,
            register_id=register.id,
            operation="sell",
            source_type="hotel_payment",
            source_id=payment_id,
            payload={
                "items": [
                    {
                        "name": f"Night {mark}",
                        "price_minor": amount,
                        "quantity_milli": 1000,
                        "amount_minor": amount,
                        "payment_object": "service",
                        "vat": "none",
                    }
                ],
                "payments": [{"kind": "card", "amount_minor": amount}],
                "total_minor": amount,
                "exponent": 2,
            },
            email=f"guest-{mark}@example.ru",
            phone=None,
            actor=actor,
        )
        kind = catalogue.create_type(
            conn,
            tenant_id=t,
            data=TypeIn(
                f"Type {mark}", 100_000, 30, classes=4, sell_online=True, button_text="Buy"
            ),
            actor=actor,
        )
        visitor = catalogue.create_visitor(
            conn, tenant_id=t, full_name=f"Visitor {mark}", phone="+7 916 000-00-02", actor=actor
        )
        return {
            "farcards_secret": secret,
            "endpoint_id": endpoint.id,
            "endpoint_secret": endpoint.secret,
            "mail_id": mail_id,
            "register_id": register.id,
            "receipt_id": receipt.id,
            "type_id": kind.id,
            "visitor_id": visitor.id,
        }

    got |= _tx(engine, extras)

    # A membership sold online (the sandbox provider's part played here).
    order = _tx(
        engine,
        lambda c: sales.start_checkout(
            c, tenant_id=t, type_id=got["type_id"], email=f"buyer-{mark}@example.ru", locale="ru"
        ),
    )
    payment = ProviderPayment(
        f"sbx_iso_{uuid.uuid4().hex[:8]}",
        PaymentState.PENDING,
        order.total_minor,
        order.currency,
        redirect_url="http://127.0.0.1/sandbox/pay/x",
        order_id=order.id,
    )
    _tx(engine, lambda c: sales.attach_payment(c, tenant_id=t, order_id=order.id, payment=payment))
    done = ProviderPayment(
        payment.provider_payment_id,
        PaymentState.SUCCEEDED,
        order.total_minor,
        order.currency,
        order_id=order.id,
    )
    _tx(
        engine,
        lambda c: sales.record_payment(
            c, tenant_id=t, provider="sandbox", payment=done, actor=actor
        ),
    )
    # A second order left pending, bought through the shop: its sandbox payment page.
    shop = _client(app)
    form = shop.get(f"/buy/{slug}/{got['type_id']}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text[:300]
    bought = shop.post(
        f"/buy/{slug}/{got['type_id']}",
        data={"csrf_token": token.group(1), "email": f"late-{mark}@example.ru"},
        follow_redirects=False,
    )
    location = bought.headers.get("location", "")
    assert "/sandbox/pay/" in location, (bought.status_code, bought.text[:300])
    got["sandbox_payment"] = location.rstrip("/").split("/")[-1].split("?")[0]
    got["order_token"] = q(
        "SELECT token FROM membership_orders WHERE tenant_id = :t ORDER BY id DESC LIMIT 1"
    )

    job_id = start_job(engine, tenant_id=t, kind=ledger_check.KIND, params={}, actor=actor)
    got["job_id"] = job_id

    # Through A's terminal: a POS check with a refund, a redemption, a certificate payment.
    terminal = _client(app, Authorization=f"Bearer {info.terminal_key}")
    _ok(
        terminal.post(
            "/api/v1/pos/checks",
            json={"check_id": "iso-1", "card": card_number, "lines": ["600.00"], "points": "0"},
        )
    )
    _ok(
        terminal.post(
            "/api/v1/pos/checks/iso-1/refunds", json={"refund_id": "iso-r1", "amount": "100.00"}
        )
    )
    redemption = _ok(
        terminal.post(
            "/api/v1/processing/redemptions",
            json={"card": card_number, "unit": "BONUS", "amount": "1", "description": mark},
            headers={"Idempotency-Key": "iso-redeem-1"},
        )
    )
    got["ref"] = str(redemption["ref"])
    certificate = q(
        "SELECT number FROM certificates WHERE tenant_id = :t AND status = 'active' "
        "ORDER BY id LIMIT 1"
    )
    _ok(
        terminal.post(
            f"/api/v1/pos/certificates/{certificate}/payments",
            json={"operation_id": "iso-op-1", "amount": "1.00"},
        )
    )
    got |= {
        "terminal_id": terminal_id,
        "card_id": card_id,
        "card_number": card_number,
        "certificate": certificate,
    }
    # Wait for the job, so A's rows stay still from here on.
    for _ in range(200):
        if get_job(engine, t, job_id).status in ("done", "failed"):
            break
        time.sleep(0.05)
    return a, got


def _values(engine: Engine, a: Tenant, got: dict[str, Any]) -> dict[str, str]:
    t = a.id

    def first(table: str, where: str = "") -> str:
        sql = f"SELECT min(id) FROM {table} WHERE tenant_id = :t {where}"
        value = _scalar(engine, sql, t=t)
        assert value is not None, f"A has no row in {table} {where}"
        return str(value)

    return {
        "account_id": first("accounts", "AND owner_id IS NOT NULL"),
        "branch_id": first("branches"),
        "card_id": str(got["card_id"]),
        "certificate_id": first("certificates", "AND status = 'active'"),
        "check_id": "iso-1",
        "refund_id": "iso-r1",
        "delivery_id": first("webhook_deliveries"),
        "endpoint_id": str(got["endpoint_id"]),
        "folio_id": first("hotel_folios"),
        "guest_id": first("hotel_guests"),
        "invoice_id": first("hotel_invoices"),
        "stay_id": first("hotel_stays"),
        "room": "90",
        "room_id": first("hotel_rooms"),
        "property_id": first("hotel_properties"),
        "account_no": demo.DEMO_SUBSCRIBERS[0],
        "certificate": str(got["certificate"]),
        "group_id": first("studio_groups"),
        "class_id": first("studio_classes"),
        "job_id": str(got["job_id"]),
        "mail_id": str(got["mail_id"]),
        "membership_id": first("memberships"),
        "visitor_id": str(got["visitor_id"]),
        "type_id": str(got["type_id"]),
        "number": str(got["card_number"]),
        "operation_id": "iso-op-1",
        "payment_code_id": first("payment_codes"),
        "payment_type_id": first("payment_types"),
        "program_id": first("loyalty_programs"),
        "receipt_id": str(got["receipt_id"]),
        "register_id": str(got["register_id"]),
        "ref": str(got["ref"]),
        "service_id": first("sub_pp_services"),
        "tariff_id": first("sub_tariffs"),
        "subscriber_id": first("subscribers"),
        "terminal_id": str(got["terminal_id"]),
        "transfer_id": first("transfers"),
        "hold_id": first("holds"),
        "user_id": first("users"),
        "slug": a.slug,
        "tenant": a.slug,
        "function": "GetCardInfoEx",
        "token": str(got["order_token"]),
        "payment_id": str(got["sandbox_payment"]),
        "provider_name": "sandbox",
    }


def _tokens(engine: Engine, tenant: Tenant) -> dict[str, str]:
    """A staff token for a user of each role of ``tenant``."""
    actor = Actor.cli("isolation")

    def work(conn: Connection) -> dict[str, str]:
        tokens = {}
        for role in ROLES:
            user = create_user(
                conn,
                tenant_id=tenant.id,
                login=f"iso-{role}-{uuid.uuid4().hex[:6]}",
                password=PASSWORD,
                role=role,
                full_name=f"{role} person",
                actor=actor,
            )
            tokens[role], _ = issue_staff_token(conn, user=user, actor=actor)
        return tokens

    return dict(_tx(engine, work))


def world_for(engine: Engine) -> World:
    url = engine.url.render_as_string(hide_password=False)
    if url in _worlds:
        return _worlds[url]
    app = _apps.setdefault(url, create_app(url))
    mark = f"zqmark{uuid.uuid4().hex[:10]}"
    a, got = _build_a(engine, app, mark)
    actor = Actor.cli("isolation")

    def make_b(conn: Connection) -> tuple[Tenant, str, str]:
        b = create_tenant(conn, slug=f"iso-b-{uuid.uuid4().hex[:10]}", name="Other", actor=actor)
        terminal, key = create_terminal(conn, tenant_id=b.id, name="B till", actor=actor)
        _link, secret = configure_terminal(
            conn, tenant_id=b.id, terminal_id=terminal.id, restaurant_code="1", actor=actor
        )
        assert secret is not None
        return b, key, secret

    b, b_key, b_secret = _tx(engine, make_b)
    a_tokens = _tokens(engine, a)
    a_tokens[TERMINAL] = got["terminal_key"]
    b_token = _tokens(engine, b)["owner"]
    values = _values(engine, a, got)
    overrides = {
        ("/api/v1/certificates", "number"): str(got["certificate"]),
        ("/api/v1/pos/certificates", "number"): str(got["certificate"]),
        ("/api/v1/pos/room-charges", "check_id"): "Бар-121",
        ("/farcards", "secret"): b_secret,  # B's own secret at A's address
    }
    with read_only(engine) as conn:
        numbers = conn.execute(
            text(
                "SELECT number FROM cards WHERE tenant_id = :t UNION "
                "SELECT number FROM certificates WHERE tenant_id = :t"
            ),
            {"t": a.id},
        ).scalars()
        needles = [mark, a.slug, *(str(n) for n in numbers)]
    # A's secrets: its terminal's key, FarCards secret, webhook secret, staff tokens.
    needles += [got["farcards_secret"], got["endpoint_secret"], *a_tokens.values()]
    world = World(
        app, engine, mark, a, b, values, overrides, needles, a_tokens, b_token, b_key, b_secret
    )
    _worlds[url] = world
    return world


@pytest.fixture(scope="module", autouse=True)
def _dispose() -> Iterator[None]:
    yield
    for app in _apps.values():
        app.state.engine.dispose()
    _apps.clear()
    _worlds.clear()


# --------------------------------------------------------------------------- requests

# Body and form fields that name an object: poisoned with A's.
FIELD_VALUES = {
    "account_id": "account_id",
    "debit_account_id": "account_id",
    "credit_account_id": "account_id",
    "hold_id": "hold_id",
    "transfer_id": "transfer_id",
    "program_id": "program_id",
    "program": "program_id",
    "guest_id": "guest_id",
    "payer_guest_id": "guest_id",
    "folio_id": "folio_id",
    "invoice_id": "invoice_id",
    "stay_id": "stay_id",
    "property_id": "property_id",
    "room_id": "room_id",
    "payment_type_id": "payment_type_id",
    "tariff_id": "tariff_id",
    "service_id": "service_id",
    "subscriber_id": "subscriber_id",
    "account_no": "account_no",
    "register_id": "register_id",
    "type_id": "type_id",
    "visitor_id": "visitor_id",
    "group_id": "group_id",
    "terminal_id": "terminal_id",
    "branch_id": "branch_id",
    "branch": "branch_id",
    "card": "number",
    "card_number": "number",
    "certificate": "certificate",
    "endpoint_id": "endpoint_id",
    "membership_id": "membership_id",
    "guest_ids": "guest_id",
    "account_ids": "account_id",
    "tariff_ids": "tariff_id",
    "group_ids": "group_id",
    "class_ids": "class_id",
    "cards": "number",
    "numbers": "number",
    "card_ids": "card_id",
    "certificate_ids": "certificate_id",
    "subscriber_ids": "subscriber_id",
}


# Plausible values for fields checked before the object is looked up.
FILLERS = {
    "threshold": "-100.00",
    "from": "2020-01-01T00:00:00+00:00",
    "to": "2030-01-01T00:00:00+00:00",
    "at": "2030-01-01T00:00:00+00:00",
    "name": "iso-b-name",
    "full_name": "iso-b-person",
    "description": "iso-b-text",
    "reason": "iso-b-reason",
    "login": "iso-b-login",
    "url": "https://example.org/b",
    "amount": "1.00",
    "unit": "RUB",
    "code": "RUB",
    "currency": "RUB",
}


def _field_value(world: World, name: str) -> str | None:
    key = FIELD_VALUES.get(name)
    if key is None:
        return None
    return world.values.get(key)


def _instance(world: World, schema: dict[str, Any], defs: dict[str, Any], name: str = "") -> Any:
    defs = {**defs, **schema.get("$defs", {})}
    if "$ref" in schema:
        return _instance(world, defs[schema["$ref"].split("/")[-1]], defs, name)
    poisoned = _field_value(world, name)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _instance(world, options[0], defs, name) if options else None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        required = set(schema.get("required", ()))
        body = {}
        for prop, sub in schema.get("properties", {}).items():
            if prop in required or _field_value(world, prop) is not None:
                body[prop] = _instance(world, sub, defs, prop)
        return body
    if kind == "array":
        item = _instance(world, schema.get("items", {}), defs, name)
        return [item] if item is not None else []
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "integer":
        return int(poisoned) if poisoned and poisoned.isdigit() else schema.get("minimum", 1)
    if kind == "number":
        return 1
    if kind == "boolean":
        return False
    if kind == "string":
        if poisoned is not None:
            return poisoned
        if name in FILLERS:
            return FILLERS[name]
        if schema.get("format") == "date-time":
            return utcnow().isoformat()
        if schema.get("format") == "date":
            return (date.today() + timedelta(days=1)).isoformat()
        return "1"
    return poisoned


def _json_body(world: World, route: Route) -> Any:
    if route.body_schema is None:
        return None
    defs = world.app.openapi().get("components", {}).get("schemas", {})
    return _instance(world, route.body_schema, defs)


def _form(world: World) -> dict[str, str]:
    form = {name: value for name in FIELD_VALUES if (value := _field_value(world, name))}
    form |= FILLERS | {"amount": "1", "points": "1", "operation_id": uuid.uuid4().hex}
    return form


_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
_ATTR = re.compile(r'([a-zA-Z_:-]+)\s*=\s*"([^"]*)"')
_pages: dict[tuple[int, str], str] = {}


def _page_form(world: World, client: TestClient, path: str) -> dict[str, str] | None:
    """The form the page shows for ``path``, every field filled as a person would, and
    every field that names an object set to A's object of that kind (None: no such form
    on the page of that path or of its parent)."""
    for page in (path, path.rsplit("/", 1)[0] or "/"):
        key = (id(client), page)
        if key not in _pages:
            _pages[key] = client.get(page, follow_redirects=False).text
        for attributes, body in _FORM.findall(_pages[key]):
            attrs = dict(_ATTR.findall(attributes))
            if attrs.get("method", "get").lower() != "post" or attrs.get("action") != path:
                continue
            return _filled(world, body)
    return None


def _filled(world: World, body: str) -> dict[str, str]:
    form: dict[str, str] = {}
    soon = date.today() + timedelta(days=1)
    for tag in re.findall(r"<input\b[^>]*>", body):
        attrs = dict(_ATTR.findall(tag))
        name, kind, value = attrs.get("name"), attrs.get("type", "text"), attrs.get("value", "")
        if not name or kind in ("checkbox", "radio", "submit", "file"):
            continue
        if not value:
            late = any(word in name for word in ("depart", "until", "end", "last"))
            value = {
                "date": (soon + timedelta(days=3 if late else 0)).isoformat(),
                "datetime-local": f"{soon.isoformat()}T10:00",
                "number": "1",
                "email": "b@example.org",
                "tel": "+7 916 000-00-09",
                "password": "b-password-123456",
            }.get(kind, FILLERS.get(name.rsplit("-", 1)[-1], "iso-b-text"))
        form[name] = value
    for name, options in re.findall(
        r"<select\b[^>]*name=\"([^\"]+)\"[^>]*>(.*?)</select>", body, re.S
    ):
        values = [v for v in re.findall(r"<option\b[^>]*value=\"([^\"]*)\"", options) if v]
        if values:
            form[name] = values[0]
    for name in re.findall(r"<textarea\b[^>]*name=\"([^\"]+)\"", body):
        form[name] = "iso-b-text"
    for name in list(form):  # a form's fields may carry its prefix: room-property_id
        if (value := _field_value(world, name.rsplit("-", 1)[-1])) is not None:
            form[name] = value
    return form


def _query(world: World, route: Route) -> dict[str, str]:
    query = {}
    for name, required, _schema in route.query:
        value = _field_value(world, name)
        if value is None and name in ("q", "number", "phone", "search", "email"):
            value = world.values["number"]
        if value is None and required:
            value = FILLERS.get(name, "1")
        if value is not None:
            query[name] = value
    return query


def _leaks(world: World, response: httpx.Response, sent: list[str]) -> list[str]:
    """A's strings in the reply, but for those the caller sent itself (an echo of the
    path or of a field is no leak)."""
    body = response.text + " " + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    # Whole tokens only: a certificate's number must not match inside a metric's float.
    return [
        needle
        for needle in world.needles
        if not any(needle in value for value in sent)
        and re.search(rf"(?<![0-9A-Za-z.]){re.escape(needle)}(?![0-9A-Za-z])", body)
    ]


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [str(value)] if isinstance(value, str | int) else []


def call(
    world: World,
    client: TestClient,
    route: Route,
    *,
    csrf: str | None = None,
    extra: dict[str, str] | None = None,
    path: str | None = None,
) -> tuple[httpx.Response, list[str]]:
    path = path or world.fill(route)
    sent = [path, *(world.value(route.path, p) for p in route.params)]
    kwargs: dict[str, Any] = {"follow_redirects": False, "headers": dict(extra or {})}
    if route.method in ("GET", "DELETE"):
        kwargs["params"] = _query(world, route)
        if route.kind == "web":
            # Pages read some filters from the query themselves: name A's objects in all.
            kwargs["params"] = {k: v for k, v in _form(world).items() if k in FIELD_VALUES}
            kwargs["params"] |= _query(world, route)
        sent += kwargs["params"].values()
    elif route.kind == "web" or (route.kind == "public" and route.body_schema is None):
        shown = _page_form(world, client, path) if route.kind == "web" else None
        form = shown if shown is not None else _form(world)
        if csrf is not None:
            form["csrf_token"] = csrf
        kwargs["data"] = form
        sent += form.values()
    else:
        body = _json_body(world, route)
        if body is not None:
            kwargs["json"] = body
            sent += _leaves(body)
        kwargs["headers"]["Idempotency-Key"] = f"iso-{uuid.uuid4().hex[:12]}"
    response = client.request(route.method, path, **kwargs)
    return response, _leaks(world, response, [s for s in sent if s])


# --------------------------------------------------------------------------- A unchanged

# Web sessions note their last use, jobs their progress; a provider's notifications are
# logged as they come, from anyone (the public /pay/... endpoint, believed only when signed).
VOLATILE = {"web_sessions", "jobs", "provider_notifications"}


def fingerprint(engine: Engine, tenant_id: int) -> dict[str, str]:
    """A digest of every row of the tenant, table by table."""
    digests = {}
    with read_only(engine) as conn:
        for table in kopilka.schema.metadata.sorted_tables:
            if "tenant_id" not in table.c or table.name in VOLATILE:
                continue
            order = list(table.primary_key.columns) or list(table.c)
            rows = conn.execute(
                select(table).where(table.c.tenant_id == tenant_id).order_by(*order)
            ).all()
            digests[table.name] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests


def cross_tenant_references(engine: Engine) -> list[str]:
    """Every foreign key between tenant-scoped tables, checked over the whole database:
    the rows whose tenant differs from the tenant of the row they refer to."""
    found = []
    with read_only(engine) as conn:
        for table in kopilka.schema.metadata.sorted_tables:
            if "tenant_id" not in table.c:
                continue
            for fk in table.foreign_keys:
                parent = fk.column.table
                if "tenant_id" not in parent.c or parent is table:
                    continue
                target = parent.alias("p")
                count = conn.execute(
                    select(func.count())
                    .select_from(table)
                    .join(target, target.c[fk.column.name] == table.c[fk.parent.name])
                    .where(target.c.tenant_id != table.c.tenant_id)
                ).scalar_one()
                if count:
                    found.append(f"{table.name}.{fk.parent.name} -> {parent.name}: {count}")
    return found


# --------------------------------------------------------------------------- the tests


def test_every_route_is_classified_and_every_parameter_known(engine: Engine) -> None:
    world = world_for(engine)
    unknown, unclassified = [], []
    for route in app_routes(world.app):
        for name in route.params:
            try:
                world.value(route.path, name)
            except KeyError:
                unknown.append(f"{route.method} {route.path}: {{{name}}}")
        if route.kind == "public" and not PUBLIC.match(route.path):
            unclassified.append(f"{route.method} {route.path}: no sign-in and not public")
        if (
            route.kind != "public"
            and route.roles is None
            and (route.kind, route.method, route.path) not in ANY_ROLE
        ):
            unclassified.append(f"{route.method} {route.path}: no role check, not ANY_ROLE")
    assert not unknown, "path parameters the sweep cannot fill:\n" + "\n".join(unknown)
    assert not unclassified, "\n".join(unclassified)


def _web_session(world: World, tenant: Tenant, role: str, login: str, password: str) -> Any:
    client = _client(world.app)
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text[:300]
    response = client.post(
        "/login",
        data={
            "csrf_token": token.group(1),
            "tenant": tenant.slug,
            "login": login,
            "password": password,
            "next": "/",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, (role, response.text[:300])
    home = client.get("/")
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', home.text)
    assert csrf, home.text[:300]
    return client, csrf.group(1)


def _ordered(routes: list[Route]) -> list[Route]:
    return sorted(routes, key=lambda r: (bool(LAST.search(r.path)), r.path.endswith("/logout")))


REFUSED = {400, 401, 403, 404, 405, 409, 422}


def test_another_tenant_gets_nothing(engine: Engine) -> None:
    world = world_for(engine)
    _pages.clear()
    before = fingerprint(engine, world.a.id)
    routes = _ordered(app_routes(world.app))
    b_owner = _client(world.app, Authorization=f"Bearer {world.b_token}")
    b_terminal = _client(world.app, Authorization=f"Bearer {world.b_key}")
    actor = Actor.cli("isolation")
    login = f"iso-b-owner-{uuid.uuid4().hex[:6]}"
    _tx(
        engine,
        lambda c: create_user(
            c, tenant_id=world.b.id, login=login, password=PASSWORD, role="owner", actor=actor
        ),
    )
    b_web, b_csrf = _web_session(world, world.b, "owner", login, PASSWORD)
    anonymous = _client(world.app)
    cabinet = _client(world.app)
    page = cabinet.get(f"/cabinet/{world.a.slug}/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    signed = cabinet.post(
        f"/cabinet/{world.a.slug}/login",
        data={
            "csrf_token": token.group(1),
            "account_no": demo.DEMO_SUBSCRIBERS[0],
            "password": demo.DEMO_CABINET_PASSWORD,
        },
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text[:300]
    assert world.mark in cabinet.get(f"/cabinet/{world.a.slug}").text  # A's name, signed in
    before = fingerprint(engine, world.a.id)  # after the cabinet's sign-in
    problems: list[str] = []
    checks = Counter[str]()
    statuses = Counter[str]()

    def judge(who: str, route: Route, response: httpx.Response, leaks: list[str]) -> None:
        checks[who] += 1
        statuses[f"{who}{'+id' if route.params else ''}:{response.status_code}"] += 1
        where = f"{who} {route.method} {route.path} -> {response.status_code}"
        if leaks:
            problems.append(f"{where}: A's data in the reply: {leaks}")
        if route.params and response.status_code not in REFUSED:
            # A web page's refusal of an unknown object may be a redirect with a flash:
            # allowed only when it leads back into B's own pages.
            location = response.headers.get("location", "")
            if not (response.status_code in (303, 204) and route.kind == "web"):
                problems.append(f"{where}: not refused ({response.text[:200]!r})")
            elif any(v in location for v in world.values.values() if len(v) > 3):
                problems.append(f"{where}: redirects to {location}")

    for route in routes:
        if route.path.startswith("/farcards/"):
            # The credential is in the path: B's FarCards secret at A's address must get
            # what a made-up secret gets, word for word.
            bogus = world.fill(route).replace(world.b_farcards_secret, "kfc_" + "0" * 40)
            made_up, _ = call(world, anonymous, route, path=bogus)
            response, leaks = call(world, anonymous, route)
            checks["farcards+B-secret"] += 1
            if (response.status_code, response.text) != (made_up.status_code, made_up.text):
                problems.append(f"B's FarCards secret at A's address: {response.text[:300]}")
            if leaks:
                problems.append(f"B's FarCards secret at A's address: A's data {leaks}")
        if route.kind == "public" and ("{slug}" in route.path or "{tenant}" in route.path):
            # A's objects and A's cabinet session at B's address: nothing of A.
            other = re.sub(f"/{world.a.slug}(?=/|$)", f"/{world.b.slug}", world.fill(route))
            assert other != world.fill(route)
            for who, client in (("public@B+anonymous", anonymous), ("public@B+A-cabinet", cabinet)):
                response, leaks = call(world, client, route, path=other)
                checks[who] += 1
                if leaks:
                    problems.append(f"{who} {route.method} {other}: A's data {leaks}")
                if response.is_success and "/orders/" in route.path:
                    problems.append(f"{who} {route.method} {other}: A's order at B's shop")
        if route.kind == "public":
            anon, anon_leaks = call(world, anonymous, route)
            for who, client, csrf in (
                ("public+B-token", b_owner, None),
                ("public+B-key", b_terminal, None),
                ("public+B-session", b_web, b_csrf),
            ):
                response, leaks = call(world, client, route, csrf=csrf)
                checks[who] += 1
                if response.is_success and not anon.is_success:
                    problems.append(
                        f"{who} {route.method} {route.path}: {response.status_code}, "
                        f"anonymous {anon.status_code}"
                    )
                if set(leaks) - set(anon_leaks):
                    problems.append(f"{who} {route.method} {route.path}: more than anonymous")
        elif route.kind == "api":
            for who, client in (("api+B-token", b_owner), ("api+B-key", b_terminal)):
                response, leaks = call(world, client, route)
                judge(who, route, response, leaks)
        else:
            response, leaks = call(world, b_web, route, csrf=b_csrf)
            judge("web+B-session", route, response, leaks)

    after = fingerprint(engine, world.a.id)
    changed = [name for name in before if before[name] != after[name]]
    crossed = cross_tenant_references(engine)
    total = sum(checks.values())
    print(f"\nisolation checks: {total} ({dict(checks)}) over {len(routes)} route methods")
    print(f"statuses: {sorted(statuses.items())}")
    assert not problems, f"{len(problems)} of {total} checks failed:\n" + "\n".join(problems)
    assert not changed, f"A's rows changed under B's requests: {changed}"
    assert not crossed, f"rows referring to another tenant's rows: {crossed}"


def test_roles_that_may_not_are_refused(engine: Engine) -> None:
    world = world_for(engine)
    _pages.clear()
    routes = _ordered(app_routes(world.app))
    api_clients = {
        who: _client(world.app, Authorization=f"Bearer {token}")
        for who, token in world.a_tokens.items()
    }
    sessions = {
        user.role: _web_session(world, world.a, user.role, user.login, user.password)
        for user in demo.DEMO_USERS
    }
    before = fingerprint(engine, world.a.id)  # after the sign-ins, which are audited
    problems: list[str] = []
    checks = Counter[str]()
    for route in routes:
        if route.roles is None or route.kind == "public":
            continue
        if route.kind == "api":
            for who in (*ROLES, TERMINAL):
                if who in route.roles:
                    continue
                response, _ = call(world, api_clients[who], route)
                checks[f"api:{who}"] += 1
                if response.status_code != 403:
                    problems.append(
                        f"{who} {route.method} {route.path} -> {response.status_code} "
                        f"{response.text[:200]!r}"
                    )
        else:
            for role in ROLES:
                if role in route.roles:
                    continue
                client, csrf = sessions[role]
                response, _ = call(world, client, route, csrf=csrf)
                checks[f"web:{role}"] += 1
                if response.status_code != 403:
                    problems.append(
                        f"{role} {route.method} {route.path} -> {response.status_code} "
                        f"{response.headers.get('location', '')}"
                    )
    after = fingerprint(engine, world.a.id)
    changed = [name for name in before if before[name] != after[name]]
    total = sum(checks.values())
    print(f"\nrole checks: {total} ({dict(checks)})")
    assert not problems, f"{len(problems)} of {total} role checks failed:\n" + "\n".join(problems)
    assert not changed, f"A's rows changed under refused requests: {changed}"


def test_an_administrator_cannot_climb_to_owner(engine: Engine) -> None:
    """Within the pages an administrator may open (Settings -> Staff): no owner made, no
    owner changed or given a new password, no administrator made owner."""
    world = world_for(engine)
    admin_user = next(u for u in demo.DEMO_USERS if u.role == "administrator")
    admin, csrf = _web_session(world, world.a, "admin", admin_user.login, admin_user.password)
    users = kopilka.schema.metadata.tables["users"]
    with read_only(engine) as conn:
        rows = {
            row.login: row.id
            for row in conn.execute(select(users).where(users.c.tenant_id == world.a.id))
        }
    before = fingerprint(engine, world.a.id)["users"]
    attempts = [
        ("/settings/users/new", {"login": "iso-climber", "role": "owner", "password": PASSWORD}),
        (f"/settings/users/{rows['owner']}/password", {"password": "owned by admin 1"}),
        (f"/settings/users/{rows['owner']}", {"full_name": "x", "role": "cashier"}),
        (f"/settings/users/{rows['owner']}", {"full_name": "x", "role": "owner", "is_active": ""}),
        (f"/settings/users/{rows[admin_user.login]}", {"full_name": "x", "role": "owner"}),
    ]
    for path, form in attempts:
        response = admin.post(path, data={"csrf_token": csrf, **form}, follow_redirects=False)
        assert response.status_code in (403, 422), (path, form, response.status_code)
    assert fingerprint(engine, world.a.id)["users"] == before
