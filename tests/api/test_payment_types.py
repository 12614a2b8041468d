"""Payment types and terminal payment codes over HTTP (SPEC H-3, P-8, X-1, X-6): owners
and administrators change them, every staff role reads them, terminals list their codes,
and another tenant's ids do not exist."""

from __future__ import annotations

from typing import Any

import pytest

from kopilka.core.actor import Actor
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.billing import set_loyalty_enabled
from tests.api.conftest import Api, assert_problem

TYPES = "/api/v1/payment-types"
CODES = "/api/v1/payment-codes"
POS_CODES = "/api/v1/pos/payment-codes"


def patch(api: Api, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    return api.client.patch(
        path, json=body, headers={"Authorization": f"Bearer {token or api.token}"}
    )


def delete(api: Api, path: str, token: str | None = None) -> Any:
    return api.client.delete(path, headers={"Authorization": f"Bearer {token or api.token}"})


def bonus_unit(api: Api) -> None:
    body = {"code": "BONUS", "kind": "points", "exponent": 2, "name": "бонусов"}
    api.ok(api.post("/api/v1/units", body), 201)


def new_type(api: Api, name: str, kind: str, **fields: Any) -> dict[str, Any]:
    return api.ok(api.post(TYPES, {"name": name, "kind": kind, **fields}), 201)


def test_the_directory_is_created_read_and_changed(api: Api) -> None:
    bonus_unit(api)
    cash = new_type(api, "Наличные", "cash")
    assert cash["kind"] == "cash" and cash["enabled"] is True
    assert cash["unit"] is None and cash["exchange_rate"] is None
    assert cash["max_share_percent"] is None
    bonuses = new_type(api, "Бонусы", "points", unit="BONUS", max_share_percent="30")
    assert bonuses["unit"] == "BONUS"
    assert (bonuses["exchange_rate"], bonuses["max_share_percent"]) == ("1", "30.00")

    listed = api.ok(api.get(TYPES))["items"]
    assert [t["name"] for t in listed] == ["Бонусы", "Наличные"]
    assert api.ok(api.get(f"{TYPES}/{bonuses['id']}")) == bonuses

    changed = api.ok(
        patch(
            api,
            f"{TYPES}/{bonuses['id']}",
            {"exchange_rate": "0.333333", "max_share_percent": "100", "enabled": False},
        )
    )
    assert changed["exchange_rate"] == "0.333333" and changed["max_share_percent"] == "100.00"
    assert changed["enabled"] is False and changed["name"] == "Бонусы"
    renamed = api.ok(patch(api, f"{TYPES}/{cash['id']}", {"name": "Наличными"}))
    assert renamed["name"] == "Наличными" and renamed["enabled"] is True


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"max_share_percent": "100.01"}, "invalid_percent"),
        ({"max_share_percent": "-1"}, "invalid_percent"),
        ({"max_share_percent": "12.345"}, "invalid_percent"),
        ({"exchange_rate": "0"}, "invalid_exchange_rate"),
        ({"exchange_rate": "0.0000001"}, "invalid_exchange_rate"),
        ({"exchange_rate": "1e3"}, "invalid_exchange_rate"),
        ({"name": None}, "invalid_payment_type"),
        ({"enabled": None}, "invalid_payment_type"),
        ({"name": "Наличные"}, "payment_type_exists"),
        ({"colour": "red"}, "invalid_request"),
    ],
)
def test_bad_changes_are_refused_with_their_code(api: Api, body: dict[str, Any], code: str) -> None:
    bonus_unit(api)
    new_type(api, "Наличные", "cash")
    bonuses = new_type(api, "Бонусы", "points", unit="BONUS")
    status = 409 if code == "payment_type_exists" else 422
    assert_problem(patch(api, f"{TYPES}/{bonuses['id']}", body), status, code)
    assert api.ok(api.get(f"{TYPES}/{bonuses['id']}")) == bonuses


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "Баллы", "kind": "points"}, 422, "invalid_payment_type"),
        ({"name": "Баллы", "kind": "points", "unit": "RUB"}, 422, "unit_not_points"),
        ({"name": "Баллы", "kind": "points", "unit": "NOPE"}, 422, "unknown_unit"),
        ({"name": "Касса", "kind": "cash", "unit": "BONUS"}, 422, "invalid_payment_type"),
        ({"name": "Касса", "kind": "cheque"}, 422, "invalid_request"),
        ({"name": "", "kind": "cash"}, 422, "invalid_request"),
        ({"name": "Бонусы 2", "kind": "points", "unit": "BONUS"}, 409, "points_type_exists"),
        ({"name": "бонусы", "kind": "card"}, 409, "payment_type_exists"),
        (
            {"name": "Баллы", "kind": "points", "unit": "BONUS", "max_share_percent": "100.01"},
            422,
            "invalid_percent",
        ),
    ],
)
def test_bad_types_are_refused_with_their_code(
    api: Api, body: dict[str, Any], status: int, code: str
) -> None:
    bonus_unit(api)
    new_type(api, "Бонусы", "points", unit="BONUS")
    problem = assert_problem(api.post(TYPES, body), status, code)
    assert problem["detail"]
    assert len(api.ok(api.get(TYPES))["items"]) == 1


