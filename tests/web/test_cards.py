"""The cards and bonuses screens (SPEC C-1 … C-5, P-6): programs and tiers, issuing one
card and a range, a card's page with a manual document, group operations, debts, and who
may see what. Amounts are read the way the tenant's Russian screens write them."""

from __future__ import annotations

import re
import time

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit
from kopilka.loyalty import pos
from kopilka.loyalty.card_search import search_cards
from kopilka.loyalty.cards import find_card, issue_card
from kopilka.loyalty.programs import create_program
from kopilka.tenancy.actions import create_terminal
from tests.web.conftest import Visitor, Web, text_of

ACTOR = Actor.cli("tests")
NBSP = "\u00a0"


def bonus_program(web: Web, **rules: int) -> int:
    with web.engine.begin() as conn:
        create_unit(
            conn,
            tenant_id=web.tenant.id,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусов",
            exponent=2,
            actor=ACTOR,
        )
        program = create_program(
            conn,
            tenant_id=web.tenant.id,
            name="Бонусы",
            unit_code="BONUS",
            actor=ACTOR,
            accrual_bp=rules.get("accrual_bp", 300),
            lifetime_days=rules.get("lifetime_days", 30),
        )
    return program.id


def issue(web: Web, program_id: int, number: str, **holder: str) -> int:
    with web.engine.begin() as conn:
        card = issue_card(
            conn,
            tenant_id=web.tenant.id,
            program_id=program_id,
            number=number,
            actor=ACTOR,
            **holder,  # type: ignore[arg-type]
        )
    return card.id


def balance_of(web: Web, number: str) -> int:
    with read_only(web.engine) as conn:
        return find_card(conn, web.tenant.id, number=number).balance_minor


def field_error(html: str, name: str) -> str:
    match = re.search(rf'data-testid="error-{name}">(.*?)</p>', html, re.S)
    assert match, f"no error shown by the field {name}"
    return match.group(1).strip()


def test_an_owner_creates_a_program_with_a_tier_and_a_bad_percent_is_shown(web: Web) -> None:
    with web.engine.begin() as conn:
        create_unit(
            conn,
            tenant_id=web.tenant.id,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусов",
            exponent=2,
            actor=ACTOR,
        )
    owner = web.sign_in("owner")
    bad = owner.post(
        "/cards/programs",
        {"name": "Скидки", "unit_code": "BONUS", "accrual": "120", "activation_delay_days": "0"},
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "accrual") == "Введите процент от 0 до 100."

    made = owner.post(
        "/cards/programs",
        {
            "name": "Скидки",
            "unit_code": "BONUS",
            "accrual": "2,5",
            "exclude_points_part": "y",
            "activation_delay_days": "1",
            "lifetime_days": "30",
            "max_share": "50",
            "min_check": "100",
        },
    )
    page = owner.follow(made)
    text = text_of(page.text)
    assert "Программа Скидки создана." in text
    assert f"2,50{NBSP}%" in page.text and f"50,00{NBSP}%" in page.text
    program_id = int(re.search(r'data-testid="program-(\d+)"', page.text).group(1))  # type: ignore[union-attr]

    tier = owner.post(
        f"/cards/programs/{program_id}/tiers",
        {"name": "Серебро", "threshold": "10 000", "discount": "3", "accrual": "5"},
    )
    page = owner.follow(tier)
    tiers = re.search(rf'data-testid="tiers-{program_id}".*?</table>', page.text, re.S)
    assert tiers is not None
    assert "Серебро" in tiers.group(0)
    assert f"10{NBSP}000,00{NBSP}₽" in tiers.group(0)
    assert f"3,00{NBSP}%" in tiers.group(0)


def test_issue_a_card_by_form_then_a_duplicate_is_refused_by_its_field(web: Web) -> None:
    program_id = bonus_program(web)
    owner = web.sign_in("owner")
    form = owner.get("/cards/new")
    assert form.status_code == 200
    made = owner.post(
        "/cards/new",
        {
            "program_id": str(program_id),
            "number": "2770 0000 0001",
            "holder_name": "Анна Петрова",
            "holder_phone": "8 (912) 345-67-89",
            "expires": "2030-12-31",
        },
    )
    card = owner.follow(made)
    assert card.status_code == 200
    text = text_of(card.text)
    assert "Карта 277000000001 выдана." in text
    assert "Анна Петрова" in text and "+79123456789" in text

    again = owner.post("/cards/new", {"program_id": str(program_id), "number": "277000000001"})
    assert again.status_code == 422
    assert field_error(again.text, "number") == "Карта с таким номером уже есть."

    bad_phone = owner.post(
        "/cards/new",
        {"program_id": str(program_id), "number": "277000000002", "holder_phone": "12"},
    )
    assert bad_phone.status_code == 422
    assert "телефон" in field_error(bad_phone.text, "holder_phone").lower()


