"""The subscriber API's doors (SPEC S-1 … S-6, X-1, X-2, X-6): seed 003 over HTTP, who
may do what, what another tenant sees, what bad input gets, idempotent money.

Over HTTP the moment is the server's clock, so the examples that need the seed's dates
(2 and 3 April) are lived through with the domain and read back over HTTP; the rest are
driven over HTTP alone, today."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from time import monotonic, sleep
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text

from kopilka.events.schema import events
from kopilka.ledger.schema import account_limits, transfers
from kopilka.subscribers.schema import (
    sub_charges,
    sub_pp_services,
    sub_promised_payments,
    sub_status_changes,
    sub_tariffs,
    sub_topups,
    subscribers,
)
from kopilka.subscribers.tariffs import get_service
from kopilka.tenancy.actions import create_tenant, create_terminal, create_user, issue_staff_token
from tests.api.conftest import TestClient, _dispose_apps, client
from tests.subscribers.conftest import MSK, Isp, at

__all__ = ["_dispose_apps", "client"]

B = "/api/v1/subscribers"
MONEY_TABLES = (
    transfers,
    account_limits,
    sub_charges,
    sub_topups,
    sub_promised_payments,
    sub_status_changes,
    events,
)


@dataclass
class Desk:
    """The ISP's staff and network talking to the API."""

    client: TestClient
    isp: Isp
    owner: dict[str, str]

    def staff(self, role: str, tenant_id: int | None = None) -> dict[str, str]:
        def work(conn: Any) -> str:
            user = create_user(
                conn,
                tenant_id=tenant_id or self.isp.t,
                login=f"{role}-{uuid.uuid4().hex[:8]}",
                password="x" * 12,
                role=role,
                actor=self.isp.actor,
            )
            return issue_staff_token(conn, user=user, actor=self.isp.actor)[0]

        return {"Authorization": f"Bearer {self.isp.tx(work)}"}

    def terminal(self, tenant_id: int | None = None) -> dict[str, str]:
        _, key = self.isp.tx(
            lambda c: create_terminal(
                c,
                tenant_id=tenant_id or self.isp.t,
                name=f"NAS {uuid.uuid4().hex[:6]}",
                actor=self.isp.actor,
            )
        )
        return {"Authorization": f"Bearer {key}"}

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        who: dict[str, str] | None = None,
        key: str | None = None,
        **params: Any,
    ) -> httpx.Response:
        headers = dict(who or self.owner)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.request(
            method, f"{B}{path}", json=body, headers=headers, params=params or None
        )

    def ok(self, reply: httpx.Response, status: int = 200) -> dict[str, Any]:
        assert reply.status_code == status, reply.text
        data = reply.json()
        assert isinstance(data, dict)
        return data

    def tariff(self, price: str = "20.00", method: str = "daily", **fields: Any) -> int:
        body = {"name": f"Тариф {uuid.uuid4().hex[:6]}", "price": price, "charge_method": method}
        return int(self.ok(self.call("POST", "/tariffs", {**body, **fields}), 201)["id"])

    def service(
        self, amount: str = "600.00", days: int = 5, method: str = "daily", **fields: Any
    ) -> int:
        body = {
            "name": f"Обещанный платёж {uuid.uuid4().hex[:6]}",
            "amount": amount,
            "days": days,
            "charge_method": method,
        }
        reply = self.call("POST", "/promised-payment-services", {**body, **fields})
        return int(self.ok(reply, 201)["id"])

    def subscriber(self, tariff_id: int, **fields: Any) -> dict[str, Any]:
        body = {
            "account_no": f"A{uuid.uuid4().hex[:8]}",
            "full_name": "Иван Абонентов",
            "tariff_id": tariff_id,
            **fields,
        }
        return self.ok(self.call("POST", "", body), 201)

    def top_up(self, sub_id: int, amount: str, *, who: dict[str, str] | None = None) -> None:
        reply = self.call(
            "POST", f"/{sub_id}/top-ups", {"amount": amount}, who=who, key=uuid.uuid4().hex
        )
        self.ok(reply, 201)

    def active(self, tariff_id: int, money: str = "1000.00") -> dict[str, Any]:
        """A subscriber activated by hand today with ``money`` paid in first."""
        sub = self.subscriber(tariff_id)
        self.top_up(sub["id"], money)
        return self.ok(self.call("POST", f"/{sub['id']}/activate"))

    def get(self, sub_id: int) -> dict[str, Any]:
        return self.ok(self.call("GET", f"/{sub_id}"))

    def counts(self) -> list[int]:
        return [self.isp.count(table) for table in MONEY_TABLES]


