"""Selling a membership online exactly once (SPEC M-3 … M-7): the order priced with the
commission the client pays, the payment recorded once however often and in whatever
order the return and the notifications arrive, a tampered amount refused, attaching,
refunds never above what was paid; the ledger verifies throughout."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kopilka.core.errors import KopilkaError
from kopilka.events.schema import events
from kopilka.ledger.schema import transfers
from kopilka.mail.schema import mail_outbox
from kopilka.mail.sender import deliver_due_mail
from kopilka.memberships import attaching, catalogue, refunds
from kopilka.memberships.catalogue import OnlineSettings, TypeIn
from kopilka.memberships.providers.base import PaymentState, ProviderRefund, RefundState
from kopilka.memberships.schema import membership_orders, memberships
from tests.mail.conftest import SmtpServer
from tests.memberships.conftest import Studio


def refused(code: str, work: Any) -> KopilkaError:
    with pytest.raises(KopilkaError) as caught:
        work()
    assert caught.value.code == code, caught.value
    return caught.value


def sold(studio: Studio) -> tuple[Any, attaching.MembershipView]:
    order = studio.checkout()
    paid = studio.provider_says(order, PaymentState.SUCCEEDED)
    assert paid.membership_id is not None
    return paid, studio.read(lambda c: attaching.get_membership(c, studio.t, paid.membership_id))


def test_the_client_pays_the_commission_on_top(studio: Studio) -> None:
    order = studio.checkout()
    assert (order.price_minor, order.commission_minor, order.total_minor) == (
        400_000,
        12_000,
        412_000,
    )
    assert order.status == "pending" and order.currency == "RUB"


def test_one_payment_one_membership_one_email_one_event(studio: Studio) -> None:
    order = studio.checkout()
    before = [studio.count(t) for t in (transfers, mail_outbox, events, memberships)]
    # The notification, the return, the notification twice more: any order, many times.
    results = [studio.provider_says(order, PaymentState.SUCCEEDED) for _ in range(4)]
    after = [studio.count(t) for t in (transfers, mail_outbox, events, memberships)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1]
    assert {r.membership_id for r in results} == {results[0].membership_id}
    assert all(r.status == "paid" for r in results)
    mail = studio.read(
        lambda c: c.execute(mail_outbox.select().where(mail_outbox.c.tenant_id == studio.t)).one()
    )
    membership = studio.read(
        lambda c: attaching.get_membership(c, studio.t, results[0].membership_id or 0)
    )
    assert mail.to_addr == "client@example.ru"
    assert membership.activation_code in mail.body_text
    assert membership.number in mail.subject
    assert "Код активации" in mail.body_text  # the client bought in Russian
    studio.assert_clean()


def test_a_pending_or_canceled_payment_sells_nothing(studio: Studio) -> None:
    order = studio.checkout()
    assert studio.provider_says(order, PaymentState.PENDING).status == "pending"
    assert studio.provider_says(order, PaymentState.CANCELED).status == "canceled"
    assert studio.count(memberships) == 0


def test_a_tampered_amount_buys_nothing(studio: Studio) -> None:
    order = studio.checkout()
    before = [studio.count(t) for t in (transfers, mail_outbox, memberships)]
    refused(
        "payment_mismatch",
        lambda: studio.provider_says(order, PaymentState.SUCCEEDED, amount_minor=100),
    )
    refused(
        "payment_mismatch",
        lambda: studio.provider_says(order, PaymentState.SUCCEEDED, currency="EUR"),
    )
    refused(
        "payment_mismatch",
        lambda: studio.provider_says(order, PaymentState.SUCCEEDED, order_id=order.id + 1),
    )
    assert [studio.count(t) for t in (transfers, mail_outbox, memberships)] == before


def test_bad_checkouts(studio: Studio) -> None:
    refused("invalid_email", lambda: studio.checkout(email="not-an-address"))
    refused("invalid_email", lambda: studio.checkout(email="anna@example.ru,"))
    refused("not_sold_online", lambda: studio.checkout(studio.trial))
    refused(
        "invalid_membership_input",
        lambda: studio.tx(
            lambda c: catalogue.create_type(
                c,
                tenant_id=studio.t,
                data=TypeIn(
                    "Разовое", 50_000, 1, is_permanent=False, sell_online=True, button_text="Купить"
                ),
                actor=studio.actor,
            )
        ),
    )
    studio.tx(
        lambda c: catalogue.update_settings(
            c, tenant_id=studio.t, settings=OnlineSettings(online_enabled=False), actor=studio.actor
        )
    )
    refused("online_sale_off", lambda: studio.checkout())
    assert studio.count(membership_orders) == 0


def test_concurrent_arrivals_make_one_membership(studio: Studio) -> None:
    if studio.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: the race is PostgreSQL's")
    order = studio.checkout()
    barrier = threading.Barrier(8)
    seen: list[int | None] = []
    errors: list[BaseException] = []

    def arrive() -> None:
        barrier.wait()
        try:
            seen.append(studio.provider_says(order, PaymentState.SUCCEEDED).membership_id)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=arrive) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(seen)) == 1 and studio.count(memberships) == 1
    studio.assert_clean()


def test_attaching_by_number_or_code(studio: Studio) -> None:
    visitor = studio.tx(
        lambda c: catalogue.create_visitor(
            c,
            tenant_id=studio.t,
            full_name="Ольга Смирнова",
            phone="+7 916 111-22-33",
            actor=studio.actor,
        )
    )
    _, membership = sold(studio)
    by_code = studio.read(
        lambda c: attaching.find_membership(c, studio.t, membership.activation_code.lower())
    )
    by_number = studio.read(
        lambda c: attaching.find_membership(c, studio.t, str(int(membership.number[2:])))
    )
    assert by_code.id == by_number.id == membership.id
    assert [v.id for v in studio.read(lambda c: catalogue.find_visitors(c, studio.t, "смирн"))] == [
        visitor.id
    ]
    assert [
        v.id for v in studio.read(lambda c: catalogue.find_visitors(c, studio.t, "1112233"))
    ] == [visitor.id]
    refused(
        "class_not_found",
        lambda: studio.tx(
            lambda c: attaching.attach(
                c,
                tenant_id=studio.t,
                membership_id=membership.id,
                visitor_id=visitor.id,
                group_ids=[studio.dance.id],
                class_ids=[studio.yoga_class.id],
                actor=studio.actor,
            )
        ),
    )
    done = studio.tx(
        lambda c: attaching.attach(
            c,
            tenant_id=studio.t,
            membership_id=membership.id,
            visitor_id=visitor.id,
            group_ids=[studio.yoga.id],
            class_ids=[studio.yoga_class.id],
            actor=studio.actor,
        )
    )
    assert done.status == "attached" and done.visitor_id == visitor.id
    assert done.booked_class_ids == (studio.yoga_class.id,)
    assert (done.valid_until - done.valid_from).days == 29  # 30 days, both ends counted
    refused(
        "code_used",
        lambda: studio.tx(
            lambda c: attaching.attach(
                c,
                tenant_id=studio.t,
                membership_id=membership.id,
                visitor_id=visitor.id,
                group_ids=[studio.yoga.id],
                actor=studio.actor,
            )
        ),
    )
    refused(
        "membership_not_found",
        lambda: studio.read(lambda c: attaching.find_membership(c, studio.t, "ZZZZZZZZ")),
    )


def _refund(studio: Studio, order_id: int, amount: int, operation_id: str) -> refunds.RefundView:
    asked = studio.tx(
        lambda c: refunds.request_refund(
            c,
            tenant_id=studio.t,
            order_id=order_id,
            amount_minor=amount,
            operation_id=operation_id,
            actor=studio.actor,
        )
    )
    result = ProviderRefund(f"rf_{asked.id}", RefundState.SUCCEEDED, amount)
    return studio.tx(
        lambda c: refunds.complete_refund(
            c, tenant_id=studio.t, refund_id=asked.id, result=result, actor=studio.actor
        )
    )


def test_refunds_never_above_what_was_paid_and_an_attached_one_leaves_the_profile(
    studio: Studio,
) -> None:
    order, membership = sold(studio)
    visitor = studio.tx(
        lambda c: catalogue.create_visitor(
            c, tenant_id=studio.t, full_name="Анна", actor=studio.actor
        )
    )
    studio.tx(
        lambda c: attaching.attach(
            c,
            tenant_id=studio.t,
            membership_id=membership.id,
            visitor_id=visitor.id,
            group_ids=[studio.yoga.id],
            actor=studio.actor,
        )
    )
    refused("refund_too_large", lambda: _refund(studio, order.id, 412_001, "r-0"))
    first = _refund(studio, order.id, 100_000, "r-1")
    assert first.status == "succeeded"
    again = studio.tx(
        lambda c: refunds.request_refund(
            c,
            tenant_id=studio.t,
            order_id=order.id,
            amount_minor=100_000,
            operation_id="r-1",
            actor=studio.actor,
        )
    )
    assert again.replayed and again.id == first.id
    refused(
        "membership_operation_conflict",
        lambda: studio.tx(
            lambda c: refunds.request_refund(
                c,
                tenant_id=studio.t,
                order_id=order.id,
                amount_minor=5,
                operation_id="r-1",
                actor=studio.actor,
            )
        ),
    )
    refused("refund_too_large", lambda: _refund(studio, order.id, 312_001, "r-2"))
    _refund(studio, order.id, 312_000, "r-3")
    now = studio.read(lambda c: attaching.get_membership(c, studio.t, membership.id))
    assert now.status == "refunded" and now.refunded_minor == 412_000
    profile = studio.read(lambda c: attaching.list_memberships(c, studio.t, visitor_id=visitor.id))
    assert [(m.id, m.status) for m in profile] == [(membership.id, "refunded")]
    refused("order_not_paid", lambda: _refund(studio, order.id, 1, "r-4"))
    studio.assert_clean()


def test_the_client_gets_the_code_by_e_mail_in_their_language(
    studio: Studio, smtp_server: SmtpServer
) -> None:
    order = studio.checkout(email="Client@Example.RU", locale="en")
    paid = studio.provider_says(order, PaymentState.SUCCEEDED)
    membership = studio.read(
        lambda c: attaching.get_membership(c, studio.t, paid.membership_id or 0)
    )
    counts = deliver_due_mail(studio.engine, tenant_id=studio.t)
    assert counts.sent == 1, counts
    (message,) = smtp_server.messages
    assert message["To"] == "Client@example.ru"
    body = message.get_body(("plain",)).get_content()
    assert f"Activation code: {membership.activation_code}" in body
    assert membership.number in message["Subject"]
    assert "4120.00 RUB" in body