def test_codes_are_mapped_listed_and_removed(api: Api) -> None:
    room = new_type(api, "Закрытие на номер", "room_charge")
    deposit = new_type(api, "Депозит", "deposit")
    bar, _ = api.terminal_key()
    wide = api.ok(api.post(CODES, {"code": "12", "payment_type_id": room["id"]}), 201)
    assert wide["terminal_id"] is None and wide["payment_type"] == "Закрытие на номер"
    own = api.ok(
        api.post(CODES, {"code": "12", "payment_type_id": deposit["id"], "terminal_id": bar}),
        201,
    )
    assert own["terminal_id"] == bar and own["kind"] == "deposit"
    assert_problem(
        api.post(CODES, {"code": "12", "payment_type_id": deposit["id"]}),
        409,
        "payment_code_exists",
    )
    assert_problem(
        api.post(CODES, {"code": "1 2", "payment_type_id": deposit["id"]}),
        422,
        "invalid_payment_code",
    )
    assert [c["id"] for c in api.ok(api.get(CODES))["items"]] == [wide["id"], own["id"]]
    seen_at_bar = api.ok(api.get(f"{CODES}?terminal_id={bar}"))["items"]
    assert [(c["code"], c["payment_type"]) for c in seen_at_bar] == [("12", "Депозит")]
    assert_problem(api.get(f"{CODES}?terminal_id=999999999"), 404, "terminal_not_found")

    gone = delete(api, f"{CODES}/{own['id']}")
    assert gone.status_code == 204 and gone.content == b""
    assert_problem(delete(api, f"{CODES}/{own['id']}"), 404, "payment_code_not_found")
    assert [c["id"] for c in api.ok(api.get(CODES))["items"]] == [wide["id"]]


def test_every_staff_role_reads_and_only_managers_change(api: Api) -> None:
    cash = new_type(api, "Наличные", "cash")
    code = api.ok(api.post(CODES, {"code": "1", "payment_type_id": cash["id"]}), 201)
    for role in ("cashier", "front_desk"):
        token = api.staff_token(role)
        assert [t["name"] for t in api.ok(api.get(TYPES, token))["items"]] == ["Наличные"]
        assert api.ok(api.get(f"{TYPES}/{cash['id']}", token))["id"] == cash["id"]
        assert len(api.ok(api.get(CODES, token))["items"]) == 1
        assert_problem(
            api.post(TYPES, {"name": "X", "kind": "card"}, token=token), 403, "forbidden"
        )
        assert_problem(
            patch(api, f"{TYPES}/{cash['id']}", {"enabled": False}, token), 403, "forbidden"
        )
        assert_problem(
            api.post(CODES, {"code": "2", "payment_type_id": cash["id"]}, token=token),
            403,
            "forbidden",
        )
        assert_problem(delete(api, f"{CODES}/{code['id']}", token), 403, "forbidden")
    admin = api.staff_token("administrator")
    new = api.post(TYPES, {"name": "Карта", "kind": "card"}, token=admin)
    assert new.status_code == 201
    _, key = api.terminal_key()
    assert_problem(api.get(TYPES, key), 403, "forbidden")
    assert_problem(api.client.get(TYPES), 401, "not_authenticated")
    assert [t["name"] for t in api.ok(api.get(TYPES))["items"]] == ["Карта", "Наличные"]


