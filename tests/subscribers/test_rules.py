"""The promised payment rules of S-4 and S-5, each refusing and allowing at its
boundary, and the bad input of the issue: clear codes, nothing half-written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kopilka.core.errors import KopilkaError
from kopilka.events.schema import events
from kopilka.ledger.schema import account_limits, transfers
from kopilka.subscribers import billing
from kopilka.subscribers.registry import SubscriberView
from kopilka.subscribers.schema import sub_charges, sub_promised_payments
from kopilka.subscribers.tariffs import ServiceIn, commission_bp_of, create_service, update_settings
from tests.subscribers.conftest import Isp, at, rub


def refused(code: str, work: Any) -> KopilkaError:
    with pytest.raises(KopilkaError) as caught:
        work()
    assert caught.value.code == code, caught.value
    return caught.value


def rich(isp: Isp, tariff: Any, when: Any = None) -> SubscriberView:
    """An active subscriber with money on the account (a top-up on 1 March)."""
    sub = isp.subscriber(tariff)
    isp.activate(sub, when or at(2026, 3, 1, 9))
    isp.top_up(sub, 100, when or at(2026, 3, 1, 9, 5))
    return sub


def test_none_set_no_sooner_than_a_month_after_the_previous(isp: Isp) -> None:
    tariff = isp.tariff(price=1, method="daily")
    service = isp.service(amount=600, days=1)
    sub = rich(isp, tariff)
    isp.take(sub, service, at(2026, 3, 15, 10, 0))
    refused("pp_rule_month_since_previous", lambda: isp.take(sub, service, at(2026, 4, 15, 9, 59)))
    isp.take(sub, service, at(2026, 4, 15, 10, 0))


def test_a_top_up_since_the_previous(isp: Isp) -> None:
    tariff = isp.tariff(price=1, method="daily", pp_requires_topup=True)
    service = isp.service(amount=600, days=1)
    sub = rich(isp, tariff)
    isp.take(sub, service, at(2026, 3, 10, 10))
    refused("pp_rule_no_topup", lambda: isp.take(sub, service, at(2026, 3, 12, 10)))
    isp.top_up(sub, 5, at(2026, 3, 12, 11))
    isp.take(sub, service, at(2026, 3, 12, 12))


def test_once_in_the_calendar_month_of_the_tenants_time_zone(isp: Isp) -> None:
    tariff = isp.tariff(price=1, method="daily", pp_once_a_month=True)
    service = isp.service(amount=600, days=1)
    sub = rich(isp, tariff)
    isp.take(sub, service, at(2026, 3, 2, 10))
    refused("pp_rule_once_a_month", lambda: isp.take(sub, service, at(2026, 3, 31, 23, 59, 59)))
    # 1 April 00:00 in Moscow is still 31 March in UTC: the tenant's month counts.
    isp.take(sub, service, at(2026, 4, 1, 0, 0, 0))


def test_once_a_month_takes_priority_over_at_most_n(isp: Isp) -> None:
    tariff = isp.tariff(price=1, method="daily", pp_once_a_month=True, pp_max_per_month=0)
    service = isp.service(amount=600, days=1)
    sub = rich(isp, tariff)
    isp.take(sub, service, at(2026, 3, 5, 10))  # (e) alone would refuse it
    refused("pp_rule_once_a_month", lambda: isp.take(sub, service, at(2026, 3, 20, 10)))


def test_at_most_n_in_a_month(isp: Isp) -> None:
    tariff = isp.tariff(price=1, method="daily", pp_max_per_month=2)
    service = isp.service(amount=600, days=1)
    sub = rich(isp, tariff)
    isp.take(sub, service, at(2026, 3, 5, 10))
    isp.take(sub, service, at(2026, 3, 10, 10))
    refused("pp_rule_monthly_limit", lambda: isp.take(sub, service, at(2026, 3, 31, 20)))
    isp.take(sub, service, at(2026, 4, 1, 0, 0))


def test_a_real_payment_within_n_days_exactly(isp: Isp) -> None:
    tariff = isp.tariff(price=1, method="daily", pp_payment_within_days=3)
    service = isp.service(amount=600, days=1)
    sub = isp.subscriber(tariff)
    isp.activate(sub, at(2026, 3, 1, 9))
    paid = at(2026, 3, 10, 12)
    isp.top_up(sub, 5, paid)
    refused(
        "pp_rule_no_recent_payment",
        lambda: isp.take(sub, service, paid + timedelta(days=3, microseconds=1)),
    )
    isp.take(sub, service, paid + timedelta(days=3))


def test_a_non_zero_charge_within_n_days_exactly(isp: Isp) -> None:
    tariff = isp.tariff(price=600, method="monthly", pp_charge_within_days=2)
    free = isp.tariff(price=0, method="daily", pp_charge_within_days=2)
    service = isp.service(amount=600, days=1)
    sub = isp.subscriber(tariff)
    isp.top_up(sub, 600, at(2026, 3, 1, 8))
    isp.activate(sub, at(2026, 3, 1, 9))  # 600 charged at 09:00 on 1 March
    refused(
        "pp_rule_no_recent_charge",
        lambda: isp.take(sub, service, at(2026, 3, 3, 9) + timedelta(microseconds=1)),
    )
    isp.take(sub, service, at(2026, 3, 3, 9))
    zero = isp.subscriber(free)
    isp.activate(zero, at(2026, 3, 1, 9))  # charged 0.00 every day: not a charge
    refused("pp_rule_no_recent_charge", lambda: isp.take(zero, service, at(2026, 3, 2, 9)))


def test_only_while_blocked_when_the_operator_says_so(isp: Isp) -> None:
    isp.tx(
        lambda c: update_settings(c, tenant_id=isp.t, pp_only_when_blocked=True, actor=isp.actor)
    )
    tariff = isp.tariff(price=20, method="daily")
    service = isp.service(amount=600, days=1)
    sub = rich(isp, tariff)
    refused("pp_only_when_blocked", lambda: isp.take(sub, service, at(2026, 3, 2, 10)))
    poor = isp.subscriber(tariff)
    isp.activate(poor, at(2026, 3, 2, 9))
    assert isp.get(poor).status == "blocked"
    isp.take(poor, service, at(2026, 3, 2, 10))
    assert isp.get(poor).status == "active"


def test_bad_input_answers_with_codes_and_writes_nothing(isp: Isp) -> None:
    tariff = isp.tariff(price=600, method="monthly")
    other = isp.tariff(price=600, method="monthly")
    service = isp.service(amount=600, days=5, tariff_ids=(tariff.id,))
    cheap = isp.service(amount=500, days=5)
    cabinet_only_staff = isp.service(amount=600, days=5, self_service=False)
    sub = rich(isp, tariff)
    elsewhere = rich(isp, other)
    disabled = rich(isp, tariff)
    isp.tx(
        lambda c: billing.disable(
            c, tenant_id=isp.t, subscriber_id=disabled.id, actor=isp.actor, now=at(2026, 3, 2)
        )
    )
    new = isp.subscriber(tariff)
    tables = (transfers, account_limits, sub_promised_payments, sub_charges, events)
    before = [isp.count(t) for t in tables]
    when = at(2026, 3, 3, 10)
    refused("pp_subscriber_disabled", lambda: isp.take(disabled, service, when))
    refused("pp_not_activated", lambda: isp.take(new, service, when))
    refused("pp_tariff_not_allowed", lambda: isp.take(elsewhere, service, when))
    refused("pp_amount_below_price", lambda: isp.take(sub, cheap, when))
    refused(
        "pp_not_self_service",
        lambda: isp.take(sub, cabinet_only_staff, when, source="cabinet"),
    )
    refused(
        "subscriber_not_found",
        lambda: isp.tx(
            lambda c: billing.top_up(
                c,
                tenant_id=isp.t,
                subscriber_id=10**9,
                amount_minor=100,
                operation_id="x",
                actor=isp.actor,
            )
        ),
    )
    assert [isp.count(t) for t in tables] == before
    isp.take(sub, service, when)
    refused("pp_already_active", lambda: isp.take(sub, service, at(2026, 3, 4, 10)))
    for bad in ("101", "-1", "1.001", "abc"):
        refused("invalid_commission", lambda bad=bad: commission_bp_of(bad))
    assert commission_bp_of("2.5") == 250
    refused(
        "invalid_commission",
        lambda: isp.tx(
            lambda c: create_service(
                c,
                tenant_id=isp.t,
                data=ServiceIn("Bad", rub(600), 5, "daily", commission_bp=10_001),
                actor=isp.actor,
            )
        ),
    )
    isp.assert_clean()


def test_a_repeated_request_is_answered_as_the_first_time(isp: Isp) -> None:
    tariff = isp.tariff(price=20, method="daily")
    service = isp.service(amount=600, days=5, connection_price=10)
    sub = rich(isp, tariff)
    first = isp.take(sub, service, at(2026, 3, 3, 10), operation_id="pp-1")
    count = isp.count(transfers)
    again = isp.take(sub, service, at(2026, 3, 3, 10, 1), operation_id="pp-1")
    assert again.replayed and again.id == first.id
    assert isp.count(transfers) == count
    other = isp.service(amount=600, days=5)
    refused(
        "subscriber_operation_conflict",
        lambda: isp.take(sub, other, at(2026, 3, 3, 10, 2), operation_id="pp-1"),
    )
    top = isp.top_up(sub, 50, at(2026, 3, 3, 11), operation_id="pay-1")
    assert isp.top_up(sub, 50, at(2026, 3, 3, 12), operation_id="pay-1").id == top.id
    refused(
        "subscriber_operation_conflict", lambda: isp.top_up(sub, 51, at(2026, 3, 3, 12), "pay-1")
    )
