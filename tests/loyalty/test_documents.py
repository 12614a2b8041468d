"""Manual accrual and write-off documents (SPEC C-5): all or nothing, once per document id."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit
from kopilka.ledger.lots import account_lots
from kopilka.ledger.posting import load_transfers
from kopilka.ledger.schema import transfers
from kopilka.loyalty import documents
from kopilka.loyalty.cards import CardView, block_cards, issue_card
from kopilka.loyalty.programs import create_program
from kopilka.tenancy.schema import audit_events

from .conftest import Shop


def accrue(shop: Shop, cards: list[CardView], amount: int, doc: str, **extra: Any) -> Any:
    extra.setdefault("reason", "компенсация за задержку")
    return shop.tx(
        lambda c: documents.accrue_points(
            c,
            tenant_id=shop.tenant.id,
            card_numbers=[card.number for card in cards],
            amount_minor=amount,
            actor=shop.actor,
            document_id=doc,
            **extra,
        )
    )


def write_off(shop: Shop, cards: list[CardView], amount: int, doc: str, **extra: Any) -> Any:
    extra.setdefault("reason", "ошибочное начисление")
    return shop.tx(
        lambda c: documents.write_off_points(
            c,
            tenant_id=shop.tenant.id,
            card_numbers=[card.number for card in cards],
            amount_minor=amount,
            actor=shop.actor,
            document_id=doc,
            **extra,
        )
    )


def refused(code: str, work: object) -> KopilkaError:
    with pytest.raises(KopilkaError) as caught:
        work()  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    return caught.value


def balances(shop: Shop, cards: list[CardView]) -> list[int]:
    return [shop.get(card).balance_minor for card in cards]


def transfer_count(shop: Shop) -> int:
    with read_only(shop.engine) as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(transfers)
                .where(transfers.c.tenant_id == shop.tenant.id)
            ).scalar_one()
        )


def audits(shop: Shop, action: str) -> list[Any]:
    with read_only(shop.engine) as conn:
        return list(
            conn.execute(
                select(audit_events).where(
                    audit_events.c.tenant_id == shop.tenant.id, audit_events.c.action == action
                )
            )
        )


def test_accrual_to_three_cards_gives_each_a_lot_with_the_programs_expiry(shop: Shop) -> None:
    cards = [shop.card(), shop.card(), shop.card()]
    now = utcnow() + timedelta(minutes=1)
    doc = accrue(shop, cards, 150_00, "D-1", now=now)
    assert doc.replayed is False
    assert doc.kind == "manual_accrual"
    assert doc.unit_code == "BONUS"
    assert doc.count == 3 and doc.total_minor == 450_00
    assert doc.card_numbers == tuple(sorted(card.number for card in cards))
    assert balances(shop, cards) == [150_00] * 3
    with read_only(shop.engine) as conn:
        for card in cards:
            (lot,) = account_lots(conn, shop.tenant.id, card.account_id)
            assert lot.amount_minor == 150_00
            assert lot.available_at == now
            assert lot.expires_at == now + timedelta(days=30)  # the program's lifetime
        posted = load_transfers(conn, shop.tenant.id, list(doc.transfer_ids))
    assert {p.kind for p in posted} == {"manual_accrual"}
    assert {p.description for p in posted} == {"компенсация за задержку"}
    assert [p.meta["card"] for p in posted if p.meta] == list(doc.card_numbers)
    assert {p.meta["document"] for p in posted if p.meta} == {"D-1"}
    (audit,) = audits(shop, "points.accrue")
    assert audit.object_id == "D-1"
    assert audit.details["count"] == 3
    assert audit.details["amount_minor"] == 150_00
    assert audit.details["reason"] == "компенсация за задержку"
    shop.assert_clean()


def test_an_accrual_follows_the_activation_delay_and_may_set_its_own_lifetime(
    shop: Shop,
) -> None:
    def delayed(conn: Any) -> None:
        from kopilka.loyalty.schema import loyalty_programs

        conn.execute(
            loyalty_programs.update()
            .where(loyalty_programs.c.id == shop.program.id)
            .values(activation_delay_days=3)
        )

    shop.tx(delayed)
    card, other = shop.card(), shop.card()
    now = utcnow() + timedelta(minutes=1)
    accrue(shop, [card], 10_00, "D-7", lifetime_days=7, now=now)
    accrue(shop, [other], 10_00, "D-ever", lifetime_days=None, now=now)
    with read_only(shop.engine) as conn:
        (lot,) = account_lots(conn, shop.tenant.id, card.account_id)
        (forever,) = account_lots(conn, shop.tenant.id, other.account_id)
    assert lot.available_at == now + timedelta(days=3)
    assert lot.expires_at == now + timedelta(days=3 + 7)
    assert forever.available_at == now + timedelta(days=3) and forever.expires_at is None
    assert shop.get(card).available_minor == 0  # not spendable yet
    refused("invalid_document", lambda: accrue(shop, [card], 1, "D-0", lifetime_days=0))


def test_write_off(shop: Shop) -> None:
    cards = [shop.card(), shop.card()]
    accrue(shop, cards, 100_00, "in")
    doc = write_off(shop, cards, 40_00, "out")
    assert doc.kind == "manual_write_off" and doc.count == 2
    assert balances(shop, cards) == [60_00, 60_00]
    with read_only(shop.engine) as conn:
        posted = load_transfers(conn, shop.tenant.id, list(doc.transfer_ids))
    assert {p.kind for p in posted} == {"manual_write_off"}
    assert {p.description for p in posted} == {"ошибочное начисление"}
    (audit,) = audits(shop, "points.write_off")
    assert audit.details["document"] == "out" and audit.details["count"] == 2
    shop.assert_clean()


def test_a_write_off_over_one_cards_balance_refuses_all_and_writes_nothing(shop: Shop) -> None:
    rich, poor, also_rich = shop.card(), shop.card(), shop.card()
    accrue(shop, [rich, also_rich], 100_00, "in-1")
    accrue(shop, [poor], 10_00, "in-2")
    before, count = balances(shop, [rich, poor, also_rich]), transfer_count(shop)
    error = refused(
        "insufficient_points", lambda: write_off(shop, [rich, poor, also_rich], 50_00, "w")
    )
    assert poor.number in error.detail and rich.number not in error.detail
    assert error.params["card_numbers"] == [poor.number]
    assert balances(shop, [rich, poor, also_rich]) == before
    assert transfer_count(shop) == count
    assert audits(shop, "points.write_off") == []
    shop.assert_clean()
    # The same document id is free: nothing of it was kept.
    write_off(shop, [rich, poor, also_rich], 10_00, "w")
    assert balances(shop, [rich, poor, also_rich]) == [90_00, 0, 90_00]
    shop.assert_clean()


def test_a_refused_write_off_leaves_nothing_even_if_the_caller_commits(shop: Shop) -> None:
    rich, poor = shop.card(), shop.card()
    accrue(shop, [rich], 100_00, "in-1")
    count = transfer_count(shop)
    # engine.begin() commits on leaving, whatever happened inside.
    with shop.engine.begin() as conn, pytest.raises(KopilkaError):
        documents.write_off_points(
            conn,
            tenant_id=shop.tenant.id,
            card_numbers=[rich.number, poor.number],
            amount_minor=50_00,
            reason="проверка",
            actor=shop.actor,
            document_id="w-commit",
        )
    assert balances(shop, [rich, poor]) == [100_00, 0]
    assert transfer_count(shop) == count
    shop.assert_clean()


def test_a_document_replays(shop: Shop) -> None:
    cards = [shop.card(), shop.card()]
    first = accrue(shop, cards, 25_00, "R-1")
    again = accrue(shop, list(reversed(cards)), 25_00, " R-1 ")  # same cards, other order
    assert again.replayed is True
    assert again.transfer_ids == first.transfer_ids
    assert again.card_numbers == first.card_numbers
    assert (again.amount_minor, again.reason, again.kind) == (25_00, first.reason, first.kind)
    assert again.posted_at == first.posted_at
    assert balances(shop, cards) == [25_00, 25_00]
    assert len(audits(shop, "points.accrue")) == 1
    out = write_off(shop, cards, 5_00, "R-2")
    assert write_off(shop, cards, 5_00, "R-2").transfer_ids == out.transfer_ids
    assert balances(shop, cards) == [20_00, 20_00]
    shop.assert_clean()


def test_the_same_document_id_with_other_content_conflicts(shop: Shop) -> None:
    a, b, c = shop.card(), shop.card(), shop.card()
    accrue(shop, [a, b], 25_00, "C-1")
    refused("document_conflict", lambda: accrue(shop, [a, b], 26_00, "C-1"))
    refused("document_conflict", lambda: accrue(shop, [a, c], 25_00, "C-1"))
    refused("document_conflict", lambda: accrue(shop, [a, b, c], 25_00, "C-1"))
    refused("document_conflict", lambda: accrue(shop, [a, b], 25_00, "C-1", reason="другая"))
    refused("document_conflict", lambda: accrue(shop, [a, b], 25_00, "C-1", lifetime_days=5))
    refused("document_conflict", lambda: write_off(shop, [a, b], 25_00, "C-1"))
    assert balances(shop, [a, b, c]) == [25_00, 25_00, 0]
    shop.assert_clean()


def test_a_reason_and_a_positive_amount_are_required(shop: Shop) -> None:
    card = shop.card()
    for reason in ("", "   ", "x" * 501):
        refused("reason_required", lambda r=reason: accrue(shop, [card], 1_00, "E", reason=r))
    refused("reason_required", lambda: write_off(shop, [card], 1_00, "E", reason=""))
    for amount in (0, -5):
        refused("invalid_amount", lambda a=amount: accrue(shop, [card], a, "E"))
    refused("invalid_document", lambda: accrue(shop, [], 1_00, "E"))
    refused("invalid_document", lambda: accrue(shop, [card], 1_00, " "))
    refused("invalid_document", lambda: accrue(shop, [card, card], 1_00, "E"))
    assert accrue(shop, [card], 1_00, "E", reason="x" * 500).count == 1


def test_unknown_cards_are_named_and_nothing_is_written(shop: Shop) -> None:
    card = shop.card()
    with pytest.raises(KopilkaError) as caught:
        shop.tx(
            lambda c: documents.accrue_points(
                c,
                tenant_id=shop.tenant.id,
                card_numbers=[card.number, "99990001", "9999-0002"],
                amount_minor=10_00,
                reason="акция",
                actor=shop.actor,
                document_id="U-1",
            )
        )
    assert caught.value.code == "card_not_found"
    assert "99990001" in caught.value.detail and "99990002" in caught.value.detail
    assert caught.value.params["card_numbers"] == ["99990001", "99990002"]
    assert shop.get(card).balance_minor == 0
    assert transfer_count(shop) == 0


def test_a_blocked_card_refuses_the_document(shop: Shop) -> None:
    good, bad = shop.card(), shop.card()
    accrue(shop, [good, bad], 10_00, "in")
    shop.tx(
        lambda c: block_cards(
            c, tenant_id=shop.tenant.id, card_ids=[bad.id], reason="утеряна", actor=shop.actor
        )
    )
    error = refused("card_blocked", lambda: accrue(shop, [good, bad], 10_00, "B-1"))
    assert bad.number in error.detail and good.number not in error.detail
    refused("card_blocked", lambda: write_off(shop, [good, bad], 1_00, "B-2"))
    assert balances(shop, [good, bad]) == [10_00, 10_00]
    shop.assert_clean()


def test_cards_of_programs_with_different_units_are_refused(shop: Shop) -> None:
    def other_program(conn: Any) -> CardView:
        create_unit(
            conn,
            tenant_id=shop.tenant.id,
            code="MILES",
            kind=UnitKind.POINTS,
            name="миль",
            exponent=0,
            actor=shop.actor,
        )
        program = create_program(
            conn, tenant_id=shop.tenant.id, name="Мили", unit_code="MILES", actor=shop.actor
        )
        return issue_card(
            conn,
            tenant_id=shop.tenant.id,
            program_id=program.id,
            number="55500001",
            actor=shop.actor,
        )

    miles = shop.tx(other_program)
    bonus = shop.card()
    refused("invalid_document", lambda: accrue(shop, [bonus, miles], 10, "M-1"))
    assert transfer_count(shop) == 0
    doc = accrue(shop, [miles], 10, "M-2")
    assert doc.unit_code == "MILES" and shop.get(miles).balance_minor == 10
    with read_only(shop.engine) as conn:
        (lot,) = account_lots(conn, shop.tenant.id, miles.account_id)
    assert lot.expires_at is None  # that program's points never expire
    shop.assert_clean()