def test_a_manual_accrual_and_write_off_on_the_card_page(web: Web) -> None:
    program_id = bonus_program(web)
    card_id = issue(web, program_id, "277000000010")
    owner = web.sign_in("owner")
    page = owner.get(f"/cards/{card_id}")
    token = re.search(r'name="document_id"[^>]*value="([0-9a-f]+)"', page.text)
    assert token is not None
    accrual = {
        "kind": "accrual",
        "amount": "150,50",
        "reason": "Подарок ко дню рождения",
        "document_id": token.group(1),
    }
    done = owner.follow(owner.post(f"/cards/{card_id}/documents", accrual))
    assert "Документ проведён." in text_of(done.text)
    assert balance_of(web, "277000000010") == 150_50
    # The same form sent twice (a double click) posts once.
    owner.post(f"/cards/{card_id}/documents", accrual)
    assert balance_of(web, "277000000010") == 150_50
    history = re.search(r'data-testid="card-history".*?</table>', done.text, re.S)
    assert history is not None and "Подарок ко дню рождения" in history.group(0)

    too_much = owner.post(
        f"/cards/{card_id}/documents",
        {"kind": "write_off", "amount": "200", "reason": "Ошибка кассира", "document_id": "x1"},
    )
    assert too_much.status_code == 422
    assert field_error(too_much.text, "amount") == "На карте меньше баллов, доступных сейчас."
    assert balance_of(web, "277000000010") == 150_50

    too_precise = owner.post(
        f"/cards/{card_id}/documents",
        {"kind": "write_off", "amount": "1,505", "reason": "Ошибка", "document_id": "x2"},
    )
    assert too_precise.status_code == 422
    assert "2" in field_error(too_precise.text, "amount")

    spent = owner.post(
        f"/cards/{card_id}/documents",
        {"kind": "write_off", "amount": "50,50", "reason": "Ошибка кассира", "document_id": "x3"},
    )
    assert spent.status_code == 303
    assert balance_of(web, "277000000010") == 100_00


def test_group_block_of_what_the_search_found_then_unblock_one(web: Web) -> None:
    program_id = bonus_program(web)
    ids = [issue(web, program_id, f"55500000{n:04d}", holder_name="Иван") for n in range(3)]
    other = issue(web, program_id, "666000000001", holder_name="Пётр")
    owner = web.sign_in("owner")
    listing = owner.get("/cards?q=5550")
    assert all(f"55500000{n:04d}" in listing.text for n in range(3))
    assert "666000000001" not in listing.text

    refused = owner.post(
        "/cards/group", {"action": "block", "scope": "all", "query": "q=5550", "reason": ""}
    )
    assert "причину" in text_of(owner.follow(refused).text)

    done = owner.post(
        "/cards/group", {"action": "block", "scope": "all", "query": "q=5550", "reason": "Утеряна"}
    )
    assert "3 карты изменены." in text_of(owner.follow(done).text)
    with read_only(web.engine) as conn:
        statuses = {c.id: c.status for c in search_cards(conn, web.tenant.id).items}
    assert [statuses[i] for i in ids] == ["blocked"] * 3 and statuses[other] == "active"

    card = owner.follow(owner.post(f"/cards/{ids[0]}/unblock", {}))
    assert "Карта разблокирована." in text_of(card.text)

    ticked = owner.post("/cards/group", {"action": "delete", "card": [str(ids[1]), str(other)]})
    assert "2 карты изменены." in text_of(owner.follow(ticked).text)