def test_another_tenants_ids_do_not_exist(api: Api, other: Api) -> None:
    cash = new_type(other, "Наличные", "cash")
    code = other.ok(other.post(CODES, {"code": "1", "payment_type_id": cash["id"]}), 201)
    their_terminal, _ = other.terminal_key()
    mine = new_type(api, "Наличные", "cash")  # the same name is the other tenant's business
    assert_problem(api.get(f"{TYPES}/{cash['id']}"), 404, "payment_type_not_found")
    assert_problem(
        patch(api, f"{TYPES}/{cash['id']}", {"enabled": False}), 404, "payment_type_not_found"
    )
    assert_problem(
        api.post(CODES, {"code": "1", "payment_type_id": cash["id"]}),
        404,
        "payment_type_not_found",
    )
    assert_problem(
        api.post(
            CODES, {"code": "1", "payment_type_id": mine["id"], "terminal_id": their_terminal}
        ),
        404,
        "terminal_not_found",
    )
    assert_problem(delete(api, f"{CODES}/{code['id']}"), 404, "payment_code_not_found")
    assert api.ok(api.get(CODES))["items"] == []
    assert [t["id"] for t in api.ok(api.get(TYPES))["items"]] == [mine["id"]]
    assert other.ok(other.get(f"{TYPES}/{cash['id']}"))["enabled"] is True
    assert_problem(api.get(f"{TYPES}/abc"), 404, "not_found")
    assert_problem(api.get(f"{TYPES}/{2**63}"), 422, "invalid_request")


def test_a_terminal_lists_the_codes_that_apply_to_it(api: Api) -> None:
    cash = new_type(api, "Наличные", "cash")
    room = new_type(api, "Закрытие на номер", "room_charge")
    deposit = new_type(api, "Депозит", "deposit")
    bar, bar_key = api.terminal_key()
    _, restaurant_key = api.terminal_key()
    for code, type_id, terminal in (
        ("2", cash["id"], None),
        ("12", room["id"], None),
        ("12", deposit["id"], bar),
        ("ROOM", room["id"], None),
    ):
        body = {"code": code, "payment_type_id": type_id, "terminal_id": terminal}
        api.ok(api.post(CODES, body), 201)
    api.ok(patch(api, f"{TYPES}/{cash['id']}", {"enabled": False}))
    # Payment codes are not loyalty's: they answer with the loyalty module off.
    run_transaction(
        api.engine,
        lambda c: set_loyalty_enabled(
            c, tenant_id=api.tenant.id, enabled=False, actor=Actor.cli("tests")
        ),
    )

    at_bar = api.ok(api.get(POS_CODES, bar_key))["items"]
    assert at_bar == [
        {
            "code": "2",
            "scope": "tenant",
            "payment_type_id": cash["id"],
            "payment_type": "Наличные",
            "kind": "cash",
            "enabled": False,
        },
        {
            "code": "12",
            "scope": "terminal",
            "payment_type_id": deposit["id"],
            "payment_type": "Депозит",
            "kind": "deposit",
            "enabled": True,
        },
        {
            "code": "ROOM",
            "scope": "tenant",
            "payment_type_id": room["id"],
            "payment_type": "Закрытие на номер",
            "kind": "room_charge",
            "enabled": True,
        },
    ]
    in_restaurant = api.ok(api.get(POS_CODES, restaurant_key))["items"]
    assert [(c["code"], c["payment_type"]) for c in in_restaurant] == [
        ("2", "Наличные"),
        ("12", "Закрытие на номер"),
        ("ROOM", "Закрытие на номер"),
    ]
    assert_problem(api.get(POS_CODES), 403, "forbidden")  # staff use /payment-codes


def test_the_openapi_document_describes_them(api: Api) -> None:
    paths = api.client.get("/api/v1/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths[TYPES]) and {"get", "patch"} <= set(
        paths[TYPES + "/{payment_type_id}"]
    )
    assert "delete" in paths[CODES + "/{payment_code_id}"] and "get" in paths[POS_CODES]
