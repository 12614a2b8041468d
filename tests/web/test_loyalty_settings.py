"""The loyalty module's tab in the settings (seed 002; SPEC P-9, C-7): the owner switches it
off (and the terminals are refused), downloads the export, and removes the data after
typing the company's code and confirming once more; nobody else may."""

from __future__ import annotations

import io
import json
import re
import zipfile

from sqlalchemy import select

from kopilka.core.db import read_only
from kopilka.loyalty.billing import is_loyalty_enabled
from kopilka.loyalty.card_search import search_cards
from kopilka.tenancy.actions import create_terminal
from kopilka.tenancy.schema import audit_events
from tests.web.conftest import TestClient, Visitor, Web, text_of
from tests.web.test_cards import ACTOR, bonus_program, field_error, issue


def terminal(web: Web) -> TestClient:
    with web.engine.begin() as conn:
        _terminal, key = create_terminal(conn, tenant_id=web.tenant.id, name="Касса 1", actor=ACTOR)
    return TestClient(web.app(), headers={"Authorization": f"Bearer {key}"})


def flash_of(visitor: Visitor, reply: object) -> str:
    return text_of(visitor.follow(reply).text)  # type: ignore[arg-type]


def cards_left(web: Web) -> int:
    with read_only(web.engine) as conn:
        return search_cards(conn, web.tenant.id, limit=10).total


def test_switched_off_the_terminals_are_refused_and_on_they_are_served(web: Web) -> None:
    program_id = bonus_program(web)
    issue(web, program_id, "990000000001")
    pos = terminal(web)
    lookup = "/api/v1/pos/cards/lookup?number=990000000001"
    assert pos.get(lookup).status_code == 200

    owner = web.sign_in("owner")
    home = owner.get("/settings/loyalty")
    assert home.status_code == 200
    assert 'data-testid="tab-loyalty" aria-current="page"' in home.text
    assert 'data-enabled="on"' in home.text
    counts = text_of(re.search(r'data-testid="loyalty-counts">(.*?)</dl>', home.text, re.S)[1])
    assert "Программы 1" in counts and "Карты 1" in counts
    assert 'data-testid="loyalty-purge"' not in home.text  # only once it is off

    off = owner.post("/settings/loyalty/switch", {"enabled": "off"})
    assert "Модуль лояльности выключен" in flash_of(owner, off)
    refused = pos.get(lookup)
    assert refused.status_code == 403
    assert refused.json()["code"] == "loyalty_module_disabled"

    on = owner.post("/settings/loyalty/switch", {"enabled": "on"})
    assert "Модуль лояльности включён" in flash_of(owner, on)
    assert pos.get(lookup).status_code == 200
    with read_only(web.engine) as conn:
        actions = conn.execute(
            select(audit_events.c.action)
            .where(audit_events.c.tenant_id == web.tenant.id)
            .where(audit_events.c.action.like("loyalty.%"))
            .order_by(audit_events.c.id)
        ).scalars()
        assert list(actions) == ["loyalty.disable", "loyalty.enable"]


def test_the_export_downloads_a_zip_with_its_manifest(web: Web) -> None:
    program_id = bonus_program(web)
    issue(web, program_id, "990000000011")
    issue(web, program_id, "990000000012")
    owner = web.sign_in("owner")
    reply = owner.get("/settings/loyalty/export")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/zip"
    assert f"loyalty-{web.tenant.slug}-" in reply.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["tenant"]["slug"] == web.tenant.slug
    rows = {f["table"]: f["rows"] for f in manifest["files"]}
    assert rows["cards"] == 2 and rows["loyalty_programs"] == 1
    assert len(archive.read("cards.jsonl").decode().splitlines()) == 2


def test_the_purge_asks_for_the_code_then_once_more_and_removes_the_cards(web: Web) -> None:
    program_id = bonus_program(web)
    issue(web, program_id, "990000000021")
    issue(web, program_id, "990000000022")
    owner = web.sign_in("owner")

    # While the module is on there is nothing to confirm.
    refused = owner.get("/settings/loyalty/purge", follow_redirects=False)
    assert refused.headers["location"] == "/settings/loyalty"
    assert "Выключите модуль лояльности" in flash_of(owner, refused)
    owner.post("/settings/loyalty/switch", {"enabled": "off"})

    start = owner.get("/settings/loyalty/purge")
    assert start.status_code == 200 and web.tenant.slug in text_of(start.text)
    wrong = owner.post("/settings/loyalty/purge", {"slug": "someone-else"})
    assert wrong.status_code == 422
    assert field_error(wrong.text, "slug") == "Это не код компании; введите его, как показано."
    assert cards_left(web) == 2

    asked = owner.post("/settings/loyalty/purge", {"slug": web.tenant.slug.upper()})
    assert asked.status_code == 200
    assert 'data-testid="purge-confirm-form"' in asked.text
    token = re.search(r'name="token"[^>]*value="([^"]+)"', asked.text)
    assert token is not None and token[1].startswith("kpp_")
    assert cards_left(web) == 2  # the code alone removes nothing

    # A forged last step (someone else's or no token) is refused and removes nothing.
    forged = owner.post(
        "/settings/loyalty/purge/confirm", {"token": "kpp_forged", "slug": web.tenant.slug}
    )
    assert "начните удаление заново" in flash_of(owner, forged)
    assert cards_left(web) == 2

    done = owner.post(
        "/settings/loyalty/purge/confirm", {"token": token[1], "slug": web.tenant.slug}
    )
    assert done.headers["location"] == "/settings/loyalty"
    message = flash_of(owner, done)
    assert "Данные лояльности удалены: программ — 1, карт — 2" in message
    assert cards_left(web) == 0

    # The request was good once.
    again = owner.post(
        "/settings/loyalty/purge/confirm", {"token": token[1], "slug": web.tenant.slug}
    )
    assert "начните удаление заново" in flash_of(owner, again)


def test_an_administrator_has_no_loyalty_tab(web: Web) -> None:
    program_id = bonus_program(web)
    issue(web, program_id, "990000000031")
    admin = web.sign_in("administrator")
    assert 'data-testid="tab-loyalty"' not in admin.get("/settings/users").text
    assert admin.get("/settings/loyalty").status_code == 403
    assert admin.get("/settings/loyalty/export").status_code == 403
    assert admin.post("/settings/loyalty/switch", {"enabled": "off"}).status_code == 403
    assert admin.get("/settings/loyalty/purge").status_code == 403
    assert admin.post("/settings/loyalty/purge", {"slug": web.tenant.slug}).status_code == 403
    with read_only(web.engine) as conn:
        assert is_loyalty_enabled(conn, web.tenant.id)
    assert cards_left(web) == 1
