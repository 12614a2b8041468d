"""The loyalty reports over HTTP (SPEC C-10, C-11): owners and administrators only."""

from __future__ import annotations

import csv
import io
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import openpyxl
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from kopilka.api.app import create_app
from kopilka.tenancy.actions import create_user, issue_staff_token

from .conftest import Shop
from .test_reports import march

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

_apps: dict[str, Any] = {}
MARCH = {"from": "2031-03-01", "to": "2031-03-31"}
BALANCES = "/api/v1/loyalty/reports/balances"


@pytest.fixture(scope="module", autouse=True)
def _dispose() -> Iterator[None]:
    yield
    for app in _apps.values():
        app.state.engine.dispose()
    _apps.clear()


def token(shop: Shop, role: str) -> str:
    with shop.engine.begin() as conn:
        user = create_user(
            conn,
            tenant_id=shop.tenant.id,
            login=f"{role}-{uuid.uuid4().hex[:6]}",
            password="correct horse battery",
            role=role,
            actor=shop.actor,
        )
        issued, _ = issue_staff_token(conn, user=user, actor=shop.actor)
    return issued


@pytest.fixture
def client(shop: Shop) -> TestClient:
    url = shop.engine.url.render_as_string(hide_password=False)
    if url not in _apps:
        _apps[url] = create_app(url)
    return TestClient(
        _apps[url], headers={"Authorization": f"Bearer {token(shop, 'administrator')}"}
    )


def test_balances_as_json_pages_and_totals(shop: Shop, client: TestClient) -> None:
    card = march(shop)
    other = shop.card()
    document_free = client.get(BALANCES, params={**MARCH, "include_idle": "true"})
    assert document_free.status_code == 200, document_free.text
    body = document_free.json()
    assert [item["card"] for item in body["items"]] == [card.number, other.number]
    first = body["items"][0]
    assert (first["opening"], first["accrued"], first["spent"], first["closing"]) == (
        "0.00",
        "41.40",
        "20.00",
        "20.70",
    )
    assert (first["purchases"], first["checks"], first["unit"]) == ("1190.00", 2, "BONUS")
    assert body["totals"][0]["cards"] == 2 and body["totals"][0]["closing"] == "20.70"
    page = client.get(BALANCES, params={**MARCH, "include_idle": "true", "limit": 1}).json()
    assert [i["card"] for i in page["items"]] == [card.number]
    rest = client.get(
        BALANCES, params={**MARCH, "include_idle": "true", "cursor": page["next_cursor"]}
    ).json()
    assert [i["card"] for i in rest["items"]] == [other.number] and rest["next_cursor"] is None
    # A superscript digit is a digit to str.isdigit, not to int: it was a 500 (schemathesis).
    for bad in ("¹", "9" * 30):
        odd = client.get(BALANCES, params={**MARCH, "cursor": bad})
        assert odd.status_code == 422 and odd.json()["code"] == "invalid_report", odd.text
    # Days whose midnight in Moscow has no UTC equivalent: they were a 500 (schemathesis).
    for day in ("0001-01-01", "9999-12-31"):
        edge = client.get(BALANCES, params={"from": day, "to": day})
        assert edge.status_code == 422 and edge.json()["code"] == "invalid_report", edge.text
    # April: the night's expiry (1 April, 06:00 Moscow time).
    april = client.get(BALANCES, params={"from": "2031-04-01", "to": "2031-04-30"}).json()
    assert april["items"][0]["expired"] == "5.00"


