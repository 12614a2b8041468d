"""The Settings screens (SPEC X-1, X-2, X-4): company, branches, staff, terminals, units.

Over HTTP with real sessions and CSRF tokens, on SQLite and PostgreSQL. Pages render in
Russian (the tenant's language), so tests assert on data, status codes and
``data-testid`` hooks, or on Russian text deliberately.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, insert, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import Forbidden, Refused
from kopilka.ledger.schema import units
from kopilka.tenancy.actions import (
    TenancyErrorCode,
    actor_for_user,
    create_user,
    get_user,
    update_user,
)
from kopilka.tenancy.schema import audit_events, branches, tenants, terminals, users, web_sessions
from kopilka.web.paging import Paging
from tests.web.conftest import PASSWORD, Visitor, Web, csrf_of, text_of

TABS = ("tenant", "branches", "users", "terminals", "units", "payment-types", "farcards")


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def user_row(web: Web, login: str) -> Any:
    with web.engine.connect() as conn:
        return conn.execute(
            select(users).where(users.c.tenant_id == web.tenant.id, users.c.login == login)
        ).first()


def hooks_of(html: str) -> set[str]:
    return set(re.findall(r'data-testid="([^"]+)"', html))


def sign_in_as(web: Web, login: str, password: str) -> tuple[Visitor, httpx.Response]:
    """Through the real sign-in form, as a person would."""
    visitor = web.visitor()
    form = visitor.get("/login")
    response = visitor.client.post(
        "/login",
        data={
            "csrf_token": csrf_of(form.text),
            "tenant": web.tenant.slug,
            "login": login,
            "password": password,
            "next": "/",
        },
        follow_redirects=False,
    )
    if response.status_code == 303:
        visitor.csrf = csrf_of(visitor.get("/").text)
    return visitor, response


def signed_out(visitor: Visitor) -> bool:
    response = visitor.get("/", follow_redirects=False)
    return response.status_code == 303 and response.headers["location"].startswith("/login")


# --------------------------------------------------------------------------- access


def test_owner_opens_every_tab(web: Web) -> None:
    owner = web.sign_in("owner")
    start = owner.get("/settings", follow_redirects=False)
    assert start.status_code == 303
    assert start.headers["location"] == "/settings/tenant"
    for tab in TABS:
        page = owner.get(f"/settings/{tab}")
        assert page.status_code == 200, (tab, text_of(page.text)[:300])
        assert {f"tab-{t}" for t in TABS} <= hooks_of(page.text)
        assert f'data-testid="tab-{tab}" aria-current="page"' in page.text
        assert "<script>" not in page.text and "style=" not in page.text


def test_administrator_opens_all_but_the_company(web: Web) -> None:
    admin = web.sign_in("administrator")
    start = admin.get("/settings", follow_redirects=False)
    assert start.headers["location"] == "/settings/branches"
    assert admin.get("/settings/tenant").status_code == 403
    assert admin.post("/settings/tenant", {"name": "Taken over"}).status_code == 403
    for tab in TABS[1:]:
        page = admin.get(f"/settings/{tab}")
        assert page.status_code == 200, tab
        assert "tab-tenant" not in hooks_of(page.text)


@pytest.mark.parametrize("role", ["cashier", "front_desk"])
def test_till_and_desk_staff_may_not_open_settings(web: Web, role: str) -> None:
    visitor = web.sign_in(role)
    assert visitor.get("/settings").status_code == 403
    for tab in TABS:
        page = visitor.get(f"/settings/{tab}")
        assert page.status_code == 403, tab
        assert "error-page" in hooks_of(page.text)
    assert visitor.get(f"/settings/users/{web.users['owner'].id}").status_code == 403
    response = visitor.post("/settings/branches", {"name": "Sneaky"})
    assert response.status_code == 403
    assert count(web.engine, branches, branches.c.tenant_id == web.tenant.id) == 1


def test_a_post_without_the_csrf_token_writes_nothing(web: Web) -> None:
    owner = web.sign_in("owner")
    before = count(web.engine, branches, branches.c.tenant_id == web.tenant.id)
    response = owner.client.post("/settings/branches", data={"name": "Forged"})
    assert response.status_code == 403
    response = owner.client.post(
        "/settings/branches", data={"name": "Forged", "csrf_token": "not-the-token"}
    )
    assert response.status_code == 403
    assert count(web.engine, branches, branches.c.tenant_id == web.tenant.id) == before
    response = owner.client.post(
        "/settings/users/new",
        data={"login": "forged", "password": PASSWORD, "role": "owner"},
    )
    assert response.status_code == 403
    assert user_row(web, "forged") is None


# --------------------------------------------------------------------------- company


def test_owner_edits_the_company(web: Web) -> None:
    owner = web.sign_in("owner")
    response = owner.post(
        "/settings/tenant",
        {
            "name": "Гостиница «Берёзка» и спа",
            "locale": "ru",
            "timezone": "Asia/Almaty",
            "currency": "kzt",
        },
    )
    assert response.status_code == 303
    page = owner.follow(response)
    assert "Гостиница «Берёзка» и спа" in text_of(page.text)
    assert 'role="status"' in page.text  # the "saved" message
    with web.engine.connect() as conn:
        row = conn.execute(select(tenants).where(tenants.c.id == web.tenant.id)).one()
        kzt = conn.execute(
            select(units.c.exponent).where(
                units.c.tenant_id == web.tenant.id, units.c.code == "KZT"
            )
        ).scalar_one()
        action = conn.execute(
            select(audit_events.c.action).where(
                audit_events.c.tenant_id == web.tenant.id, audit_events.c.action == "tenant.update"
            )
        ).scalar_one()
    assert (row.timezone, row.currency) == ("Asia/Almaty", "KZT")
    assert kzt == 2  # the new home currency is enabled as a unit
    assert action == "tenant.update"


def test_a_bad_time_zone_or_currency_is_refused_by_its_field(web: Web) -> None:
    owner = web.sign_in("owner")
    response = owner.post(
        "/settings/tenant",
        {"name": "Renamed", "locale": "ru", "timezone": "Mars/Olympus", "currency": "ZZZ"},
    )
    assert response.status_code == 422
    assert "error-timezone" in hooks_of(response.text)
    response = owner.post(
        "/settings/tenant",
        {"name": "Renamed", "locale": "ru", "timezone": "Europe/Moscow", "currency": "ZZZ"},
    )
    assert response.status_code == 422
    assert "error-currency" in hooks_of(response.text)
    assert "error-timezone" not in hooks_of(response.text)
    with web.engine.connect() as conn:
        row = conn.execute(select(tenants).where(tenants.c.id == web.tenant.id)).one()
    assert (row.name, row.timezone, row.currency) == (
        web.tenant.name,
        web.tenant.timezone,
        web.tenant.currency,
    )


def test_the_company_language_changes_the_screens(web: Web) -> None:
    owner = web.sign_in("owner")
    before = text_of(owner.get("/settings/users").text)
    assert "Настройки" in before and "Сотрудники" in before
    response = owner.post(
        "/settings/tenant",
        {"name": web.tenant.name, "locale": "en", "timezone": "Europe/Moscow", "currency": "RUB"},
    )
    assert response.status_code == 303
    assert "saved" in text_of(owner.follow(response).text)  # the message speaks English too
    after = text_of(owner.get("/settings/users").text)
    assert "Settings" in after and "Staff" in after and "Login" in after
    assert "Настройки" not in after


# --------------------------------------------------------------------------- branches


def test_branches_are_added_and_renamed(web: Web) -> None:
    admin = web.sign_in("administrator")
    response = admin.post("/settings/branches", {"name": "Spa wing"})
    assert response.status_code == 303
    assert "Spa wing" in text_of(admin.follow(response).text)

    duplicate = admin.post("/settings/branches", {"name": "Spa wing"})
    assert duplicate.status_code == 422
    assert "error-name" in hooks_of(duplicate.text)
    assert count(web.engine, branches, branches.c.tenant_id == web.tenant.id) == 2

    clash = admin.post(f"/settings/branches/{web.branch_id}", {"name": "Spa wing"})
    assert clash.status_code == 422
    assert "error-rename" in hooks_of(clash.text)

    renamed = admin.post(f"/settings/branches/{web.branch_id}", {"name": "Old building"})
    assert renamed.status_code == 303
    with web.engine.connect() as conn:
        names = set(
            conn.execute(
                select(branches.c.name).where(branches.c.tenant_id == web.tenant.id)
            ).scalars()
        )
        audited = conn.execute(
            select(func.count()).where(
                audit_events.c.tenant_id == web.tenant.id, audit_events.c.action == "branch.rename"
            )
        ).scalar_one()
    assert names == {"Old building", "Spa wing"}
    assert audited == 1
    assert admin.post("/settings/branches/999999999", {"name": "Ghost"}).status_code == 404


# --------------------------------------------------------------------------- staff


def test_a_created_user_signs_in(web: Web) -> None:
    admin = web.sign_in("administrator")
    form = admin.get("/settings/users/new")
    assert "new-user-form" in hooks_of(form.text)
    assert 'value="owner"' not in form.text  # an administrator is not offered the owner role
    response = admin.post(
        "/settings/users/new",
        {
            "login": "anna.k",
            "full_name": "Анна Кузнецова",
            "role": "cashier",
            "password": "s3cret-enough",
            "locale": "en",
        },
    )
    assert response.status_code == 303, text_of(response.text)[:400]
    listing = admin.follow(response)
    assert "staff-anna.k" in hooks_of(listing.text)
    assert "Анна Кузнецова" in text_of(listing.text)

    anna, signed = sign_in_as(web, "anna.k", "s3cret-enough")
    assert signed.status_code == 303
    home = anna.get("/")
    assert home.status_code == 200
    assert "Анна Кузнецова" in text_of(home.text)
    assert anna.get("/settings/users").status_code == 403  # a cashier
    row = user_row(web, "anna.k")
    assert (row.role, row.locale, row.is_active) == ("cashier", "en", True)


def test_a_taken_login_is_refused_by_its_field_and_nothing_is_written(web: Web) -> None:
    owner = web.sign_in("owner")
    before = count(web.engine, users, users.c.tenant_id == web.tenant.id)
    response = owner.post(
        "/settings/users/new",
        {"login": "cashier1", "full_name": "Someone else", "role": "cashier", "password": PASSWORD},
    )
    assert response.status_code == 422
    assert "error-login" in hooks_of(response.text)
    assert "new-user-form" in hooks_of(response.text)
    assert 'value="Someone else"' in response.text  # what was typed stays
    assert PASSWORD not in response.text  # passwords are never echoed
    short = owner.post(
        "/settings/users/new",
        {"login": "newbie", "role": "cashier", "password": "short"},
    )
    assert short.status_code == 422
    assert "error-password" in hooks_of(short.text)
    assert count(web.engine, users, users.c.tenant_id == web.tenant.id) == before


def test_an_administrator_makes_no_owners(web: Web) -> None:
    admin = web.sign_in("administrator")
    response = admin.post(
        "/settings/users/new",
        {"login": "boss2", "role": "owner", "password": PASSWORD},
    )
    assert response.status_code == 422
    assert "error-role" in hooks_of(response.text)
    assert user_row(web, "boss2") is None

    # Nor promotes anyone to owner, nor changes an owner.
    cashier = web.users["cashier"]
    response = admin.post(
        f"/settings/users/{cashier.id}",
        {"full_name": "x", "role": "owner", "is_active": "y"},
    )
    assert response.status_code == 422
    assert user_row(web, "cashier1").role == "cashier"

    owner = web.users["owner"]
    page = admin.get(f"/settings/users/{owner.id}")
    assert page.status_code == 200
    assert "read-only" in hooks_of(page.text)
    assert "edit-user-form" not in hooks_of(page.text)
    response = admin.post(
        f"/settings/users/{owner.id}",
        {"full_name": "Demoted", "role": "cashier", "is_active": ""},
    )
    assert response.status_code == 422
    assert "form-error" in hooks_of(response.text)
    response = admin.post(f"/settings/users/{owner.id}/password", {"password": "taken-over-1"})
    assert response.status_code == 422
    row = user_row(web, "owner1")
    assert (row.role, row.is_active, row.full_name) == ("owner", True, "Owner Person")

    # The domain says so too, whoever calls it.
    with web.engine.begin() as conn, pytest.raises(Forbidden) as refused:
        create_user(
            conn,
            tenant_id=web.tenant.id,
            login="boss3",
            password=PASSWORD,
            role="owner",
            actor=actor_for_user(web.users["administrator"], None),
        )
    assert refused.value.code == TenancyErrorCode.ROLE_NOT_ASSIGNABLE


def test_nobody_deactivates_or_demotes_themselves(web: Web) -> None:
    for role in ("owner", "administrator"):
        visitor = web.sign_in(role)
        me = web.users[role]
        page = visitor.get(f"/settings/users/{me.id}")
        assert page.status_code == 200
        assert 'name="is_active" value="y"' in page.text  # kept as it is, not offered
        deactivate = visitor.post(
            f"/settings/users/{me.id}", {"full_name": me.full_name, "role": me.role}
        )
        assert deactivate.status_code == 422
        assert "form-error" in hooks_of(deactivate.text)
        demote = visitor.post(
            f"/settings/users/{me.id}",
            {"full_name": me.full_name, "role": "cashier", "is_active": "y"},
        )
        assert demote.status_code == 422
        row = user_row(web, me.login)
        assert (row.role, row.is_active) == (role, True)
        assert not signed_out(visitor)
        # Their own name they may change.
        renamed = visitor.post(
            f"/settings/users/{me.id}",
            {"full_name": "New Name", "role": me.role, "is_active": "y"},
        )
        assert renamed.status_code == 303
        assert user_row(web, me.login).full_name == "New Name"


def test_the_last_active_owner_stays_an_owner(web: Web) -> None:
    owner = web.users["owner"]
    cli = Actor.cli("tests")
    with web.engine.begin() as conn, pytest.raises(Refused) as refused:
        update_user(conn, tenant_id=web.tenant.id, user_id=owner.id, role="cashier", actor=cli)
    assert refused.value.code == TenancyErrorCode.LAST_OWNER
    with web.engine.begin() as conn, pytest.raises(Refused):
        update_user(conn, tenant_id=web.tenant.id, user_id=owner.id, is_active=False, actor=cli)

    # With a second owner, one of them may go; then the other is the last.
    visitor = web.sign_in("owner")
    response = visitor.post(
        "/settings/users/new",
        {"login": "owner2", "full_name": "Second Owner", "role": "owner", "password": PASSWORD},
    )
    assert response.status_code == 303
    second = user_row(web, "owner2")
    response = visitor.post(
        f"/settings/users/{second.id}", {"full_name": "Second Owner", "role": "owner"}
    )
    assert response.status_code == 303  # deactivated: owner1 is still an active owner
    assert user_row(web, "owner2").is_active is False
    with web.engine.begin() as conn, pytest.raises(Refused):
        update_user(conn, tenant_id=web.tenant.id, user_id=owner.id, role="cashier", actor=cli)
    with web.engine.begin() as conn:
        assert get_user(conn, web.tenant.id, owner.id).role == "owner"


def test_deactivating_a_user_signs_them_out_everywhere(web: Web) -> None:
    cashier = web.sign_in("cashier")
    assert not signed_out(cashier)
    owner = web.sign_in("owner")
    target = web.users["cashier"]
    response = owner.post(
        f"/settings/users/{target.id}",
        {"full_name": target.full_name, "role": "cashier"},  # "active" unticked
    )
    assert response.status_code == 303
    assert signed_out(cashier)
    assert (
        count(
            web.engine,
            web_sessions,
            web_sessions.c.user_id == target.id,
            web_sessions.c.revoked_at.is_(None),
        )
        == 0
    )
    _, again = sign_in_as(web, target.login, PASSWORD)
    assert again.status_code == 401

    listing = owner.get("/settings/users?status=inactive")
    assert hooks_of(listing.text) >= {"staff-cashier1"}
    assert "staff-owner1" not in hooks_of(listing.text)

    # Active again: they may sign in once more.
    response = owner.post(
        f"/settings/users/{target.id}",
        {"full_name": target.full_name, "role": "cashier", "is_active": "y"},
    )
    assert response.status_code == 303
    _, again = sign_in_as(web, target.login, PASSWORD)
    assert again.status_code == 303


def test_a_new_password_signs_the_user_out_and_works(web: Web) -> None:
    desk = web.sign_in("front_desk")
    admin = web.sign_in("administrator")
    target = web.users["front_desk"]
    short = admin.post(f"/settings/users/{target.id}/password", {"password": "short"})
    assert short.status_code == 422
    assert "error-password" in hooks_of(short.text)
    assert not signed_out(desk)

    response = admin.post(f"/settings/users/{target.id}/password", {"password": "brand-new-pass"})
    assert response.status_code == 303
    assert signed_out(desk)
    assert not signed_out(admin)
    _, old = sign_in_as(web, target.login, PASSWORD)
    assert old.status_code == 401
    _, new = sign_in_as(web, target.login, "brand-new-pass")
    assert new.status_code == 303
    with web.engine.connect() as conn:
        actions = set(
            conn.execute(
                select(audit_events.c.action).where(
                    audit_events.c.tenant_id == web.tenant.id,
                    audit_events.c.object_type == "user",
                    audit_events.c.object_id == str(target.id),
                )
            ).scalars()
        )
    assert "user.password" in actions


def test_staff_list_searches_filters_and_pages(web: Web) -> None:
    now = utcnow()
    with web.engine.begin() as conn:
        conn.execute(
            insert(users),
            [
                {
                    "tenant_id": web.tenant.id,
                    "login": f"temp{n:02d}",
                    "full_name": f"Temp Worker {n}",
                    "password_hash": "-",
                    "role": "cashier" if n % 2 else "front_desk",
                    "is_active": n != 7,
                    "created_at": now,
                }
                for n in range(30)
            ],
        )
    admin = web.sign_in("administrator")
    first = admin.get("/settings/users")
    assert first.status_code == 200
    rows = [t for t in hooks_of(first.text) if t.startswith("staff-")]
    assert len(rows) == 25
    assert "users-table" in hooks_of(first.text)
    assert "1\u201325 " in text_of(first.text) and " 34" in text_of(first.text)
    nxt = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert nxt and "page=2" in nxt.group(1)
    second = admin.get(nxt.group(1).replace("&amp;", "&"))
    assert len([t for t in hooks_of(second.text) if t.startswith("staff-")]) == 9
    assert 'rel="next"' not in second.text and 'rel="prev"' in second.text

    cashiers = admin.get("/settings/users?role=cashier&q=temp")
    found = {t for t in hooks_of(cashiers.text) if t.startswith("staff-")}
    assert len(found) == 15 and "staff-temp01" in found and "staff-cashier1" not in found

    by_name = admin.get("/settings/users?q=Worker 17")
    assert {t for t in hooks_of(by_name.text) if t.startswith("staff-")} == {"staff-temp17"}
    inactive = admin.get("/settings/users?status=inactive&q=TEMP")
    assert {t for t in hooks_of(inactive.text) if t.startswith("staff-")} == {"staff-temp07"}
    wildcard = admin.get("/settings/users?q=%25")
    assert not [t for t in hooks_of(wildcard.text) if t.startswith("staff-")]
    nonsense = admin.get("/settings/users?page=zzz&role=king&status=maybe")
    assert nonsense.status_code == 200


def test_paging_keeps_the_other_query_arguments() -> None:
    paging = Paging(page=2, per_page=25, total=60, path="/x", query=(("q", "a b"), ("page", "2")))
    assert (paging.first, paging.last, paging.offset) == (26, 50, 25)
    assert paging.prev_url == "/x?q=a+b"
    assert paging.next_url == "/x?q=a+b&page=3"
    last = Paging(page=3, per_page=25, total=60, path="/x")
    assert (last.first, last.last, last.next_url) == (51, 60, None)
    beyond = Paging(page=9, per_page=25, total=60, path="/x")
    assert (beyond.first, beyond.last, beyond.prev_url) == (0, 0, "/x?page=3")
    assert Paging(page=1, total=0, path="/x").next_url is None


# --------------------------------------------------------------------------- terminals


def test_a_terminal_key_is_shown_once_works_and_dies_when_revoked(web: Web) -> None:
    admin = web.sign_in("administrator")
    page = admin.get("/settings/terminals")
    assert {"new-terminal-form", "terminals-table"} <= hooks_of(page.text)
    response = admin.post(
        "/settings/terminals", {"name": "Till 1", "branch_id": str(web.branch_id)}
    )
    assert response.status_code == 200
    match = re.search(r'data-testid="terminal-key">([^<]+)<', response.text)
    assert match
    key = match.group(1).strip()
    assert key.startswith("kpt_")
    assert 'class="secret"' in response.text
    assert response.headers["cache-control"] == "no-store"

    listing = admin.get("/settings/terminals")
    assert key not in listing.text
    assert "Till 1" in text_of(listing.text) and "Main building" in text_of(listing.text)
    prefix = key.split("_")[1]
    assert f"kpt_{prefix}_" in listing.text

    api = web.visitor()
    auth = {"Authorization": f"Bearer {key}"}
    assert api.get("/api/v1/units", headers=auth).status_code == 200

    duplicate = admin.post("/settings/terminals", {"name": "Till 1", "branch_id": ""})
    assert duplicate.status_code == 422
    assert "error-name" in hooks_of(duplicate.text)
    assert "terminal-key" not in hooks_of(duplicate.text)
    assert count(web.engine, terminals, terminals.c.tenant_id == web.tenant.id) == 1

    with web.engine.connect() as conn:
        terminal_id = conn.execute(
            select(terminals.c.id).where(terminals.c.tenant_id == web.tenant.id)
        ).scalar_one()
    confirm = admin.get(f"/settings/terminals/{terminal_id}/revoke")
    assert confirm.status_code == 200
    assert "revoke-form" in hooks_of(confirm.text)
    assert api.get("/api/v1/units", headers=auth).status_code == 200  # asking revokes nothing
    revoked = admin.post(f"/settings/terminals/{terminal_id}/revoke")
    assert revoked.status_code == 303
    assert api.get("/api/v1/units", headers=auth).status_code == 401
    assert f"revoke-{terminal_id}" not in hooks_of(admin.get("/settings/terminals").text)
    assert admin.get("/settings/terminals/999999999/revoke").status_code == 404


def test_terminals_of_another_tenant_are_out_of_reach(web: Web) -> None:
    owner = web.sign_in("owner")
    assert owner.post("/settings/terminals/999999999/revoke").status_code == 404
    assert owner.get("/settings/users/999999999").status_code == 404


# --------------------------------------------------------------------------- units


def test_units_are_added_with_their_decimals(web: Web) -> None:
    admin = web.sign_in("administrator")
    page = admin.get("/settings/units")
    assert "unit-RUB" in hooks_of(page.text)
    response = admin.post("/settings/units/currency", {"currency-code": "kzt"})
    assert response.status_code == 303
    listing = admin.follow(response)
    assert "unit-KZT" in hooks_of(listing.text)
    assert 'data-testid="unit-KZT-exponent">2<' in listing.text

    bad = admin.post("/settings/units/currency", {"currency-code": "XQ1"})
    assert bad.status_code == 422
    assert "error-currency-code" in hooks_of(bad.text)
    again = admin.post("/settings/units/currency", {"currency-code": "KZT"})
    assert again.status_code == 422
    assert "error-currency-code" in hooks_of(again.text)

    points = admin.post(
        "/settings/units/points",
        {"points-code": "BONUS", "points-name": "бонусы", "points-decimals": "0"},
    )
    assert points.status_code == 303
    not_points = admin.post(
        "/settings/units/points",
        {"points-code": "USD", "points-name": "", "points-decimals": "0"},
    )
    assert not_points.status_code == 422
    assert "error-points-code" in hooks_of(not_points.text)
    too_fine = admin.post(
        "/settings/units/points",
        {"points-code": "MILES", "points-name": "", "points-decimals": "9"},
    )
    assert too_fine.status_code == 422
    assert "error-points-decimals" in hooks_of(too_fine.text)
    with web.engine.connect() as conn:
        found = dict(
            conn.execute(
                select(units.c.code, units.c.exponent).where(units.c.tenant_id == web.tenant.id)
            ).all()
        )
    assert found == {"RUB": 2, "KZT": 2, "BONUS": 0}
