"""The loyalty back office over HTTP (SPEC C-1..C-5): programs and tiers, cards, group
operations on selections, manual documents; roles and error codes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kopilka.tenancy.schema import audit_events

from .conftest import Api, assert_problem

L = "/api/v1/loyalty"


def patch(api: Api, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
    return api.client.patch(
        path, json=body, headers={"Authorization": f"Bearer {token or api.token}"}
    )


def bonus_program(
    api: Api, name: str = "Бонусы", unit: str = "BONUS", **rules: Any
) -> dict[str, Any]:
    """A point unit (made once) and a program on it."""
    if unit not in [u["code"] for u in api.ok(api.get("/api/v1/units"))["items"]]:
        api.ok(api.post("/api/v1/units", {"code": unit, "kind": "points", "exponent": 2}), 201)
    body = {"name": name, "unit": unit, "accrual_percent": "3", "lifetime_days": 365, **rules}
    return api.ok(api.post(f"{L}/programs", body), 201)


def issue(api: Api, program_id: int, number: str, **holder: Any) -> dict[str, Any]:
    body = {"program_id": program_id, "number": number, **holder}
    return api.ok(api.post(f"{L}/cards", body), 201)


def accrue(
    api: Api, document_id: str, cards: list[str], amount: str, **more: Any
) -> httpx.Response:
    body = {"document_id": document_id, "cards": cards, "amount": amount, "reason": "подарок"}
    return api.post(f"{L}/documents/accruals", {**body, **more})


# --------------------------------------------------------------------------- programs


def test_a_program_with_rules_and_tiers(api: Api) -> None:
    program = bonus_program(
        api,
        accrual_percent="3.5",
        max_share_percent="50",
        min_check="100.00",
        activation_delay_days=14,
        accumulation_window_days=365,
    )
    assert program["unit"] == "BONUS" and program["currency"] == "RUB"
    assert (program["accrual_percent"], program["max_share_percent"]) == ("3.50", "50.00")
    assert (program["min_check"], program["activation_delay_days"]) == ("100.00", 14)
    assert (program["lifetime_days"], program["accumulation_window_days"]) == (365, 365)
    assert program["exclude_points_part"] is True and program["enabled"] is True

    tier = {
        "name": "Золото",
        "threshold": "10000.00",
        "discount_percent": "3",
        "accrual_percent": "5",
    }
    made = api.ok(api.post(f"{L}/programs/{program['id']}/tiers", tier), 201)
    assert (made["threshold"], made["discount_percent"], made["accrual_percent"]) == (
        "10000.00",
        "3.00",
        "5.00",
    )
    read = api.ok(api.get(f"{L}/programs/{program['id']}"))
    assert [t["name"] for t in read["tiers"]] == ["Золото"]
    other = bonus_program(api, name="Агенты")
    listed = api.ok(api.get(f"{L}/programs"))["items"]
    assert [p["id"] for p in listed] == [other["id"], program["id"]]  # by name

    # Only what is sent changes; null clears the lifetime (points live for ever).
    changed = api.ok(
        patch(api, f"{L}/programs/{program['id']}", {"accrual_percent": "4", "lifetime_days": None})
    )
    assert (changed["accrual_percent"], changed["lifetime_days"]) == ("4.00", None)
    assert (changed["max_share_percent"], changed["min_check"]) == ("50.00", "100.00")
    assert changed["tiers"] == read["tiers"]
    off = api.ok(patch(api, f"{L}/programs/{program['id']}", {"enabled": False, "name": "Бонусы+"}))
    assert (off["enabled"], off["name"]) == (False, "Бонусы+")

    with api.engine.connect() as conn:
        audits = (
            conn.execute(
                select(audit_events.c.details)
                .where(
                    audit_events.c.tenant_id == api.tenant.id,
                    audit_events.c.action == "program.update",
                )
                .order_by(audit_events.c.id)
            )
            .scalars()
            .all()
        )
    assert audits[0] == {
        "accrual_bp": 400,
        "accrual_bp_was": 350,
        "lifetime_days": None,
        "lifetime_days_was": 365,
    }
    assert set(audits[1]) == {"enabled", "enabled_was", "name", "name_was"}


def test_program_input_is_checked_with_stable_codes(api: Api) -> None:
    program = bonus_program(api)
    url = f"{L}/programs"
    bad = [
        {"accrual_percent": "101"},
        {"accrual_percent": "-1"},
        {"accrual_percent": "3.555"},
        {"max_share_percent": "ten"},
        {"lifetime_days": 0},
        {"activation_delay_days": -1},
        {"accumulation_window_days": 10**6},
        {"min_check": "-5.00"},
        {"min_check": "0.001"},
    ]
    for rules in bad:
        sent = {"name": "Другая", "unit": "BONUS", **rules}
        assert_problem(api.post(url, sent), 422, "invalid_program")
        assert_problem(patch(api, f"{url}/{program['id']}", rules), 422, "invalid_program")
    assert_problem(api.post(url, {"name": "Рубли", "unit": "RUB"}), 422, "invalid_program")
    assert_problem(api.post(url, {"name": "Бонусы", "unit": "BONUS"}), 409, "program_exists")
    assert_problem(
        api.post(url, {"name": "X", "unit": "BONUS", "rate": "1"}), 422, "invalid_request"
    )
    assert_problem(api.post(url, {"name": "X", "unit": "NOPE"}), 422, "unknown_unit")
    assert_problem(
        api.post(url, {"name": "X", "unit": "BONUS", "currency": "XXQ"}), 422, "unknown_currency"
    )
    assert_problem(patch(api, f"{url}/{program['id']}", {"enabled": None}), 422, "invalid_program")
    assert_problem(patch(api, f"{url}/999999", {"accrual_percent": "1"}), 404, "program_not_found")
    assert_problem(api.get(f"{url}/999999"), 404, "program_not_found")
    bonus_program(api, name="Вторая")
    assert_problem(patch(api, f"{url}/{program['id']}", {"name": "Вторая"}), 409, "program_exists")

    tiers = f"{url}/{program['id']}/tiers"
    gold = {"name": "Gold", "threshold": "100.00", "accrual_percent": "5"}
    api.ok(api.post(tiers, gold), 201)
    assert_problem(api.post(tiers, gold), 409, "tier_exists")
    assert_problem(api.post(tiers, {**gold, "threshold": "1.001"}), 422, "invalid_tier")
    assert_problem(api.post(tiers, {**gold, "discount_percent": "200"}), 422, "invalid_tier")
    assert_problem(api.post(tiers, {"name": "No rate", "threshold": "5"}), 422, "invalid_request")
    # Nothing of the refused requests was written.
    assert api.ok(api.get(f"{url}/{program['id']}"))["accrual_percent"] == "3.00"


# --------------------------------------------------------------------------- cards


def test_issue_read_and_change_a_card(api: Api) -> None:
    program = bonus_program(api)
    card = issue(
        api,
        program["id"],
        "2000 0000 0001 7",
        holder_name="Ирина Петрова",
        holder_phone="8 916 123-45-67",
        expires_at="2099-12-31T00:00:00+03:00",
    )
    assert (card["number"], card["status"], card["holder_phone"]) == (
        "2000000000017",
        "active",
        "+79161234567",
    )
    assert (card["balance"], card["unit"], card["program"]) == ("0.00", "BONUS", "Бонусы")
    assert card["expires_at"].startswith("2099-12-30T21:00:00")
    assert api.ok(api.get(f"{L}/cards/2000-0000-0001-7"))["id"] == card["id"]

    # Only the fields sent change; null clears one.
    changed = api.ok(patch(api, f"{L}/cards/2000000000017", {"holder_email": "I@Mail.RU"}))
    assert (changed["holder_email"], changed["holder_name"]) == ("I@mail.ru", "Ирина Петрова")
    cleared = api.ok(patch(api, f"{L}/cards/2000000000017", {"holder_phone": None}))
    assert (cleared["holder_phone"], cleared["holder_email"]) == (None, "I@mail.ru")

    number = {"program_id": program["id"], "number": "2000000000017"}
    assert_problem(api.post(f"{L}/cards", number), 409, "card_exists")
    assert_problem(api.post(f"{L}/cards", {**number, "number": "12ab"}), 422, "invalid_card_number")
    assert_problem(
        api.post(f"{L}/cards", {**number, "number": "5555", "holder_phone": "call me"}),
        422,
        "invalid_phone",
    )
    assert_problem(
        api.post(f"{L}/cards", {**number, "number": "5555", "program_id": 999999}),
        404,
        "program_not_found",
    )
    assert_problem(
        api.post(f"{L}/cards", {**number, "number": "5555", "expires_at": "2020-01-01T00:00:00"}),
        422,
        "invalid_request",  # a time without an offset
    )
    assert_problem(
        patch(api, f"{L}/cards/2000000000017", {"holder_phone": "x"}), 422, "invalid_phone"
    )
    assert_problem(api.get(f"{L}/cards/5555"), 404, "card_not_found")


def test_a_range_of_cards(api: Api) -> None:
    program = bonus_program(api)
    batch = {"program_id": program["id"], "prefix": "77", "first": 1, "last": 2500, "width": 6}
    made = api.ok(api.post(f"{L}/cards/range", {**batch, "check_digit": True}), 201)
    assert (made["count"], made["first_number"]) == (2500, "770000016")
    assert made["last_number"] == "77002500" + made["last_number"][-1]
    assert made["last_id"] - made["first_id"] == 2499
    assert api.ok(api.get(f"{L}/cards/770000016"))["id"] == made["first_id"]

    # All or nothing: an overlapping range issues nothing.
    overlap = api.post(
        f"{L}/cards/range", {**batch, "first": 2500, "last": 2600, "check_digit": True}
    )
    assert assert_problem(overlap, 409, "card_exists")["count"] == 1
    assert_problem(
        api.post(f"{L}/cards/range", {**batch, "first": 5, "last": 4}), 422, "invalid_card_range"
    )
    assert_problem(
        api.post(f"{L}/cards/range", {**batch, "first": 0, "last": 200_000}),
        422,
        "invalid_card_range",
    )
    listed = api.ok(api.get(f"{L}/cards", params={"number": "770025", "limit": 200}))
    assert [c["number"] for c in listed["items"]] == [made["last_number"]]


def test_search_filters_and_paging(api: Api) -> None:
    bonus = bonus_program(api)
    gold = {"name": "Gold", "threshold": "0", "accrual_percent": "5"}
    tier = api.ok(api.post(f"{L}/programs/{bonus['id']}/tiers", gold), 201)
    other = bonus_program(api, name="Другая")
    issue(api, bonus["id"], "11110001", holder_name="Ирина Петрова", holder_phone="+79161234567")
    issue(api, bonus["id"], "11110002", holder_name="Пётр Иванов", holder_phone="+79035550101")
    issue(api, other["id"], "11120003", holder_name="Irina Smith")
    issue(api, other["id"], "22220004", expires_at="2099-01-01T00:00:00Z")
    blocked = issue(api, bonus["id"], "22220005")
    api.ok(api.post(f"{L}/cards/group/block", {"card_ids": [blocked["id"]], "reason": "утерян"}))

    def numbers(**params: Any) -> list[str]:
        return [c["number"] for c in api.ok(api.get(f"{L}/cards", params=params))["items"]]

    assert numbers(number="1111") == ["11110001", "11110002"]
    assert numbers(number="1 11") == ["11110001", "11110002", "11120003"]
    assert numbers(phone="8 (916) 123-45-67") == ["11110001"]
    assert numbers(phone="0101") == ["11110002"]
    assert numbers(name="ирина") == ["11110001"]
    assert numbers(name="IRINA") == ["11120003"]
    assert numbers(name="петров") == ["11110001"]
    assert numbers(name="пётр") == ["11110002"]
    assert numbers(program_id=other["id"]) == ["11120003", "22220004"]
    assert numbers(status="blocked") == ["22220005"]
    assert numbers(status="active", program_id=bonus["id"]) == ["11110001", "11110002"]
    assert numbers(tier_id=tier["id"]) == ["11110001", "11110002", "22220005"]
    assert numbers(number="2222", program_id=bonus["id"]) == ["22220005"]
    card = api.ok(api.get(f"{L}/cards", params={"number": "22220005"}))["items"][0]
    assert (card["status"], card["blocked_reason"], card["tier"]) == ("blocked", "утерян", "Gold")

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.ok(api.get(f"{L}/cards", params=params))
        seen += [c["number"] for c in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == ["11110001", "11110002", "11120003", "22220004", "22220005"]

    assert_problem(api.get(f"{L}/cards", params={"cursor": "nonsense"}), 422, "invalid_cursor")
    assert_problem(api.get(f"{L}/cards", params={"status": "lost"}), 422, "invalid_request")
    assert_problem(api.get(f"{L}/cards", params={"number": "12a"}), 422, "invalid_card")
    assert_problem(api.get(f"{L}/cards", params={"phone": "call me"}), 422, "invalid_phone")


# --------------------------------------------------------------------------- group operations


def test_group_operations_by_ids_and_by_filter(api: Api) -> None:
    bonus = bonus_program(api)
    other = bonus_program(api, name="Другая")
    foreign = bonus_program(api, name="Мили", unit="MILES")
    made = api.ok(
        api.post(
            f"{L}/cards/range",
            {"program_id": bonus["id"], "prefix": "55", "first": 1, "last": 6, "width": 2},
        ),
        201,
    )
    ids = list(range(made["first_id"], made["last_id"] + 1))
    group = f"{L}/cards/group"

    blocked = api.ok(api.post(f"{group}/block", {"card_ids": ids[:2], "reason": "утеряны"}))
    assert blocked == {"selected": 2, "changed": 2}
    again = api.ok(api.post(f"{group}/block", {"filter": {"number": "55"}, "reason": "проверка"}))
    assert again == {"selected": 6, "changed": 4}
    assert api.ok(api.get(f"{L}/cards/5501"))["blocked_reason"] == "утеряны"
    unblocked = api.ok(api.post(f"{group}/unblock", {"filter": {"status": "blocked"}}))
    assert unblocked == {"selected": 6, "changed": 6}

    moved = api.ok(
        api.post(f"{group}/change-program", {"card_ids": ids[:3], "program_id": other["id"]})
    )
    assert moved == {"selected": 3, "changed": 3}
    assert api.ok(api.get(f"{L}/cards/5503"))["program"] == "Другая"
    mismatch = api.post(f"{group}/change-program", {"card_ids": ids, "program_id": foreign["id"]})
    assert_problem(mismatch, 422, "program_unit_mismatch")

    past = api.ok(
        api.post(
            f"{group}/set-expiry",
            {"filter": {"program_id": other["id"]}, "expires_at": "2020-01-01T00:00:00Z"},
        )
    )
    assert past == {"selected": 3, "changed": 3}
    assert api.ok(api.get(f"{L}/cards/5501"))["status"] == "expired"
    never = api.ok(api.post(f"{group}/set-expiry", {"card_ids": ids[:1], "expires_at": None}))
    assert never == {"selected": 1, "changed": 1}
    assert api.ok(api.get(f"{L}/cards/5501"))["status"] == "active"

    api.ok(accrue(api, "used-1", ["5506"], "10.00"), 201)
    deleted = api.ok(api.post(f"{group}/delete-unused", {"filter": {"program_id": bonus["id"]}}))
    assert deleted == {"selected": 3, "changed": 2}  # 5506 has points: it stays
    assert api.ok(api.get(f"{L}/cards/5506"))["balance"] == "10.00"
    assert_problem(api.get(f"{L}/cards/5504"), 404, "card_not_found")

    assert_problem(api.post(f"{group}/unblock", {"filter": {}}), 422, "invalid_selection")
    assert_problem(api.post(f"{group}/unblock", {}), 422, "invalid_request")
    assert_problem(
        api.post(f"{group}/unblock", {"card_ids": ids, "filter": {"number": "55"}}),
        422,
        "invalid_request",
    )
    missing = api.post(f"{group}/block", {"card_ids": [ids[0], 999_999], "reason": "x"})
    assert assert_problem(missing, 404, "card_not_found")["card_ids"] == [999_999]
    assert api.ok(api.get(f"{L}/cards/5501"))["status"] == "active"  # nothing was changed
    assert_problem(
        api.post(f"{group}/block", {"card_ids": ids, "reason": " "}), 422, "invalid_card"
    )


# --------------------------------------------------------------------------- documents


def test_manual_accrual_and_write_off_are_idempotent(api: Api) -> None:
    program = bonus_program(api)
    for number in ("3001", "3002"):
        issue(api, program["id"], number)

    first = accrue(api, "DOC-1", ["3001", "3002"], "150.50", unit="BONUS")
    body = api.ok(first, 201)
    assert (body["kind"], body["amount"], body["total"], body["count"]) == (
        "manual_accrual",
        "150.50",
        "301.00",
        2,
    )
    assert body["cards"] == ["3001", "3002"] and len(body["transfer_ids"]) == 2
    again = accrue(api, "DOC-1", ["3002", "3001"], "150.50", unit="BONUS")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    assert_problem(accrue(api, "DOC-1", ["3001", "3002"], "150.00"), 409, "document_conflict")
    card = api.ok(api.get(f"{L}/cards/3001"))
    assert (card["balance"], card["available"]) == ("150.50", "150.50")

    forever = api.ok(accrue(api, "DOC-2", ["3001"], "1", lifetime_days=None), 201)
    assert forever["amount"] == "1.00"

    write_off = {"document_id": "W-1", "cards": ["3001"], "amount": "100", "reason": "ошибка"}
    done = api.ok(api.post(f"{L}/documents/write-offs", write_off), 201)
    assert (done["kind"], done["total"]) == ("manual_write_off", "100.00")
    replay = api.post(f"{L}/documents/write-offs", write_off)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert api.ok(api.get(f"{L}/cards/3001"))["balance"] == "51.50"

    too_much = api.post(
        f"{L}/documents/write-offs", {**write_off, "document_id": "W-2", "amount": "52"}
    )
    assert assert_problem(too_much, 422, "insufficient_points")["card_numbers"] == ["3001"]
    assert_problem(accrue(api, "D-3", ["3001"], "1", reason=""), 422, "reason_required")
    assert_problem(accrue(api, "D-3", ["3001"], "0"), 422, "invalid_amount")
    assert_problem(accrue(api, "D-3", ["3001"], "0.001"), 422, "amount_too_precise")
    assert_problem(accrue(api, "D-3", ["3001"], "1", unit="MILES"), 422, "invalid_document")
    assert_problem(accrue(api, "D-3", ["3001", "3001"], "1"), 422, "invalid_document")
    assert_problem(accrue(api, "D-3", ["3001"], "1", lifetime_days=0), 422, "invalid_document")
    assert_problem(accrue(api, "D-3", ["3001"], "1", lifetime_days=10**9), 422, "invalid_document")
    unknown = accrue(api, "D-3", ["3001", "9999"], "1")
    assert assert_problem(unknown, 404, "card_not_found")["card_numbers"] == ["9999"]
    assert_problem(accrue(api, "D-3", ["9999"], "1"), 404, "card_not_found")
    assert_problem(accrue(api, "D-3", ["99x"], "1"), 422, "invalid_card_number")
    card_id = api.ok(api.get(f"{L}/cards/3002"))["id"]
    api.ok(api.post(f"{L}/cards/group/block", {"card_ids": [card_id], "reason": "стоп"}))
    assert_problem(accrue(api, "D-3", ["3001", "3002"], "1"), 422, "card_blocked")
    # None of the refused documents left a trace.
    assert api.ok(api.get(f"{L}/cards/3001"))["balance"] == "51.50"


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize("role", ["cashier", "front_desk"])
def test_cashiers_look_cards_up_and_change_nothing(api: Api, role: str) -> None:
    program = bonus_program(api)
    card = issue(api, program["id"], "4001", holder_phone="+79161234567")
    token = api.staff_token(role)
    assert api.ok(api.get(f"{L}/cards/4001", token=token))["id"] == card["id"]
    found = api.ok(api.get(f"{L}/cards", token=token, params={"phone": "4567"}))
    assert [c["number"] for c in found["items"]] == ["4001"]
    assert api.ok(api.get(f"{L}/programs/{program['id']}", token=token))["name"] == "Бонусы"

    refused = [
        api.post(f"{L}/programs", {"name": "X", "unit": "BONUS"}, token=token),
        patch(api, f"{L}/programs/{program['id']}", {"enabled": False}, token=token),
        api.post(
            f"{L}/programs/{program['id']}/tiers",
            {"name": "T", "threshold": "1", "accrual_percent": "1"},
            token=token,
        ),
        api.post(f"{L}/cards", {"program_id": program["id"], "number": "4002"}, token=token),
        api.post(
            f"{L}/cards/range",
            {"program_id": program["id"], "first": 1, "last": 9, "prefix": "88"},
            token=token,
        ),
        patch(api, f"{L}/cards/4001", {"holder_name": "X"}, token=token),
        api.post(f"{L}/cards/group/unblock", {"card_ids": [card["id"]]}, token=token),
        api.post(
            f"{L}/documents/accruals",
            {"document_id": "R", "cards": ["4001"], "amount": "1", "reason": "x"},
            token=token,
        ),
        api.post(
            f"{L}/documents/write-offs",
            {"document_id": "R", "cards": ["4001"], "amount": "1", "reason": "x"},
            token=token,
        ),
        api.get(f"{L}/debts", token=token),
    ]
    for response in refused:
        assert_problem(response, 403, "forbidden")
    assert api.ok(api.get(f"{L}/cards/4001"))["balance"] == "0.00"


def test_administrators_manage_terminals_and_strangers_do_not(api: Api, other: Api) -> None:
    admin = api.staff_token("administrator")
    program = bonus_program(api)
    made = api.post(f"{L}/cards", {"program_id": program["id"], "number": "6001"}, token=admin)
    api.ok(made, 201)
    _, key = api.terminal_key()
    assert_problem(api.get(f"{L}/cards/6001", token=key), 403, "forbidden")
    assert_problem(api.get(f"{L}/programs", token=key), 403, "forbidden")
    assert_problem(api.client.get(f"{L}/cards/6001"), 401, "not_authenticated")
    # Another tenant's cards and programs do not exist for its owner.
    assert_problem(other.get(f"{L}/cards/6001"), 404, "card_not_found")
    assert_problem(other.get(f"{L}/programs/{program['id']}"), 404, "program_not_found")
    assert other.ok(other.get(f"{L}/cards"))["items"] == []
    card_id = made.json()["id"]
    blocked = other.post(f"{L}/cards/group/block", {"card_ids": [card_id], "reason": "x"})
    assert_problem(blocked, 404, "card_not_found")