@pytest.fixture
def desk(isp: Isp, client: TestClient) -> Desk:
    owner = Desk(client, isp, {}).staff("owner")
    return Desk(client, isp, owner)


def problem(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = reply.json()
    assert body["code"] == code, body
    assert body["type"] == f"urn:kopilka:problem:{code}"
    assert body["detail"] and body["instance"] == reply.request.url.path
    assert isinstance(body, dict)
    return body


def moscow_midnight(moment: str, days: int) -> datetime:
    """The first moment, on Moscow's clock, of the day ``days`` after ``moment``'s."""
    day = datetime.fromisoformat(moment).astimezone(MSK).date() + timedelta(days=days)
    return datetime.combine(day, time(0), MSK)


# --------------------------------------------------------------------------- seed 003


def test_seed_600_for_5_days_costing_200_taken_for_a_blocked_subscriber(desk: Desk) -> None:
    """ "Создать доверительный платёж на 600 у.е. на 5 дней стоимостью 200 у.е.", then
    taken at the desk for a subscriber blocked for debt."""
    cashier = desk.staff("cashier")
    tariff = desk.tariff("20.00", "daily")
    made = desk.ok(
        desk.call(
            "POST",
            "/promised-payment-services",
            {
                "name": "Доверительный платёж",
                "amount": "600",
                "days": 5,
                "connection_price": "200",
                "charge_method": "monthly",
            },
        ),
        201,
    )
    assert (made["amount"], made["connection_price"], made["days"]) == ("600.00", "200.00", 5)
    assert made["is_auto"] is False and made["commission_percent"] == "0.00"
    sub = desk.subscriber(tariff, threshold="0")
    assert (sub["status"], sub["balance"], sub["threshold"]) == ("new", "0.00", "0.00")

    blocked = desk.ok(desk.call("POST", f"/{sub['id']}/activate", who=cashier))
    assert blocked["status"] == "blocked"  # nothing on the account: today cannot be paid
    assert blocked["activated_at"] is not None and blocked["promised_payment"] is None

    (offer,) = desk.ok(desk.call("GET", f"/{sub['id']}/promised-payments/offers", who=cashier))[
        "items"
    ]
    assert offer["allowed"] is True and offer["refusal"] is None
    assert (offer["amount"], offer["connection_price"]) == ("600.00", "200.00")
    assert offer["commission_once"] == "0.00" and offer["commission_per_day"] is None

    reply = desk.call(
        "POST",
        f"/{sub['id']}/promised-payments",
        {"service_id": made["id"]},
        who=cashier,
        key="pp-seed-1",
    )
    taken = desk.ok(reply, 201)
    assert (taken["amount"], taken["days"], taken["status"]) == ("600.00", 5, "active")
    assert (taken["source"], taken["service_name"]) == ("staff", "Доверительный платёж")
    # It covers the day it was taken and the four after: it ends at the sixth midnight.
    ends = datetime.fromisoformat(taken["ends_at"])
    assert ends == moscow_midnight(taken["taken_at"], 5)

    now = desk.get(sub["id"])
    assert now["status"] == "active"
    assert (now["threshold"], now["base_threshold"]) == ("-600.00", "0.00")
    assert now["balance"] == "-220.00"  # the connection, then today's 20.00
    assert now["available"] == "380.00"
    assert now["promised_payment"]["id"] == taken["id"]
    assert (
        now["next_charge_on"]
        == (
            datetime.fromisoformat(taken["taken_at"]).astimezone(MSK).date() + timedelta(days=1)
        ).isoformat()
    )

    history = desk.ok(desk.call("GET", f"/{sub['id']}/history", who=cashier))["items"]
    kinds = [(x["kind"], x["amount"]) for x in history]
    assert ("connection", "-200.00") in kinds and ("tariff", "-20.00") in kinds
    promised_line = next(x for x in history if x["kind"] == "promised_taken")
    assert promised_line["details"]["amount"] == "600.00"
    statuses = [x["details"]["to"] for x in reversed(history) if x["kind"] == "status"]
    assert statuses == ["new", "active", "blocked", "active"]
    assert all(x["currency"] == "RUB" for x in history)
    desk.isp.assert_clean()


def test_commission_1_percent_of_600_daily_taken_2_april_repaid_3_april_is_12(
    desk: Desk,
) -> None:
    """The seed's commission example, lived through on its dates, read over HTTP."""
    isp = desk.isp
    tariff = isp.tariff(price=20, method="daily")
    service_id = desk.service("600.00", 5, "daily", commission_percent="1")
    service = desk.ok(desk.call("GET", f"/promised-payment-services/{service_id}"))
    assert service["commission_percent"] == "1.00"
    sub = isp.subscriber(tariff)
    isp.activate(sub, at(2026, 4, 1, 9))
    service_view = isp.read(lambda c: get_service(c, isp.t, service_id))
    taken = isp.take(sub, service_view, at(2026, 4, 2, 10))
    isp.run(at(2026, 4, 3, 1))
    isp.top_up(sub, 1000, at(2026, 4, 3, 18))  # repays it

    (done,) = desk.ok(desk.call("GET", f"/{sub.id}/promised-payments"))["items"]
    assert done["id"] == taken.id
    assert (done["status"], done["commission"], done["commission_percent"]) == (
        "repaid",
        "12.00",
        "1.00",
    )
    now = desk.get(sub.id)
    assert (now["status"], now["threshold"], now["balance"]) == ("active", "0.00", "948.00")
    assert now["promised_payment"] is None
    history = desk.ok(desk.call("GET", f"/{sub.id}/history"))["items"]
    assert [x["amount"] for x in history if x["kind"] == "commission"] == ["-12.00"]
    ended = next(x for x in history if x["kind"] == "promised_ended")
    assert ended["details"]["commission"] == "12.00" and ended["details"]["how"] == "repaid"


def test_offers_show_the_commission_per_day_and_at_most(desk: Desk) -> None:
    """1 % of 600.00 charged daily is 6.00 a day, 30.00 over the five days at most."""
    tariff = desk.tariff("20.00", "daily")
    desk.service("600.00", 5, "daily", commission_percent="1")
    desk.service("600.00", 5, "monthly", commission_percent="2.5")
    desk.service("0", 5, "daily", commission_percent="1")  # automatic: never a commission
    sub = desk.active(tariff)
    offers = desk.ok(desk.call("GET", f"/{sub['id']}/promised-payments/offers"))["items"]
    daily, monthly, auto = sorted(offers, key=lambda o: o["service_id"])
    assert (daily["commission_per_day"], daily["commission_max"]) == ("6.00", "30.00")
    assert daily["commission_once"] is None and daily["allowed"] is True
    assert (monthly["commission_once"], monthly["commission_max"]) == ("15.00", "15.00")
    assert auto["is_auto"] is True and auto["commission_max"] == "0.00"
    assert auto["allowed"] is False and auto["refusal"]["code"] == "pp_not_needed"


# --------------------------------------------------------------------------- idempotency


def test_top_ups_and_promised_payments_replay_and_conflict(desk: Desk) -> None:
    tariff = desk.tariff("20.00", "daily")
    service = desk.service("600.00", 5, "daily", connection_price="10")
    other_service = desk.service("600.00", 5, "daily")
    sub = desk.active(tariff, "100.00")
    path = f"/{sub['id']}/top-ups"
    first = desk.call("POST", path, {"amount": "50.00", "method": "cash"}, key="pay-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    before = desk.counts()
    again = desk.call("POST", path, {"amount": "50.00", "method": "cash"}, key="pay-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert desk.counts() == before
    problem(
        desk.call("POST", path, {"amount": "51.00", "method": "cash"}, key="pay-1"),
        409,
        "subscriber_operation_conflict",
    )
    problem(desk.call("POST", path, {"amount": "50.00"}), 400, "idempotency_key_required")
    assert desk.get(sub["id"])["balance"] == "130.00"  # 100 - 20 + 50, once

    take = f"/{sub['id']}/promised-payments"
    taken = desk.call("POST", take, {"service_id": service}, key="pp-1")
    assert taken.status_code == 201, taken.text
    before = desk.counts()
    replay = desk.call("POST", take, {"service_id": service}, key="pp-1")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == taken.json()
    assert desk.counts() == before
    problem(
        desk.call("POST", take, {"service_id": other_service}, key="pp-1"),
        409,
        "subscriber_operation_conflict",
    )
    assert desk.counts() == before


def test_a_kiosk_pays_by_account_number_with_its_key(desk: Desk) -> None:
    tariff = desk.tariff("20.00", "daily")
    sub = desk.active(tariff, "0.01")
    assert sub["status"] == "blocked"
    kiosk = desk.terminal()
    body = {"account_no": sub["account_no"].lower(), "amount": "100.00", "method": "kiosk"}
    paid = desk.ok(desk.call("POST", "/top-ups", body, who=kiosk, key="kiosk-77"), 201)
    assert (paid["subscriber_id"], paid["amount"], paid["method"]) == (sub["id"], "100.00", "kiosk")
    # The same payment through the subscriber's own door is the same operation.
    replay = desk.call(
        "POST", f"/{sub['id']}/top-ups", {"amount": "100.00", "method": "kiosk"}, key="kiosk-77"
    )
    assert replay.status_code == 200 and replay.json() == paid
    back = desk.get(sub["id"])
    assert (back["status"], back["balance"]) == ("active", "80.01")
    problem(desk.call("GET", f"/{sub['id']}", who=kiosk), 403, "forbidden")
    problem(
        desk.call("POST", "/top-ups", {**body, "account_no": "NOPE-1"}, who=kiosk, key="k-2"),
        404,
        "subscriber_not_found",
    )


# --------------------------------------------------------------------------- bad input


def test_each_bad_input_has_its_code_and_writes_nothing(desk: Desk) -> None:
    tariff = desk.tariff("600.00", "monthly")
    elsewhere_tariff = desk.tariff("600.00", "monthly")
    service = desk.service("600.00", 5, tariff_ids=[tariff])
    cheap = desk.service("500.00", 5)
    sub = desk.active(tariff)
    elsewhere = desk.active(elsewhere_tariff)
    disabled = desk.active(tariff)
    assert desk.ok(desk.call("POST", f"/{disabled['id']}/disable"))["status"] == "disabled"
    new = desk.subscriber(tariff)
    directories = (sub_tariffs, sub_pp_services, subscribers)
    before = desk.counts(), [desk.isp.count(t) for t in directories]

    def take(who: dict[str, Any], service_id: int, code: str, status: int = 422) -> None:
        reply = desk.call(
            "POST",
            f"/{who['id']}/promised-payments",
            {"service_id": service_id},
            key=uuid.uuid4().hex,
        )
        problem(reply, status, code)

    take(disabled, service, "pp_subscriber_disabled")
    take(new, service, "pp_not_activated")
    take(elsewhere, service, "pp_tariff_not_allowed")
    take(sub, cheap, "pp_amount_below_price")
    take({"id": 10**12}, service, "subscriber_not_found", 404)
    take(sub, 10**12, "service_not_found", 404)
    problem(
        desk.call("POST", f"/{10**12}/top-ups", {"amount": "1.00"}, key="x-1"),
        404,
        "subscriber_not_found",
    )
    problem(
        desk.call("POST", f"/{sub['id']}/top-ups", {"amount": "0"}, key="x-2"),
        422,
        "amount_not_positive",
    )
    problem(
        desk.call("POST", f"/{sub['id']}/top-ups", {"amount": "1.001"}, key="x-3"),
        422,
        "amount_too_precise",
    )
    for percent in ("101", "-1", "1.001", "abc"):
        reply = desk.call(
            "POST",
            "/promised-payment-services",
            {
                "name": "Bad",
                "amount": "600",
                "days": 5,
                "charge_method": "daily",
                "commission_percent": percent,
            },
        )
        problem(reply, 422, "invalid_commission")
    problem(
        desk.call(
            "POST",
            "/promised-payment-services",
            {"name": "Once", "amount": "600", "days": 5, "charge_method": "one_time"},
        ),
        422,
        "invalid_request",
    )
    problem(
        desk.call(
            "POST",
            "",
            {"account_no": "Z-1", "full_name": "X", "tariff_id": tariff, "threshold": "300.00"},
        ),
        422,
        "invalid_subscriber_input",
    )
    problem(
        desk.call(
            "POST", "", {"account_no": sub["account_no"], "full_name": "X", "tariff_id": tariff}
        ),
        409,
        "subscriber_exists",
    )
    problem(desk.call("POST", f"/{sub['id']}/activate"), 422, "subscriber_state")
    problem(desk.call("POST", f"/{sub['id']}/enable"), 422, "subscriber_state")
    problem(
        desk.call("PUT", f"/{sub['id']}/threshold", {"threshold": "10"}),
        422,
        "invalid_subscriber_input",
    )
    problem(desk.call("GET", "", cursor="not-a-cursor"), 422, "invalid_cursor")
    # The operation ids Kopilka gives what it does by itself ("#activation:7") are not
    # for clients.
    problem(
        desk.call(
            "POST",
            f"/{new['id']}/promised-payments",
            {"service_id": service},
            key=f"#activation:{new['id']}",
        ),
        422,
        "invalid_subscriber_input",
    )
    assert (desk.counts(), [desk.isp.count(t) for t in directories]) == before

    ok = desk.call("POST", f"/{sub['id']}/promised-payments", {"service_id": service}, key="ok-1")
    assert ok.status_code == 201, ok.text
    before = desk.counts(), [desk.isp.count(t) for t in directories]
    take(sub, service, "pp_already_active")
    assert (desk.counts(), [desk.isp.count(t) for t in directories]) == before
    desk.isp.assert_clean()


# --------------------------------------------------------------------------- roles


def test_roles(desk: Desk) -> None:
    cashier = desk.staff("cashier")
    front = desk.staff("front_desk")
    admin = desk.staff("administrator")
    nas = desk.terminal()
    tariff = desk.tariff("20.00", "daily")
    service = desk.service("600.00", 1)
    tables = (sub_tariffs, sub_pp_services, sub_promised_payments)

    before = [desk.isp.count(t) for t in tables]
    body = {"name": "Касса", "price": "1.00", "charge_method": "daily"}
    problem(desk.call("POST", "/tariffs", body, who=cashier), 403, "forbidden")
    problem(desk.call("PUT", f"/tariffs/{tariff}", body, who=front), 403, "forbidden")
    problem(
        desk.call("PUT", "/settings", {"pp_only_when_blocked": True}, who=cashier), 403, "forbidden"
    )
    problem(desk.call("GET", "/tariffs", who=nas), 403, "forbidden")
    sub = desk.active(tariff)
    assert desk.ok(desk.call("GET", "", who=front))["items"][0]["id"] == sub["id"]
    assert desk.ok(desk.call("GET", "/tariffs", who=cashier))["items"][0]["id"] == tariff
    problem(
        desk.call("PUT", f"/{sub['id']}/threshold", {"threshold": "-1000"}, who=cashier),
        403,
        "forbidden",
    )
    problem(desk.call("POST", f"/{sub['id']}/disable", who=front), 403, "forbidden")
    problem(desk.call("GET", f"/{sub['id']}", who=nas), 403, "forbidden")

    take = f"/{sub['id']}/promised-payments"
    assert desk.call("POST", take, {"service_id": service}, who=front, key="f-1").status_code == 201
    # Only owners and administrators may set the tariff's rules aside: refused before
    # anything is looked at.
    before = [desk.isp.count(t) for t in tables]
    reply = desk.call(
        "POST", take, {"service_id": service, "ignore_rules": True}, who=cashier, key="c-1"
    )
    problem(reply, 403, "forbidden")
    assert [desk.isp.count(t) for t in tables] == before
    assert (
        desk.ok(desk.call("PUT", "/settings", {"pp_only_when_blocked": False}, who=admin))[
            "pp_only_when_blocked"
        ]
        is False
    )


def test_the_rules_set_aside_by_a_manager(desk: Desk) -> None:
    tariff = desk.tariff("1.00", "daily")
    service = desk.service("600.00", 1)
    sub = desk.active(tariff)
    take = f"/{sub['id']}/promised-payments"
    desk.ok(desk.call("POST", take, {"service_id": service}, key="r-1"), 201)
    desk.top_up(sub["id"], "1.00")  # back within the threshold: it is repaid
    assert desk.get(sub["id"])["promised_payment"] is None
    problem(
        desk.call("POST", take, {"service_id": service}, key="r-2"),
        422,
        "pp_rule_month_since_previous",
    )
    admin = desk.staff("administrator")
    again = desk.call(
        "POST", take, {"service_id": service, "ignore_rules": True}, who=admin, key="r-3"
    )
    assert again.status_code == 201, again.text


# --------------------------------------------------------------------------- tenants


def test_another_tenant_sees_nothing_and_writes_nothing(desk: Desk) -> None:
    tariff = desk.tariff("20.00", "daily")
    service = desk.service("600.00", 5)
    sub = desk.active(tariff)
    other = desk.isp.tx(
        lambda c: create_tenant(
            c, slug=f"isp-{uuid.uuid4().hex[:10]}", name="Другой провайдер", actor=desk.isp.actor
        )
    )
    theirs = desk.staff("owner", other.id)
    their_nas = desk.terminal(other.id)
    before = desk.counts()
    problem(desk.call("GET", f"/{sub['id']}", who=theirs), 404, "subscriber_not_found")
    problem(desk.call("GET", f"/{sub['id']}/history", who=theirs), 404, "subscriber_not_found")
    problem(desk.call("GET", f"/tariffs/{tariff}", who=theirs), 404, "tariff_not_found")
    problem(
        desk.call("GET", f"/promised-payment-services/{service}", who=theirs),
        404,
        "service_not_found",
    )
    listed = desk.ok(desk.call("GET", "", who=theirs, search=sub["account_no"]))
    assert listed == {"items": [], "next_cursor": None}
    assert desk.ok(desk.call("GET", "/tariffs", who=theirs)) == {"items": []}
    problem(
        desk.call("POST", f"/{sub['id']}/top-ups", {"amount": "1.00"}, who=theirs, key="t-1"),
        404,
        "subscriber_not_found",
    )
    problem(
        desk.call(
            "POST",
            f"/{sub['id']}/promised-payments",
            {"service_id": service},
            who=theirs,
            key="t-2",
        ),
        404,
        "subscriber_not_found",
    )
    problem(
        desk.call("POST", "/sessions", {"account_no": sub["account_no"]}, who=their_nas),
        404,
        "subscriber_not_found",
    )
    reply = desk.call(
        "POST",
        "/top-ups",
        {"account_no": sub["account_no"], "amount": "1.00"},
        who=their_nas,
        key="t-3",
    )
    problem(reply, 404, "subscriber_not_found")
    assert "Абонентов" not in reply.text
    assert desk.counts() == before


# --------------------------------------------------------------------------- the network


def test_the_first_session_activates_once(desk: Desk) -> None:
    """S-6: "new subscribers get 3 days to pay", given when the network reports the
    subscriber's first session; a session reported again changes nothing."""
    tariff = desk.tariff("30.00", "daily", grace_days=3)
    sub = desk.subscriber(tariff)
    nas = desk.terminal()
    body = {"account_no": sub["account_no"]}
    first = desk.ok(desk.call("POST", "/sessions", body, who=nas))
    assert (first["subscriber_id"], first["status"], first["activated"]) == (
        sub["id"],
        "active",
        True,
    )
    after = desk.get(sub["id"])
    assert (after["threshold"], after["balance"]) == ("-90.00", "-30.00")
    assert after["promised_payment"]["source"] == "grace"
    before = desk.counts()
    again = desk.ok(desk.call("POST", "/sessions", body, who=nas))
    assert (again["activated"], again["status"]) == (False, "active")
    assert again["activated_at"] == first["activated_at"]
    assert desk.counts() == before and desk.get(sub["id"]) == after
    # The desk may report it too (by hand, from the NAS's log); it is still the same.
    assert (
        desk.ok(desk.call("POST", "/sessions", body, who=desk.staff("cashier")))["activated"]
        is False
    )
    problem(desk.call("POST", f"/{sub['id']}/activate"), 422, "subscriber_state")
    problem(
        desk.call("POST", "/sessions", {"account_no": "NOBODY"}, who=nas),
        404,
        "subscriber_not_found",
    )


# --------------------------------------------------------------------------- the desk


def test_find_page_and_edit_subscribers(desk: Desk) -> None:
    tariff = desk.tariff("20.00", "daily")
    cheaper = desk.tariff("10.00", "daily")
    made = [
        desk.subscriber(tariff, full_name=name, phone=phone)
        for name, phone in (
            ("Анна Сидорова", "+7 916 111-22-33"),
            ("Борис Сидоров", None),
            ("Вера Петрова", "8 (916) 444-55-66"),
        )
    ]
    found = desk.ok(desk.call("GET", "", search="идор"))["items"]
    assert [x["id"] for x in found] == [made[0]["id"], made[1]["id"]]
    assert [x["id"] for x in desk.ok(desk.call("GET", "", search="4455"))["items"]] == [
        made[2]["id"]
    ]
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 1, "status": "new"} | ({"cursor": cursor} if cursor else {})
        page = desk.ok(desk.call("GET", "", **params))
        seen += [x["id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [x["id"] for x in made]

    sub = made[0]["id"]
    cashier = desk.staff("cashier")
    patched = desk.ok(
        desk.call("PATCH", f"/{sub}", {"email": "Anna@Example.ru", "phone": None}, who=cashier)
    )
    assert (patched["full_name"], patched["phone"], patched["email"]) == (
        "Анна Сидорова",
        None,
        "Anna@example.ru",  # the domain in lower case, the mailbox as given
    )
    problem(desk.call("PATCH", f"/{sub}", {"full_name": None}), 422, "invalid_subscriber_input")
    problem(
        desk.call("POST", f"/{sub}/password", {"password": "short"}),
        422,
        "invalid_subscriber_input",
    )
    assert desk.ok(desk.call("POST", f"/{sub}/password", {"password": "долгий пароль"}))[
        "has_password"
    ]
    moved = desk.ok(desk.call("PUT", f"/{sub}/tariff", {"tariff_id": cheaper}))
    assert moved["tariff"]["id"] == cheaper
    lowered = desk.ok(desk.call("PUT", f"/{sub}/threshold", {"threshold": "-300.00"}))
    assert (lowered["base_threshold"], lowered["threshold"], lowered["available"]) == (
        "-300.00",
        "-300.00",
        "300.00",
    )
    history = desk.ok(desk.call("GET", f"/{sub}/history", limit=1))
    assert len(history["items"]) == 1 and history["next_cursor"] is None  # "created" only

    desk.top_up(sub, "5.00")
    desk.ok(desk.call("POST", f"/{sub}/activate"))  # 10.00 of it today
    lines: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = desk.ok(desk.call("GET", f"/{sub}/history", **params))
        lines += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    whole = desk.ok(desk.call("GET", f"/{sub}/history", limit=200))["items"]
    assert lines == whole and len(whole) == 4  # created, top-up, activated, today's charge
    assert {x["kind"] for x in whole} == {"status", "top_up", "tariff"}
    settings = desk.ok(desk.call("PUT", "/settings", {"pp_only_when_blocked": True}))
    assert settings == desk.ok(desk.call("GET", "/settings")) == {"pp_only_when_blocked": True}


def test_the_openapi_document_lists_the_subscriber_api(desk: Desk) -> None:
    paths = desk.client.get("/api/v1/openapi.json").json()["paths"]
    for path, methods in (
        (B, {"get", "post"}),
        (f"{B}/tariffs", {"get", "post"}),
        (f"{B}/tariffs/{{tariff_id}}", {"get", "put"}),
        (f"{B}/promised-payment-services", {"get", "post"}),
        (f"{B}/promised-payment-services/{{service_id}}", {"get", "put"}),
        (f"{B}/settings", {"get", "put"}),
        (f"{B}/sessions", {"post"}),
        (f"{B}/top-ups", {"post"}),
        (f"{B}/{{subscriber_id}}", {"get", "patch"}),
        (f"{B}/{{subscriber_id}}/top-ups", {"post"}),
        (f"{B}/{{subscriber_id}}/promised-payments", {"get", "post"}),
        (f"{B}/{{subscriber_id}}/promised-payments/offers", {"get"}),
        (f"{B}/{{subscriber_id}}/history", {"get"}),
    ):
        assert methods <= set(paths[path]), path
    post = paths[f"{B}/{{subscriber_id}}/top-ups"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert "application/problem+json" in post["responses"]["409"]["content"]


def race(
    desk: Desk, engine: Engine, sub_id: int, path: str, body: dict[str, Any], who: dict[str, str]
) -> list[httpx.Response]:
    """The same request twice at once, both waiting for the subscriber's row lock (held
    here until both wait), then let go."""
    replies: list[httpx.Response] = []
    guard = threading.Lock()

    def send() -> None:
        reply = TestClient(desk.client.app).post(f"{B}{path}", json=body, headers=who)
        with guard:
            replies.append(reply)

    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    threads = [threading.Thread(target=send) for _ in range(2)]
    with engine.connect() as holder, holder.begin():
        holder.execute(select(subscribers.c.id).where(subscribers.c.id == sub_id).with_for_update())
        for thread in threads:
            thread.start()
        deadline = monotonic() + 10
        while monotonic() < deadline:
            with engine.connect() as probe:
                if probe.execute(waiting).scalar_one() >= 2:
                    break
            sleep(0.02)
    for thread in threads:
        thread.join()
    return replies


def test_a_retry_racing_its_first_attempt_is_answered_as_its_replay(
    desk: Desk, engine: Engine
) -> None:
    """A kiosk that times out and sends the same payment again while the first still
    waits for the subscriber's lock gets the first's answer, and pays once; so does the
    desk taking a promised payment."""
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's; SQLite runs one writer at a time")
    tariff = desk.tariff("20.00", "daily")
    service = desk.service("600.00", 5)
    sub = desk.active(tariff, "100.00")
    kiosk = {**desk.terminal(), "Idempotency-Key": "race-pay"}
    pay = {"account_no": sub["account_no"], "amount": "10.00"}
    cashier = {**desk.staff("cashier"), "Idempotency-Key": "race-pp"}
    for replies in (
        race(desk, engine, sub["id"], "/top-ups", pay, kiosk),
        race(
            desk,
            engine,
            sub["id"],
            f"/{sub['id']}/promised-payments",
            {"service_id": service},
            cashier,
        ),
    ):
        assert sorted(r.status_code for r in replies) == [200, 201], [r.text for r in replies]
        assert replies[0].json() == replies[1].json()
        replayed = next(r for r in replies if r.status_code == 200)
        assert replayed.headers["Idempotent-Replayed"] == "true"
    assert desk.isp.count(sub_topups) == 2  # the first 100.00 and the one 10.00
    assert desk.isp.count(sub_promised_payments) == 1
    desk.isp.assert_clean()
