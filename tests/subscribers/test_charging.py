"""The charging routine (SPEC S-1): by the tenant's calendar, safe to run twice, a
catch-up after downtime charging each missed period once; blocking, unblocking and the
events the network side acts on (X-3)."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from kopilka.core.errors import KopilkaError
from kopilka.events.schema import events
from kopilka.ledger.schema import transfers
from kopilka.subscribers import billing
from kopilka.subscribers.schema import sub_charges, sub_promised_payments
from tests.subscribers.conftest import MSK, Isp, at, rub


def periods(isp: Isp, sub_id: int) -> list[tuple[date, date | None]]:
    query = (
        select(sub_charges.c.period_start, sub_charges.c.period_end)
        .where(sub_charges.c.subscriber_id == sub_id, sub_charges.c.kind == "tariff")
        .order_by(sub_charges.c.id)
    )
    return [(r.period_start, r.period_end) for r in isp.read(lambda c: c.execute(query).all())]


def test_a_catch_up_after_downtime_charges_each_missed_day_once(isp: Isp) -> None:
    tariff = isp.tariff(price=10, method="daily")
    sub = isp.subscriber(tariff)
    isp.top_up(sub, 1000, at(2026, 5, 1, 8))
    isp.activate(sub, at(2026, 5, 1, 9))
    first = isp.run(at(2026, 5, 11, 3))  # the server was down 2 … 10 May
    assert first.periods_charged == 10
    again = isp.run(at(2026, 5, 11, 4))
    assert again.periods_charged == 0
    assert [p[0].day for p in periods(isp, sub.id)] == list(range(1, 12))
    assert isp.get(sub).balance_minor == rub(1000) - 11 * rub(10)
    assert isp.get(sub).next_charge_on == date(2026, 5, 12)
    isp.assert_clean()


def test_the_day_is_the_tenants(isp: Isp) -> None:
    tariff = isp.tariff(price=10, method="daily")
    sub = isp.subscriber(tariff)
    isp.top_up(sub, 100, at(2026, 5, 1, 8))
    isp.activate(sub, at(2026, 5, 1, 9))
    # 23:30 UTC on 1 May is 02:30 on 2 May in Moscow: 2 May is due.
    assert isp.run(at(2026, 5, 1, 23, 59)).periods_charged == 0
    assert isp.run(at(2026, 5, 2, 0, 0)).periods_charged == 1


def test_a_monthly_tariff_keeps_its_day_through_short_months(isp: Isp) -> None:
    tariff = isp.tariff(price=500, method="monthly")
    sub = isp.subscriber(tariff, when=at(2026, 1, 30))
    isp.top_up(sub, 5000, at(2026, 1, 31, 8))
    isp.activate(sub, at(2026, 1, 31, 9))
    isp.run(at(2026, 5, 1, 1))
    starts = [p[0] for p in periods(isp, sub.id)]
    assert starts == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]
    assert periods(isp, sub.id)[1][1] == date(2026, 3, 31)
    assert isp.get(sub).balance_minor == rub(5000) - 4 * rub(500)


def test_a_one_time_tariff_is_charged_once(isp: Isp) -> None:
    tariff = isp.tariff(price=300, method="one_time")
    sub = isp.subscriber(tariff)
    isp.top_up(sub, 1000, at(2026, 5, 1, 8))
    isp.activate(sub, at(2026, 5, 1, 9))
    isp.run(at(2026, 8, 1, 9))
    assert periods(isp, sub.id) == [(date(2026, 5, 1), None)]
    assert isp.get(sub).next_charge_on is None and isp.get(sub).status == "active"


def test_blocked_is_not_charged_and_a_top_up_restarts_the_service(isp: Isp) -> None:
    tariff = isp.tariff(price=600, method="monthly")
    sub = isp.subscriber(tariff)
    isp.top_up(sub, 600, at(2026, 3, 10, 8))
    isp.activate(sub, at(2026, 3, 10, 9))
    isp.run(at(2026, 4, 10, 1))
    assert isp.get(sub).status == "blocked"
    isp.run(at(2026, 4, 20, 1))
    assert len(periods(isp, sub.id)) == 1  # nothing charged while blocked
    isp.top_up(sub, 599, at(2026, 4, 22, 12))
    assert isp.get(sub).status == "blocked"  # not enough for the month
    isp.top_up(sub, 1, at(2026, 4, 23, 12))
    now = isp.get(sub)
    assert now.status == "active"
    assert periods(isp, sub.id)[-1] == (date(2026, 4, 23), date(2026, 5, 23))
    assert now.charge_day == 23  # the month now runs from the 23rd
    isp.run(at(2026, 5, 22, 23, 59))
    assert isp.get(sub).status == "active"
    isp.run(at(2026, 5, 23, 0, 0))  # the next month is due: nothing left to pay it
    assert isp.get(sub).status == "blocked"
    statuses = isp.read(
        lambda c: [
            (e.payload["status_was"], e.payload["status"], e.payload["reason"])
            for e in c.execute(
                select(events)
                .where(events.c.tenant_id == isp.t, events.c.type == "subscriber.status_changed")
                .order_by(events.c.id)
            )
        ]
    )
    assert statuses == [
        (None, "new", "created"),
        ("new", "active", "first_session"),
        ("active", "blocked", "debt"),
        ("blocked", "active", "top_up"),
        ("active", "blocked", "debt"),
    ]
    isp.assert_clean()


def test_disabled_is_not_charged_and_enabled_comes_back(isp: Isp) -> None:
    tariff = isp.tariff(price=10, method="daily")
    sub = isp.subscriber(tariff)
    isp.top_up(sub, 100, at(2026, 5, 1, 8))
    isp.activate(sub, at(2026, 5, 1, 9))
    isp.tx(
        lambda c: billing.disable(
            c, tenant_id=isp.t, subscriber_id=sub.id, actor=isp.actor, now=at(2026, 5, 1, 10)
        )
    )
    isp.run(at(2026, 5, 5, 1))
    assert len(periods(isp, sub.id)) == 1
    isp.tx(
        lambda c: billing.enable(
            c, tenant_id=isp.t, subscriber_id=sub.id, actor=isp.actor, now=at(2026, 5, 6, 10)
        )
    )
    assert isp.get(sub).status == "active"
    assert periods(isp, sub.id)[-1][0] == date(2026, 5, 6)


def test_a_lowered_threshold_blocks_and_a_raised_one_unblocks(isp: Isp) -> None:
    tariff = isp.tariff(price=10, method="daily")
    sub = isp.subscriber(tariff, threshold=-50)
    isp.activate(sub, at(2026, 5, 1, 9))
    isp.run(at(2026, 5, 5, 1))
    assert isp.get(sub).balance_minor == -rub(50)
    assert isp.get(sub).status == "active"
    isp.run(at(2026, 5, 6, 1))
    assert isp.get(sub).status == "blocked"
    isp.tx(
        lambda c: billing.set_threshold(
            c,
            tenant_id=isp.t,
            subscriber_id=sub.id,
            base_limit_minor=rub(100),
            actor=isp.actor,
            now=at(2026, 5, 6, 12),
        )
    )
    assert isp.get(sub).status == "active"
    isp.assert_clean()


def test_concurrent_top_ups_charges_and_promised_payments_on_one_subscriber(isp: Isp) -> None:
    """Real threads on one blocked subscriber: every top-up lands once, one promised
    payment of many asked for at once is taken, the day is charged once, the ledger
    verifies."""
    if isp.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: the race is PostgreSQL's")
    tariff = isp.tariff(price=10, method="daily", pp_max_per_month=31)
    service = isp.service(amount=600, days=2)
    sub = isp.subscriber(tariff)
    isp.activate(sub, at(2026, 6, 1, 9))
    moment = at(2026, 6, 1, 10)
    errors: list[BaseException] = []
    taken: list[int] = []
    barrier = threading.Barrier(16)

    def top_up(n: int) -> None:
        barrier.wait()
        try:
            isp.top_up(sub, 1, moment + timedelta(seconds=n), operation_id=f"pay-{n}")
        except BaseException as error:
            errors.append(error)

    def take(n: int) -> None:
        barrier.wait()
        try:
            taken.append(isp.take(sub, service, moment + timedelta(seconds=n)).id)
        except KopilkaError as error:
            assert error.code in ("pp_already_active", "pp_not_needed"), error
        except BaseException as error:
            errors.append(error)

    def run(n: int) -> None:
        barrier.wait()
        try:
            isp.run(moment + timedelta(seconds=n))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=top_up, args=(n,)) for n in range(8)]
    threads += [threading.Thread(target=take, args=(n,)) for n in range(6)]
    threads += [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(taken) == 1  # the others: already active (the top-ups never repay it)
    active = isp.read(
        lambda c: c.execute(
            select(sub_promised_payments.c.id).where(
                sub_promised_payments.c.subscriber_id == sub.id,
                sub_promised_payments.c.status == "active",
            )
        ).all()
    )
    assert len(active) == 1
    assert isp.count(transfers) >= 8
    now = isp.get(sub)
    assert now.balance_minor == 8 * rub(1) - rub(10)  # 1 June charged once
    assert now.status == "active" and now.threshold_minor == -rub(600)
    isp.assert_clean()


def test_the_servers_clock_charges_up_to_now(isp: Isp) -> None:
    """``kopilka serve``'s clock: a tick charges every day due up to the real now."""
    from kopilka.core.clock import utcnow
    from kopilka.subscribers.scheduler import ChargingScheduler

    tariff = isp.tariff(price=1, method="daily")
    sub = isp.subscriber(tariff)
    started = utcnow() - timedelta(days=10)
    isp.top_up(sub, 100, started)
    isp.activate(sub, started + timedelta(seconds=1))
    assert len(periods(isp, sub.id)) == 1
    first = started.astimezone(MSK).date()
    clock = ChargingScheduler(isp.engine, every_seconds=0.05, tenant_ids={isp.t})
    clock.start()
    try:
        deadline = utcnow() + timedelta(seconds=30)
        while (
            utcnow() < deadline and isp.get(sub).next_charge_on <= utcnow().astimezone(MSK).date()
        ):
            threading.Event().wait(0.05)
    finally:
        clock.stop()
    today = utcnow().astimezone(MSK).date()
    assert [p[0] for p in periods(isp, sub.id)] == [
        first + timedelta(days=n) for n in range((today - first).days + 1)
    ]
    assert isp.get(sub).next_charge_on == today + timedelta(days=1)
    isp.assert_clean()
