"""Discount cards (SPEC C-1, C-2): numbers, issue, lookup, use, group operations.

Every test runs on SQLite and on PostgreSQL, each in a tenant of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit, system_account
from kopilka.ledger.holds import place_hold
from kopilka.ledger.posting import post_one, simple_transfer
from kopilka.ledger.schema import accounts
from kopilka.loyalty.cards import (
    CardView,
    block_cards,
    card_for_use,
    change_program,
    delete_unused,
    find_card,
    get_card,
    is_valid_luhn,
    issue_card,
    issue_range,
    luhn_check_digit,
    recompute_tier,
    set_expiry,
    unblock_cards,
    update_holder,
)
from kopilka.loyalty.programs import Program, add_tier, create_program, get_program
from kopilka.loyalty.schema import cards
from kopilka.tenancy.actions import Tenant, create_tenant
from kopilka.tenancy.schema import audit_events

T = TypeVar("T")
DAY = timedelta(days=1)


def luhn_ok(number: str) -> bool:
    """An independent Luhn check: the textbook sum over all digits, check digit included."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2
            d = d // 10 + d % 10
        total += d
    return total % 10 == 0


@dataclass
class Desk:
    engine: Engine
    tenant_id: int
    actor: Actor
    program: Program

    def tx(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    def issue(self, number: str, **kwargs: Any) -> CardView:
        return self.tx(
            lambda c: issue_card(
                c,
                tenant_id=self.tenant_id,
                program_id=kwargs.pop("program_id", self.program.id),
                number=number,
                actor=self.actor,
                **kwargs,
            )
        )

    def card(self, card_id: int) -> CardView:
        return self.tx(lambda c: get_card(c, self.tenant_id, card_id))

    def count(self, table: Any) -> int:
        return self.tx(
            lambda c: c.execute(
                select(func.count()).select_from(table).where(table.c.tenant_id == self.tenant_id)
            ).scalar_one()
        )

    def audits(self, action: str) -> Sequence[Any]:
        return self.tx(
            lambda c: c.execute(
                select(audit_events)
                .where(audit_events.c.tenant_id == self.tenant_id, audit_events.c.action == action)
                .order_by(audit_events.c.id)
            ).all()
        )

    def accrue(self, card: CardView, amount: int) -> None:
        def work(c: Connection) -> None:
            issuance = system_account(
                c,
                tenant_id=self.tenant_id,
                unit_code="BONUS",
                purpose="issuance",
                actor=self.actor,
            )
            post_one(
                c,
                tenant_id=self.tenant_id,
                spec=simple_transfer(
                    uuid.uuid4().hex,
                    debit_account_id=issuance.id,
                    credit_account_id=card.account_id,
                    amount_minor=amount,
                ),
                actor=self.actor,
            )

        self.tx(work)


def make_desk(engine: Engine, tenant_id: int, actor: Actor, unit: str = "BONUS") -> Desk:
    with engine.begin() as conn:
        create_unit(
            conn, tenant_id=tenant_id, code=unit, kind=UnitKind.POINTS, exponent=2, actor=actor
        )
        program = create_program(
            conn, tenant_id=tenant_id, name="Main", unit_code=unit, accrual_bp=500, actor=actor
        )
    return Desk(engine, tenant_id, actor, program)


@pytest.fixture
def desk(engine: Engine, tenant: Tenant, actor: Actor) -> Desk:
    return make_desk(engine, tenant.id, actor)


def refused(code: str, work: Callable[[], object], kind: type[KopilkaError] = KopilkaError) -> Any:
    with pytest.raises(kind) as caught:
        work()
    assert caught.value.code == code, caught.value
    return caught.value


# --------------------------------------------------------------------------- numbers


def test_luhn_against_known_numbers() -> None:
    assert is_valid_luhn("79927398713")
    assert luhn_check_digit("7992739871") == "3"
    assert not is_valid_luhn("79927398710")
    assert is_valid_luhn("4539 1488 0343 6467")  # a test Visa number, with spaces
    assert is_valid_luhn("4111-1111-1111-1111")
    assert not is_valid_luhn("4111111111111112")
    assert not is_valid_luhn("abc")
    assert not is_valid_luhn("0")
    for body in ("0", "1", "2000000000001", "123456789012345678901234567890"):
        assert luhn_ok(body + luhn_check_digit(body))
        assert is_valid_luhn(body + luhn_check_digit(body))


# --------------------------------------------------------------------------- issuing


def test_issue_single_card_with_holder(desk: Desk) -> None:
    card = desk.issue(
        "1234 5678-9012",
        holder_name="  Анна Петрова ",
        holder_phone="8 916 123-45-67",
        holder_email="Anna@Example.RU",
        expires_at=utcnow() + 365 * DAY,
    )
    assert card.number == "123456789012"
    assert card.status == "active"
    assert card.holder_name == "Анна Петрова"
    assert card.holder_phone == "+79161234567"
    assert card.holder_email == "Anna@example.ru"
    assert card.program_id == desk.program.id
    assert (card.balance_minor, card.held_minor, card.available_minor) == (0, 0, 0)
    assert (card.accumulation_minor, card.checks_count, card.debt_minor) == (0, 0, 0)
    wallet = desk.tx(
        lambda c: c.execute(select(accounts).where(accounts.c.id == card.account_id)).one()
    )
    assert (wallet.kind, wallet.policy, wallet.uses_lots) == ("wallet", "non_negative", True)
    assert (wallet.owner_type, wallet.owner_id, wallet.name) == (
        "card",
        "123456789012",
        "Card 123456789012",
    )
    (audit,) = desk.audits("card.issue")
    assert audit.object_id == str(card.id)


def test_issue_refuses_bad_input(desk: Desk) -> None:
    refused("invalid_card_number", lambda: desk.issue("12a4"), InvalidInput)
    refused("invalid_card_number", lambda: desk.issue("123"), InvalidInput)
    refused("invalid_card_number", lambda: desk.issue("1" * 33), InvalidInput)
    refused("invalid_phone", lambda: desk.issue("1111", holder_phone="call me"), InvalidInput)
    refused("invalid_phone", lambda: desk.issue("1111", holder_phone="12345"), InvalidInput)
    refused("invalid_email", lambda: desk.issue("1111", holder_email="anna@"), InvalidInput)
    refused(
        "program_not_found", lambda: desk.issue("1111", program_id=desk.program.id + 999), NotFound
    )
    assert desk.count(cards) == 0


def test_duplicate_number_is_refused_and_nothing_written(desk: Desk) -> None:
    desk.issue("5555 0001")
    before = (desk.count(cards), desk.count(accounts), len(desk.audits("account.create")))
    refused("card_exists", lambda: desk.issue("5555-0001"), Conflict)
    after = (desk.count(cards), desk.count(accounts), len(desk.audits("account.create")))
    assert after == before


def test_issue_range_without_check_digit(desk: Desk) -> None:
    seen: list[tuple[int, int]] = []
    ids = desk.tx(
        lambda c: issue_range(
            c,
            tenant_id=desk.tenant_id,
            program_id=desk.program.id,
            prefix="77",
            first=8,
            last=12,
            check_digit=False,
            actor=desk.actor,
            progress=lambda done, total: seen.append((done, total)),
        )
    )
    assert len(ids) == 5 and ids == sorted(ids)
    numbers = [desk.card(i).number for i in ids]
    assert numbers == ["7708", "7709", "7710", "7711", "7712"]
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    card = desk.card(ids[0])
    assert card.status == "active" and card.program_id == desk.program.id
    assert len(desk.audits("card.issue_range")) == 1
    assert len(desk.audits("account.create_batch")) == 1


def test_issue_range_with_check_digit(desk: Desk) -> None:
    ids = desk.tx(
        lambda c: issue_range(
            c,
            tenant_id=desk.tenant_id,
            program_id=desk.program.id,
            prefix="2000",
            first=1,
            last=3,
            width=8,
            check_digit=True,
            actor=desk.actor,
        )
    )
    numbers = [desk.card(i).number for i in ids]
    bodies = ["200000000001", "200000000002", "200000000003"]
    assert [n[:-1] for n in numbers] == bodies
    assert all(len(n) == 13 and luhn_ok(n) for n in numbers)
    assert numbers == ["2000000000016", "2000000000024", "2000000000032"]

    # Each card has a wallet of its own, owned by the card's number.
    def wallet(conn: Connection, account_id: int) -> tuple[Any, ...]:
        return tuple(
            conn.execute(
                select(accounts.c.owner_type, accounts.c.owner_id, accounts.c.uses_lots).where(
                    accounts.c.id == account_id
                )
            ).one()
        )

    for card_id in ids:
        card = desk.card(card_id)
        owner = desk.tx(partial(wallet, account_id=card.account_id))
        assert owner == ("card", card.number, True)


def test_issue_range_refuses_bad_ranges(desk: Desk) -> None:
    def attempt(**kwargs: Any) -> Callable[[], object]:
        args: dict[str, Any] = {"prefix": "1", "first": 1, "last": 10, "check_digit": False}
        args.update(kwargs)
        return lambda: desk.tx(
            lambda c: issue_range(
                c, tenant_id=desk.tenant_id, program_id=desk.program.id, actor=desk.actor, **args
            )
        )

    refused("invalid_card_range", attempt(first=0, last=100_000), InvalidInput)
    refused("invalid_card_range", attempt(first=5, last=4), InvalidInput)
    refused("invalid_card_range", attempt(prefix="12x"), InvalidInput)
    refused("invalid_card_range", attempt(last=1000, width=2), InvalidInput)
    refused("invalid_card_range", attempt(prefix="", last=9), InvalidInput)  # 1 digit long
    assert desk.count(cards) == 0


def test_range_overlapping_an_existing_card_is_refused_whole(desk: Desk) -> None:
    desk.issue("300015")
    desk.issue("300017")
    accounts_before = desk.count(accounts)
    error = refused(
        "card_exists",
        lambda: desk.tx(
            lambda c: issue_range(
                c,
                tenant_id=desk.tenant_id,
                program_id=desk.program.id,
                prefix="30",
                first=10,
                last=20,
                width=4,
                check_digit=False,
                actor=desk.actor,
            )
        ),
        Conflict,
    )
    assert "300015" in error.detail and "300017" in error.detail
    assert desk.count(cards) == 2
    assert desk.count(accounts) == accounts_before


def test_range_conflict_lists_at_most_ten(desk: Desk) -> None:
    def issue(first: int, last: int) -> list[int]:
        return desk.tx(
            lambda c: issue_range(
                c,
                tenant_id=desk.tenant_id,
                program_id=desk.program.id,
                prefix="9",
                first=first,
                last=last,
                width=5,
                check_digit=True,
                actor=desk.actor,
            )
        )

    issue(1, 30)
    error = refused("card_exists", lambda: issue(20, 50), Conflict)
    assert error.params["count"] == 11
    assert len(error.params["numbers"]) == 10
    assert "and 1 more" in error.detail
    assert desk.count(cards) == 30


def test_ten_thousand_cards_are_quick(desk: Desk, engine: Engine) -> None:
    started = time.perf_counter()
    ids = desk.tx(
        lambda c: issue_range(
            c,
            tenant_id=desk.tenant_id,
            program_id=desk.program.id,
            prefix="4",
            first=1,
            last=10_000,
            width=8,
            check_digit=True,
            actor=desk.actor,
        )
    )
    elapsed = time.perf_counter() - started
    print(f"\n10,000 cards on {engine.dialect.name}: {elapsed:.2f} s")
    assert len(ids) == len(set(ids)) == 10_000
    assert desk.count(cards) == 10_000
    assert elapsed < 10
    last = "400010000" + luhn_check_digit("400010000")
    assert desk.tx(lambda c: find_card(c, desk.tenant_id, number=last)).id == ids[-1]


# --------------------------------------------------------------------------- lookup and use


def test_find_by_number_and_by_phone(desk: Desk) -> None:
    old = desk.issue("1000 0001", holder_phone="+7 (916) 123-45-67")
    newer = desk.issue(
        "1000 0002", holder_phone="8-916-123-45-67", issued_at=utcnow() - timedelta(minutes=1)
    )
    newest_blocked = desk.issue("1000 0003", holder_phone="79161234567")
    desk.tx(
        lambda c: block_cards(
            c,
            tenant_id=desk.tenant_id,
            card_ids=[newest_blocked.id],
            reason="lost",
            actor=desk.actor,
        )
    )
    by_number = desk.tx(lambda c: find_card(c, desk.tenant_id, number="1000-0001"))
    assert by_number.id == old.id
    # Of the active cards on the phone the most recently issued: "old" was issued last.
    by_phone = desk.tx(lambda c: find_card(c, desk.tenant_id, phone="9161234567"))
    assert by_phone.id == old.id
    assert newer.holder_phone == "+79161234567"
    refused(
        "card_not_found", lambda: desk.tx(lambda c: find_card(c, desk.tenant_id, number="9999"))
    )
    refused(
        "card_not_found",
        lambda: desk.tx(lambda c: find_card(c, desk.tenant_id, phone="+44 20 7946 0000")),
    )


def test_blocked_and_expired_cards_are_refused_for_use(desk: Desk) -> None:
    now = utcnow()
    good = desk.issue("4000 1111")
    blocked = desk.issue("4000 2222")
    dated = desk.issue("4000 3333", expires_at=now + DAY)
    desk.tx(
        lambda c: block_cards(
            c, tenant_id=desk.tenant_id, card_ids=[blocked.id], reason="stolen", actor=desk.actor
        )
    )
    used = desk.tx(lambda c: card_for_use(c, desk.tenant_id, "4000-1111", now=now))
    assert used.id == good.id
    error = refused(
        "card_blocked",
        lambda: desk.tx(lambda c: card_for_use(c, desk.tenant_id, "40002222", now=now)),
        Refused,
    )
    assert error.params["reason"] == "stolen" and "stolen" in error.detail
    # Still active in the table, but past its date: expired already.
    assert desk.tx(lambda c: card_for_use(c, desk.tenant_id, "40003333", now=now)).id == dated.id
    refused(
        "card_expired",
        lambda: desk.tx(lambda c: card_for_use(c, desk.tenant_id, "40003333", now=now + 2 * DAY)),
        Refused,
    )
    assert desk.card(dated.id).status == "active"
    refused(
        "card_not_found",
        lambda: desk.tx(lambda c: card_for_use(c, desk.tenant_id, "40004444", now=now)),
        NotFound,
    )


def test_card_shows_its_wallet(desk: Desk) -> None:
    card = desk.issue("6000 0001")
    desk.accrue(card, 1500)
    seen = desk.card(card.id)
    assert (seen.balance_minor, seen.held_minor, seen.available_minor) == (1500, 0, 1500)


# --------------------------------------------------------------------------- group operations


def test_block_unblock_counts_and_audit(desk: Desk) -> None:
    ids = [desk.issue(f"7000{n}").id for n in range(4)]
    now = utcnow()

    def block(selection: list[int]) -> int:
        return desk.tx(
            lambda c: block_cards(
                c, tenant_id=desk.tenant_id, card_ids=selection, reason="audit", actor=desk.actor
            )
        )

    assert block(ids[:2]) == 2
    assert block(ids[:3]) == 1  # two were blocked already
    assert [desk.card(i).status for i in ids] == ["blocked", "blocked", "blocked", "active"]
    assert desk.card(ids[0]).blocked_reason == "audit"
    audits = desk.audits("card.block")
    assert len(audits) == 2
    assert audits[1].details["changed"] == 1
    assert str(ids[2]) in audits[1].details["card_ids"]

    desk.tx(
        lambda c: set_expiry(
            c, tenant_id=desk.tenant_id, card_ids=[ids[1]], expires_at=now - DAY, actor=desk.actor
        )
    )
    unblocked = desk.tx(
        lambda c: unblock_cards(c, tenant_id=desk.tenant_id, card_ids=ids, actor=desk.actor)
    )
    assert unblocked == 3
    assert [desk.card(i).status for i in ids] == ["active", "expired", "active", "active"]
    assert desk.card(ids[0]).blocked_reason is None
    assert len(desk.audits("card.unblock")) == 1
    refused(
        "invalid_card",
        lambda: desk.tx(
            lambda c: block_cards(
                c, tenant_id=desk.tenant_id, card_ids=ids, reason="  ", actor=desk.actor
            )
        ),
        InvalidInput,
    )


def test_set_expiry(desk: Desk) -> None:
    now = utcnow()
    ids = [desk.issue(f"8000{n}").id for n in range(3)]
    later = now + 30 * DAY

    def expire(selection: list[int], moment: Any) -> int:
        return desk.tx(
            lambda c: set_expiry(
                c,
                tenant_id=desk.tenant_id,
                card_ids=selection,
                expires_at=moment,
                actor=desk.actor,
                now=now,
            )
        )

    assert expire(ids, later) == 3
    assert expire(ids, later) == 0  # nothing to change
    assert desk.card(ids[0]).expires_at == later
    assert expire(ids[:1], now - DAY) == 1
    assert desk.card(ids[0]).status == "expired"
    assert expire(ids[:1], None) == 1
    card = desk.card(ids[0])
    assert (card.status, card.expires_at) == ("active", None)
    assert len(desk.audits("card.set_expiry")) == 4


def test_change_program(desk: Desk, engine: Engine) -> None:
    with engine.begin() as conn:
        gold = create_program(
            conn, tenant_id=desk.tenant_id, name="Gold", unit_code="BONUS", actor=desk.actor
        )
        tier = add_tier(
            conn,
            tenant_id=desk.tenant_id,
            program_id=gold.id,
            name="Base",
            threshold_minor=0,
            discount_bp=300,
            actor=desk.actor,
        )
        create_unit(
            conn,
            tenant_id=desk.tenant_id,
            code="MILES",
            kind=UnitKind.POINTS,
            exponent=0,
            actor=desk.actor,
        )
        miles = create_program(
            conn, tenant_id=desk.tenant_id, name="Miles", unit_code="MILES", actor=desk.actor
        )
    ids = [desk.issue(f"9100{n}").id for n in range(3)]

    def move(selection: list[int], program_id: int) -> int:
        return desk.tx(
            lambda c: change_program(
                c,
                tenant_id=desk.tenant_id,
                card_ids=selection,
                program_id=program_id,
                actor=desk.actor,
            )
        )

    assert move(ids[:2], gold.id) == 2
    assert move(ids, gold.id) == 1
    assert {desk.card(i).program_id for i in ids} == {gold.id}
    assert {desk.card(i).tier_id for i in ids} == {tier.id}
    refused("program_unit_mismatch", lambda: move(ids, miles.id), InvalidInput)
    assert {desk.card(i).program_id for i in ids} == {gold.id}
    refused("program_not_found", lambda: move(ids, miles.id + 999), NotFound)
    assert len(desk.audits("card.change_program")) == 2


def test_recompute_tier(desk: Desk) -> None:
    with desk.engine.begin() as conn:
        silver = add_tier(
            conn,
            tenant_id=desk.tenant_id,
            program_id=desk.program.id,
            name="Silver",
            threshold_minor=10_000_00,
            discount_bp=300,
            actor=desk.actor,
        )
    card = desk.issue("9200 0001")
    assert card.tier_id is None

    def recompute() -> Any:
        return desk.tx(
            lambda c: recompute_tier(c, get_program(c, desk.tenant_id, desk.program.id), card.id)
        )

    assert recompute() is None
    desk.tx(
        lambda c: c.execute(
            cards.update().where(cards.c.id == card.id).values(accumulation_minor=12_000_00)
        )
    )
    assert recompute() == silver
    assert desk.card(card.id).tier_id == silver.id


def test_delete_unused_leaves_used_cards(desk: Desk, engine: Engine) -> None:
    fresh = desk.issue("9300 0001")
    accrued = desk.issue("9300 0002")
    held = desk.issue("9300 0003")
    desk.accrue(accrued, 100)
    desk.accrue(held, 100)
    # The accrual made entries on "held"; a hold alone would too: "held" is used either way.
    with engine.begin() as conn:
        redeemed = system_account(
            conn, tenant_id=desk.tenant_id, unit_code="BONUS", purpose="redeemed", actor=desk.actor
        )
        place_hold(
            conn,
            tenant_id=desk.tenant_id,
            idempotency_key=uuid.uuid4().hex,
            debit_account_id=held.account_id,
            credit_account_id=redeemed.id,
            amount_minor=50,
            actor=desk.actor,
        )
    accounts_before = desk.count(accounts)
    deleted = desk.tx(
        lambda c: delete_unused(
            c,
            tenant_id=desk.tenant_id,
            card_ids=[fresh.id, accrued.id, held.id],
            actor=desk.actor,
        )
    )
    assert deleted == 1
    refused("card_not_found", lambda: desk.card(fresh.id), NotFound)
    assert desk.card(accrued.id).balance_minor == 100
    assert desk.card(held.id).held_minor == 50
    assert desk.count(accounts) == accounts_before  # the wallet stays in the ledger
    (audit,) = desk.audits("card.delete_unused")
    assert "93000001" in audit.details["numbers"]
    # The number is free again, with a new wallet.
    again = desk.issue("9300 0001")
    assert again.account_id != fresh.account_id


def test_update_holder(desk: Desk) -> None:
    card = desk.issue("9400 0001", holder_name="Ivan")
    updated = desk.tx(
        lambda c: update_holder(
            c,
            tenant_id=desk.tenant_id,
            card_id=card.id,
            name="Ivan Petrov",
            phone="+7 916 000 11 22",
            email="ivan@example.com",
            actor=desk.actor,
        )
    )
    assert (updated.holder_name, updated.holder_phone, updated.holder_email) == (
        "Ivan Petrov",
        "+79160001122",
        "ivan@example.com",
    )
    found = desk.tx(lambda c: find_card(c, desk.tenant_id, phone="89160001122"))
    assert found.id == card.id
    cleared = desk.tx(
        lambda c: update_holder(
            c,
            tenant_id=desk.tenant_id,
            card_id=card.id,
            name=None,
            phone="",
            email=None,
            actor=desk.actor,
        )
    )
    assert (cleared.holder_name, cleared.holder_phone, cleared.holder_email) == (None, None, None)
    first, _ = desk.audits("card.update_holder")
    assert "Ivan" not in str(first.details)  # no personal data in the audit


def test_other_tenants_cards_are_not_found(desk: Desk, engine: Engine, actor: Actor) -> None:
    mine = desk.issue("9500 0001")
    with engine.begin() as conn:
        other_tenant = create_tenant(
            conn, slug=f"t-{uuid.uuid4().hex[:12]}", name="Other", actor=actor
        )
    other = make_desk(engine, other_tenant.id, actor)
    theirs = other.issue("9500 0001")  # the same number in another tenant is fine
    assert theirs.id != mine.id

    operations: list[Callable[[Connection], object]] = [
        lambda c: block_cards(
            c, tenant_id=desk.tenant_id, card_ids=[mine.id, theirs.id], reason="x", actor=actor
        ),
        lambda c: unblock_cards(c, tenant_id=desk.tenant_id, card_ids=[theirs.id], actor=actor),
        lambda c: set_expiry(
            c, tenant_id=desk.tenant_id, card_ids=[mine.id, theirs.id], expires_at=None, actor=actor
        ),
        lambda c: change_program(
            c,
            tenant_id=desk.tenant_id,
            card_ids=[mine.id, theirs.id],
            program_id=desk.program.id,
            actor=actor,
        ),
        lambda c: delete_unused(
            c, tenant_id=desk.tenant_id, card_ids=[mine.id, theirs.id, 10**12], actor=actor
        ),
        lambda c: get_card(c, desk.tenant_id, theirs.id),
        lambda c: update_holder(
            c,
            tenant_id=desk.tenant_id,
            card_id=theirs.id,
            name="x",
            phone=None,
            email=None,
            actor=actor,
        ),
    ]
    for operation in operations:
        error = refused("card_not_found", partial(desk.tx, operation), NotFound)
        assert mine.id not in error.params.get("card_ids", [])
    assert desk.card(mine.id).status == "active"
    assert other.card(theirs.id).status == "active"
    assert desk.count(cards) == 1
    for action in ("card.block", "card.unblock", "card.set_expiry", "card.delete_unused"):
        assert desk.audits(action) == []