def test_balances_as_csv_and_xlsx_downloads(shop: Shop, client: TestClient) -> None:
    card = march(shop)
    got = client.get(BALANCES, params={**MARCH, "format": "csv"})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "text/csv; charset=utf-8"
    assert got.headers["content-disposition"] == (
        'attachment; filename="balances-2031-03-01-2031-03-31.csv"'
    )
    assert got.content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig")), delimiter=";"))
    assert lines[1][0] == card.number and "41,40" in lines[1]

    book = client.get(BALANCES, params={**MARCH, "format": "xlsx"})
    assert book.status_code == 200, book.text
    assert book.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert "balances-2031-03-01-2031-03-31.xlsx" in book.headers["content-disposition"]
    workbook = openpyxl.load_workbook(io.BytesIO(book.content), read_only=True)
    sheet = workbook.active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    workbook.close()
    assert values[2][0] == card.number and values[-1][0] == "Итого BONUS (1)"


def test_reports_are_for_managers_and_check_their_input(shop: Shop, client: TestClient) -> None:
    cashier = {"Authorization": f"Bearer {token(shop, 'cashier')}"}
    refused = client.get(BALANCES, params=MARCH, headers=cashier)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    backwards = client.get(BALANCES, params={"from": "2031-03-02", "to": "2031-03-01"})
    assert backwards.status_code == 422 and backwards.json()["code"] == "invalid_report"
    nowhere = client.get(BALANCES, params={**MARCH, "branch_id": 999_999, "format": "csv"})
    assert nowhere.status_code == 404 and nowhere.json()["code"] == "branch_not_found"
    missing = client.get("/api/v1/loyalty/cards/99999999/history")
    assert missing.status_code == 404 and missing.json()["code"] == "card_not_found"


def test_card_history_by_number(shop: Shop, client: TestClient) -> None:
    card = march(shop)
    got = client.get(f"/api/v1/loyalty/cards/{card.number}/history", params={"limit": 3})
    assert got.status_code == 200, got.text
    body = got.json()
    assert [i["kind"] for i in body["items"]] == ["card_issue", "check_accrual", "check_spend"]
    assert body["items"][1]["amount"] == "30.00"
    assert body["items"][2]["balance_after"] == "10.00"
    assert body["items"][1]["details"]["check_id"] == "C1"
    latest = client.get(
        f"/api/v1/loyalty/cards/{card.number}/history", params={"newest_first": "true"}
    ).json()
    assert latest["items"][0]["kind"] == "expiry" and latest["items"][0]["amount"] == "-5.00"


def test_reconciliation_by_json_csv_body_and_file(shop: Shop, client: TestClient) -> None:
    card = march(shop)
    path = "/api/v1/loyalty/reconciliation"
    got = client.post(
        path, json={"cards": [{"number": card.number, "balance": "20.70"}, {"number": "4444"}]}
    )
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["checked"], body["differing"], body["unknown_numbers"]) == (1, 1, ["4444"])
    line = body["lines"][0]
    assert (line["server_balance"], line["balance_difference"], line["balance_correction"]) == (
        "15.70",
        "5.00",
        "-5.00",
    )
    text = f"number;balance;accumulation\n{card.number};15,70;1190,00\n"
    same = client.post(path, content=text.encode(), headers={"Content-Type": "text/csv"})
    assert same.status_code == 200, same.text
    assert same.json()["differing"] == 0
    upload = client.post(
        path,
        params={"format": "csv"},
        files={"file": ("pos.csv", text.replace("15,70", "16,00").encode("cp1251"), "text/csv")},
    )
    assert upload.status_code == 200, upload.text
    assert upload.headers["content-type"] == "text/csv; charset=utf-8"
    assert f"{card.number};active;BONUS;15.70;16.00;-0.30;1190.00;1190.00;0.00" in upload.text
    every = client.post(path).json()
    assert every["checked"] == 1 and every["lines"][0]["pos_balance"] is None
    bad = client.post(path, json={"cards": [{"number": card.number, "balance": "x"}]})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_reconciliation"
    # Neither UTF-8 nor Windows-1251 (0x98 is unassigned there): it was a 500 (schemathesis).
    garbled = client.post(
        path, content=b"number;balance\n\x98\xff;1\n", headers={"Content-Type": "text/csv"}
    )
    assert garbled.status_code == 422 and garbled.json()["code"] == "invalid_reconciliation"
