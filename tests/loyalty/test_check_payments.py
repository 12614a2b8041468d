"""How a check's money part was paid, by terminal payment codes (SPEC P-8): each code
means the tenant's payment type, the lines add up to the money part, and a refusal
writes nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from kopilka.core.db import read_only
from kopilka.loyalty import pos
from kopilka.loyalty.cards import CardView
from kopilka.loyalty.schema import pos_checks
from kopilka.payments.codes import add_payment_code
from kopilka.payments.types import create_payment_type, update_payment_type

from .conftest import Shop
from .test_pos import gold_card, refused


def setup_types(shop: Shop) -> dict[str, int]:
    def work(conn: Connection) -> dict[str, int]:
        t, actor = shop.tenant.id, shop.actor
        cash = create_payment_type(conn, tenant_id=t, name="Наличные", kind="cash", actor=actor)
        card = create_payment_type(conn, tenant_id=t, name="Карта", kind="card", actor=actor)
        points = create_payment_type(
            conn, tenant_id=t, name="Бонусы", kind="points", unit_code="BONUS", actor=actor
        )
        for code, kind in (("1", cash), ("2", card), ("7", points)):
            add_payment_code(conn, tenant_id=t, code=code, payment_type_id=kind.id, actor=actor)
        return {"cash": cash.id, "card": card.id, "points": points.id}

    return shop.tx(work)


def commit(shop: Shop, card: CardView, check_id: str, **extra: Any) -> pos.CommittedCheck:
    return shop.tx(
        lambda c: pos.commit_check(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=shop.terminal_id,
            check_id=check_id,
            card_number=card.number,
            lines=[1000_00],
            points_minor=extra.pop("points", 0),
            actor=shop.actor,
            **extra,
        )
    )


def checks(shop: Shop) -> int:
    with read_only(shop.engine) as conn:
        return int(
            conn.execute(
                select(func.count()).where(pos_checks.c.tenant_id == shop.tenant.id)
            ).scalar_one()
        )


def test_the_money_part_paid_by_codes_is_kept_with_the_check(shop: Shop) -> None:
    types = setup_types(shop)
    card = gold_card(shop)
    # 1,000.00: 200.00 in points, 800.00 in money, of it 300.00 cash and 500.00 by card.
    check = commit(shop, card, "P-1", points=200_00, payments=[("1", 300_00), ("2", 500_00)])
    assert check.money_minor == 800_00
    assert [(p.code, p.payment_type_id, p.kind, p.amount_minor) for p in check.payments] == [
        ("1", types["cash"], "cash", 300_00),
        ("2", types["card"], "card", 500_00),
    ]
    # Read back, and replayed: the same lines; the same id with other payments conflicts.
    again = commit(shop, card, "P-1", points=200_00, payments=[("1", 300_00), ("2", 500_00)])
    assert again.replayed and again.payments == check.payments
    with read_only(shop.engine) as conn:
        read = pos.get_check(conn, shop.tenant.id, shop.terminal_id, "P-1")
    assert read.payments == check.payments
    refused(
        "check_conflict",
        lambda: commit(shop, card, "P-1", points=200_00, payments=[("1", 800_00)]),
    )
    # The name kept is the type's name then.
    shop.tx(
        lambda c: update_payment_type(
            c,
            tenant_id=shop.tenant.id,
            payment_type_id=types["cash"],
            name="Наличные рубли",
            actor=shop.actor,
        )
    )
    with read_only(shop.engine) as conn:
        read = pos.get_check(conn, shop.tenant.id, shop.terminal_id, "P-1")
    assert read.payments[0].payment_type == "Наличные"


def test_a_check_without_payments_is_as_before(shop: Shop) -> None:
    card = shop.card()
    check = commit(shop, card, "P-2")
    assert check.payments == ()


def test_bad_payments_are_refused_and_nothing_is_written(shop: Shop) -> None:
    types = setup_types(shop)
    card = shop.card()
    before = checks(shop), shop.get(card).balance_minor
    cases = [
        ([("1", 999_99)], "payments_mismatch"),  # a kopeck short of the money part
        ([("1", 500_00), ("2", 500_01)], "payments_mismatch"),
        ([("9", 1000_00)], "unknown_payment_code"),
        ([("7", 1000_00)], "invalid_payment"),  # points are the check's points
        ([("1", 0), ("2", 1000_00)], "invalid_payment"),
    ]
    for number, (payments, code) in enumerate(cases):
        refused(code, lambda p=payments, n=number: commit(shop, card, f"B-{n}", payments=p))
    shop.tx(
        lambda c: update_payment_type(
            c,
            tenant_id=shop.tenant.id,
            payment_type_id=types["card"],
            enabled=False,
            actor=shop.actor,
        )
    )
    refused(
        "payment_type_disabled",
        lambda: commit(shop, card, "B-9", payments=[("1", 500_00), ("2", 500_00)]),
    )
    assert (checks(shop), shop.get(card).balance_minor) == before