def wait_for_job(visitor: Visitor, url: str) -> str:
    for _ in range(200):
        page = visitor.get(url)
        if 'data-testid="job-result"' in page.text or "Ошибка" in page.text:
            return page.text
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_a_range_is_issued_as_a_job_with_progress(web: Web) -> None:
    program_id = bonus_program(web)
    owner = web.sign_in("owner")
    bad = owner.post(
        "/cards/range", {"program_id": str(program_id), "prefix": "27", "first": "9", "last": "1"}
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "last") == "Последний номер не меньше первого."

    started = owner.post(
        "/cards/range",
        {
            "program_id": str(program_id),
            "prefix": "2770",
            "first": "1",
            "last": "250",
            "width": "6",
            "check_digit": "y",
        },
    )
    assert started.status_code == 303
    result = wait_for_job(owner, started.headers["location"])
    assert "250 карт выпущено." in text_of(result)
    with read_only(web.engine) as conn:
        found = search_cards(conn, web.tenant.id, search="2770", limit=500)
    assert found.total == 250
    # 2770 000001 and its Luhn digit: 2·1 + (2·7 → 5) + 7 + 2 = 16, so 4.
    assert sorted(c.number for c in found.items)[0] == "27700000014"


def test_debts_show_what_an_offline_check_took_beyond_the_balance(web: Web) -> None:
    program_id = bonus_program(web)
    issue(web, program_id, "277000000020", holder_name="Ольга")
    with web.engine.begin() as conn:
        terminal, _key = create_terminal(conn, tenant_id=web.tenant.id, name="Касса", actor=ACTOR)
    results = pos.upload_batch(
        web.engine,
        tenant_id=web.tenant.id,
        terminal_id=terminal.id,
        items=[pos.BatchItem("OFF-1", "277000000020", [100_00], points_minor=30_00)],
        actor=ACTOR,
    )
    assert results[0].status == "applied"
    owner = web.sign_in("owner")
    debts = owner.get("/cards/debts")
    row = re.search(r'data-testid="debt-277000000020".*?</tr>', debts.text, re.S)
    assert row is not None
    assert f"30,00{NBSP}бонусов" in row.group(0)


def test_a_cashier_finds_cards_but_changes_nothing_and_front_desk_sees_no_cards(
    web: Web,
) -> None:
    program_id = bonus_program(web)
    card_id = issue(web, program_id, "277000000030", holder_phone="+7 912 000-11-22")
    cashier = web.sign_in("cashier")
    found = cashier.get("/cards?q=000-11-22")
    assert found.status_code == 200 and "277000000030" in found.text
    assert 'data-testid="issue-card"' not in found.text
    card = cashier.get(f"/cards/{card_id}")
    assert card.status_code == 200 and 'data-testid="document-form"' not in card.text
    assert cashier.get("/cards/programs").status_code == 403
    assert cashier.get("/cards/new").status_code == 403
    refused = cashier.post(
        f"/cards/{card_id}/documents",
        {"kind": "accrual", "amount": "10", "reason": "x", "document_id": "c1"},
    )
    assert refused.status_code == 403
    assert balance_of(web, "277000000030") == 0

    desk = web.sign_in("front_desk")
    assert desk.get("/cards").status_code == 403
    assert desk.get(f"/cards/{card_id}").status_code == 403
    assert web.sign_in("owner").get("/cards/999999999").status_code == 404


def test_the_card_history_explains_a_check_and_a_manual_document(web: Web) -> None:
    program_id = bonus_program(web, accrual_bp=500)
    card_id = issue(web, program_id, "277000000040")
    with web.engine.begin() as conn:
        terminal, _key = create_terminal(conn, tenant_id=web.tenant.id, name="Касса 2", actor=ACTOR)
        # 5 % of 600,00 paid in money: 30,00 points.
        pos.commit_check(
            conn,
            tenant_id=web.tenant.id,
            terminal_id=terminal.id,
            check_id="Ч-17",
            card_number="277000000040",
            lines=[400_00, 200_00],
            points_minor=0,
            actor=ACTOR,
        )
    owner = web.sign_in("owner")
    owner.post(
        f"/cards/{card_id}/documents",
        {"kind": "write_off", "amount": "10", "reason": "Жалоба гостя", "document_id": "h1"},
    )
    page = owner.get(f"/cards/{card_id}")
    rows = re.findall(r'<tr data-kind="([a-z_]+)">(.*?)</tr>', page.text, re.S)
    explained = {kind: text_of(html) for kind, html in rows}
    assert "Начислено за чек" in explained["check_accrual"]
    assert "чек Ч-17; касса Касса 2; ставка 5,00" in explained["check_accrual"]
    assert "+30,00 бонусов" in explained["check_accrual"]
    assert "Списано вручную" in explained["manual_write_off"]
    assert "Жалоба гостя" in explained["manual_write_off"]
    assert "20,00 бонусов" in explained["manual_write_off"]  # the balance after
    assert "Карта выдана" in explained["card_issue"]
