"""Seed 003's worked examples, lived through on the tenant's (Moscow's) calendar."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from kopilka.core.errors import KopilkaError
from kopilka.ledger.schema import account_limits
from kopilka.subscribers import promised
from kopilka.subscribers.schema import sub_charges
from tests.subscribers.conftest import Isp, at, rub


def refused(code: str, work: Any) -> KopilkaError:
    with pytest.raises(KopilkaError) as caught:
        work()
    assert caught.value.code == code, caught.value
    return caught.value


def charges(isp: Isp, sub_id: int, kind: str) -> list[int]:
    query = (
        select(sub_charges.c.amount_minor)
        .where(sub_charges.c.subscriber_id == sub_id, sub_charges.c.kind == kind)
        .order_by(sub_charges.c.id)
    )
    return [int(x) for x in isp.read(lambda c: c.execute(query).scalars().all())]


def test_600_for_5_days_costing_200(isp: Isp) -> None:
    """ "Создать доверительный платёж на 600 у.е. на 5 дней стоимостью 200 у.е.": the
    threshold goes down by 600 for five days, 200 is charged when it is taken, the tariff
    keeps charging into the minus, and on the sixth day the threshold is back."""
    tariff = isp.tariff(price=20, method="daily")
    service = isp.service(amount=600, days=5, connection_price=200, method="monthly")
    sub = isp.subscriber(tariff)
    isp.activate(sub, at(2026, 4, 1, 9))  # balance 0: the first day cannot be paid
    assert isp.get(sub).status == "blocked"

    taken = isp.take(sub, service, at(2026, 4, 2, 10))
    assert taken.amount_minor == rub(600) and taken.days == 5
    assert taken.ends_at == at(2026, 4, 7, 0)  # covers 2 … 6 April
    now = isp.get(sub)
    assert now.status == "active"
    assert now.threshold_minor == -rub(600)
    assert charges(isp, sub.id, "connection") == [rub(200)]
    assert now.balance_minor == -rub(200) - rub(20)  # the connection, then 2 April

    for day in (3, 4, 5, 6):
        isp.run(at(2026, 4, day, 1))
    assert isp.get(sub).balance_minor == -rub(200) - 5 * rub(20)
    assert isp.get(sub).status == "active"

    isp.run(at(2026, 4, 7, 1))  # the promised payment is over; nothing was paid
    after = isp.get(sub)
    assert after.threshold_minor == 0
    assert after.status == "blocked"
    assert after.balance_minor == -rub(300)  # 7 April was not charged: blocked
    assert charges(isp, sub.id, "commission") == []
    limits = isp.read(
        lambda c: (
            c.execute(
                select(account_limits.c.credit_limit_minor)
                .where(account_limits.c.account_id == sub.account_id)
                .order_by(account_limits.c.id)
            )
            .scalars()
            .all()
        )
    )
    assert [int(x) for x in limits] == [0, rub(600), 0]
    isp.assert_clean()


def test_commission_1_percent_of_600_daily_taken_2_april_repaid_3_april_is_12(isp: Isp) -> None:
    tariff = isp.tariff(price=20, method="daily")
    service = isp.service(amount=600, days=5, method="daily", commission_bp=100)
    sub = isp.subscriber(tariff)
    isp.activate(sub, at(2026, 4, 1, 9))
    isp.take(sub, service, at(2026, 4, 2, 10))
    isp.run(at(2026, 4, 3, 1))
    isp.top_up(sub, 1000, at(2026, 4, 3, 18))  # repays it
    assert charges(isp, sub.id, "commission") == [rub(12)]
    now = isp.get(sub)
    assert now.threshold_minor == 0
    assert now.status == "active"
    assert now.balance_minor == rub(1000) - 2 * rub(20) - rub(12)  # 2 and 3 April
    isp.assert_clean()


def test_commission_for_the_monthly_method_is_charged_once_after_the_end(isp: Isp) -> None:
    tariff = isp.tariff(price=20, method="daily")
    service = isp.service(amount=600, days=5, method="monthly", commission_bp=100)
    sub = isp.subscriber(tariff)
    isp.activate(sub, at(2026, 4, 1, 9))
    isp.take(sub, service, at(2026, 4, 2, 10))
    isp.run(at(2026, 4, 5, 1))
    assert charges(isp, sub.id, "commission") == []  # not before the end
    isp.run(at(2026, 4, 7, 1))
    assert charges(isp, sub.id, "commission") == [rub(6)]
    isp.assert_clean()


def test_no_commission_on_the_automatic_amount(isp: Isp) -> None:
    tariff = isp.tariff(price=20, method="daily")
    service = isp.service(amount=0, days=5, method="daily", commission_bp=100)
    sub = isp.subscriber(tariff)
    isp.activate(sub, at(2026, 4, 1, 9))
    taken = isp.take(sub, service, at(2026, 4, 2, 10))
    assert taken.is_auto and taken.amount_minor == rub(20)  # what the day due needs
    isp.top_up(sub, 100, at(2026, 4, 2, 18))
    assert charges(isp, sub.id, "commission") == []
    (done,) = isp.read(lambda c: promised.list_promised(c, isp.t, sub.id))
    assert (done.status, done.commission_minor) == ("repaid", 0)
    assert isp.get(sub).balance_minor == rub(100) - rub(20)
    isp.assert_clean()


def test_three_days_without_payment_from_the_first_session_by_the_tariff(isp: Isp) -> None:
    tariff = isp.tariff(price=30, method="daily", grace_days=3)
    sub = isp.subscriber(tariff)
    isp.run(at(2026, 4, 9, 12))
    assert isp.get(sub).status == "new"  # nothing is charged before the first session
    isp.activate(sub, at(2026, 4, 10, 15))
    now = isp.get(sub)
    assert now.status == "active" and now.threshold_minor == -rub(90)
    for day in (11, 12):
        isp.run(at(2026, 4, day, 0, 5))
    assert isp.get(sub).status == "active"
    assert isp.get(sub).balance_minor == -rub(90)
    isp.run(at(2026, 4, 13, 0, 5))
    after = isp.get(sub)
    assert after.threshold_minor == 0 and after.status == "blocked"
    isp.top_up(sub, 120, at(2026, 4, 14, 9))
    back = isp.get(sub)
    assert back.status == "active"
    assert back.balance_minor == rub(120) - rub(90) - rub(30)  # 14 April charged at once
    assert back.next_charge_on.isoformat() == "2026-04-15"  # 13 April: blocked, not charged
    isp.assert_clean()


def test_three_days_without_payment_by_a_service_activated_after_the_first_session(
    isp: Isp,
) -> None:
    tariff = isp.tariff(price=30, method="daily")
    isp.service(amount=90, days=3, method="daily", on_first_session=True, tariff_ids=(tariff.id,))
    sub = isp.subscriber(tariff)
    isp.activate(sub, at(2026, 4, 10, 15))
    now = isp.get(sub)
    assert now.status == "active" and now.threshold_minor == -rub(90)
    isp.run(at(2026, 4, 12, 0, 5))
    assert isp.get(sub).status == "active"
    isp.run(at(2026, 4, 13, 0, 5))
    assert isp.get(sub).status == "blocked"
    isp.assert_clean()


def test_a_session_reported_again_changes_nothing(isp: Isp) -> None:
    tariff = isp.tariff(price=30, method="daily", grace_days=3)
    sub = isp.subscriber(tariff)
    isp.activate(sub, at(2026, 4, 10, 15))
    first = isp.get(sub)
    isp.activate(sub, at(2026, 4, 10, 16))
    assert isp.get(sub) == first
    refused("subscriber_state", lambda: isp.activate(sub, at(2026, 4, 10, 17), by_session=False))
