"""A population of subscribers lived through 90 days of charging, top-ups and promised
payments (SPEC S-1 … S-6): every day, after the routine and the day's doings, each
subscriber's status matches its balance and threshold, the threshold is the staff's plus
the promised payments in force, and the money adds up; the ledger verifies throughout."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from kopilka.core.clock import as_utc
from kopilka.core.errors import Refused
from kopilka.ledger.schema import accounts
from kopilka.subscribers import billing
from kopilka.subscribers.common import period_end
from kopilka.subscribers.schema import (
    sub_charges,
    sub_promised_payments,
    sub_topups,
    subscribers,
)
from tests.subscribers.conftest import Isp, at

DAYS = 90
POPULATION = 40


def _check_day(isp: Isp, today: date, moment: Any, prices: dict[int, tuple[int, str]]) -> None:
    def read(conn: Connection) -> list[Any]:
        return list(
            conn.execute(
                select(
                    subscribers,
                    accounts.c.balance_minor,
                    accounts.c.credit_limit_minor,
                )
                .join(accounts, accounts.c.id == subscribers.c.account_id)
                .where(subscribers.c.tenant_id == isp.t)
            )
        )

    def sums(conn: Connection, table: Any, column: Any) -> dict[int, int]:
        rows = conn.execute(
            select(table.c.subscriber_id, func.sum(column))
            .where(table.c.tenant_id == isp.t)
            .group_by(table.c.subscriber_id)
        )
        return {r[0]: int(r[1]) for r in rows}

    def active_raise(conn: Connection) -> tuple[dict[int, int], list[Any]]:
        rows = list(
            conn.execute(
                select(sub_promised_payments).where(
                    sub_promised_payments.c.tenant_id == isp.t,
                    sub_promised_payments.c.status == "active",
                )
            )
        )
        raised: dict[int, int] = {}
        for r in rows:
            raised[r.subscriber_id] = raised.get(r.subscriber_id, 0) + int(r.amount_minor)
        return raised, rows

    rows = isp.read(read)
    paid = isp.read(lambda c: sums(c, sub_topups, sub_topups.c.amount_minor))
    charged = isp.read(lambda c: sums(c, sub_charges, sub_charges.c.amount_minor))
    raised, active = isp.read(active_raise)
    for p in active:  # the routine has ended every promised payment whose days are over
        assert as_utc(p.ends_at) > moment, p
    for row in rows:
        balance, limit = int(row.balance_minor), int(row.credit_limit_minor)
        price, method = prices[row.tariff_id]
        where = f"{row.account_no} on {today}: {row.status}, balance {balance}, limit {limit}"
        assert balance == paid.get(row.id, 0) - charged.get(row.id, 0), where
        assert limit == int(row.base_limit_minor) + raised.get(row.id, 0), where
        if row.status == "active":
            assert balance >= -limit, where
            assert row.next_charge_on is None or row.next_charge_on > today, where
        elif row.status == "blocked":
            due = row.next_charge_on is not None and row.next_charge_on <= today
            assert balance < -limit or (due and balance - price < -limit), where
        elif row.status == "new":
            assert charged.get(row.id, 0) == 0, where
        if row.next_charge_on is not None and method != "one_time":
            assert period_end(method, row.next_charge_on, row.charge_day) is not None


def test_ninety_days_of_a_population(isp: Isp) -> None:
    rng = random.Random(20260401)
    tariffs = [
        isp.tariff(price=20, method="daily", pp_once_a_month=True),
        isp.tariff(price=15, method="daily", grace_days=3),
        isp.tariff(price=450, method="monthly", pp_max_per_month=2),
        isp.tariff(price=600, method="monthly"),
        isp.tariff(price=300, method="one_time", pp_payment_within_days=10),
    ]
    prices = {t.id: (t.price_minor, t.charge_method) for t in tariffs}
    services = [
        isp.service(amount=600, days=5, method="daily", commission_bp=100, self_service=True),
        isp.service(amount=0, days=3, method="monthly", connection_price=10),
        isp.service(amount=700, days=7, method="monthly", commission_bp=250),
    ]
    start = at(2026, 4, 1, 0, 10)
    subs = []
    for n in range(POPULATION):
        tariff = tariffs[n % len(tariffs)]
        sub = isp.subscriber(tariff, when=start, threshold=rng.choice([0, 0, -100]))
        if rng.random() < 0.7:
            isp.top_up(sub, rng.choice([100, 300, 700]), start + timedelta(minutes=n))
        subs.append(sub)
    refusals: dict[str, int] = {}
    seen: set[str] = set()
    taken = 0
    for day in range(DAYS):
        morning = start + timedelta(days=day)
        isp.run(morning)
        for n, sub in enumerate(subs):
            moment = morning + timedelta(hours=1 + rng.random() * 20, minutes=n)
            roll = rng.random()
            if roll < 0.04:
                isp.activate(sub, moment)
            elif roll < 0.12:
                isp.top_up(sub, rng.choice([20, 150, 450, 900]), moment)
            elif roll < 0.17:
                service = rng.choice(services)
                try:
                    isp.take(sub, service, moment)
                    taken += 1
                except Refused as error:
                    refusals[error.code] = refusals.get(error.code, 0) + 1
            elif roll < 0.175:
                isp.tx(
                    lambda c, s=sub, m=moment: billing.disable(
                        c, tenant_id=isp.t, subscriber_id=s.id, actor=isp.actor, now=m
                    )
                )
            elif roll < 0.19 and isp.get(sub).status == "disabled":
                isp.tx(
                    lambda c, s=sub, m=moment: billing.enable(
                        c, tenant_id=isp.t, subscriber_id=s.id, actor=isp.actor, now=m
                    )
                )
        evening = morning + timedelta(hours=23)
        isp.run(evening)
        _check_day(isp, evening.date(), evening, prices)
        seen.update(isp.get(s).status for s in subs)
        if day % 15 == 14:
            isp.assert_clean()
    # The simulation went through what it is for.
    statuses = seen
    assert {"active", "blocked", "disabled", "new"} <= statuses, statuses
    assert taken >= 10, (taken, refusals)
    assert len(refusals) >= 3, refusals
    print(
        f"\nsimulation: {taken} promised payments taken, refusals {refusals}, statuses {statuses}"
    )
    ended = isp.read(
        lambda c: c.execute(
            select(func.count())
            .select_from(sub_promised_payments)
            .where(
                sub_promised_payments.c.tenant_id == isp.t,
                sub_promised_payments.c.status.in_(("ended", "repaid")),
            )
        ).scalar_one()
    )
    assert ended >= 5
    isp.assert_clean()
    # A second run at the same moment changes nothing.
    last = start + timedelta(days=DAYS - 1, hours=23)
    again = isp.run(last)
    assert again.periods_charged == 0 and again.blocked == 0
