"""Each bad request is refused with its own error code and writes nothing (SPEC L-1..L-5).

"Nothing" is checked hard: the refused call runs inside a transaction that is then
*committed*, and the tenant's rows (transfers, entries, holds, lots, limits, every
account's figures) are compared before and after. So a function that wrote something
before it noticed the problem would be caught, not hidden by a rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection

from kopilka.core.clock import utcnow
from kopilka.core.errors import KopilkaError
from kopilka.core.money import UnitKind, parse_amount
from kopilka.ledger.accounts import Policy, create_account, get_account, get_unit
from kopilka.ledger.holds import HoldView, capture_hold, expire_holds, place_hold, void_hold
from kopilka.ledger.posting import (
    EntrySpec,
    PostedTransfer,
    TransferSpec,
    post_one,
    post_transfers,
    simple_transfer,
)

from .conftest import Book, key, new_tenant


class Setup:
    """A tenant with points and roubles, some money in its wallets, and a pending hold."""

    def __init__(self, book: Book) -> None:
        self.book = book
        self.now = utcnow()
        self.points = book.account("BONUS", uses_lots=True)
        self.rub = book.account("RUB")
        self.other_rub = book.account("RUB")
        self.subscriber = book.account("RUB", policy=Policy.CREDIT_LIMIT, credit_limit_minor=100_00)
        self.issuance = book.system("issuance", "BONUS")
        self.redeemed = book.system("redeemed", "BONUS")
        self.cash = book.system("cash", "RUB")
        self.revenue = book.system("revenue", "RUB")
        self.post(self.issuance, self.points, 500)
        self.post(self.cash, self.rub, 300_00)
        self.hold = self.place(self.rub, 100_00)

    def post(self, debit: int, credit: int, amount: int, k: str | None = None) -> PostedTransfer:
        spec = simple_transfer(
            k or key(), debit_account_id=debit, credit_account_id=credit, amount_minor=amount
        )
        return self.book.post(spec, now=self.now)

    def place(self, account: int, amount: int, **extra: Any) -> HoldView:
        return self.book.tx(lambda c: self.place_in(c, account, amount, **extra))

    def place_in(self, conn: Connection, account: int, amount: int, **extra: Any) -> HoldView:
        extra.setdefault("now", self.now)
        return place_hold(
            conn,
            tenant_id=self.book.tenant_id,
            idempotency_key=key(),
            debit_account_id=account,
            credit_account_id=self.revenue,
            amount_minor=amount,
            actor=self.book.actor,
            **extra,
        )

    def refuses(self, code: str, work: Callable[[Connection], Any]) -> KopilkaError:
        """``work`` raises ``code``; committing what it did afterwards changes no row."""
        before = self.book.counts()
        with self.book.engine.begin() as conn, pytest.raises(KopilkaError) as caught:
            work(conn)
        assert caught.value.code == code, f"expected {code}, got {caught.value!r}"
        assert self.book.counts() == before, "a refused request left rows behind"
        self.book.assert_clean()
        return caught.value

    def refuses_spec(self, code: str, spec: TransferSpec) -> None:
        """Refused alone (raised), and refused inside a batch (an outcome) beside a good one."""
        tenant_id, actor = self.book.tenant_id, self.book.actor
        self.refuses(
            code, lambda c: post_one(c, tenant_id=tenant_id, spec=spec, actor=actor, now=self.now)
        )
        good = simple_transfer(
            key(), debit_account_id=self.cash, credit_account_id=self.other_rub, amount_minor=1
        )
        before = self.book.get(self.other_rub).balance_minor
        with self.book.engine.begin() as conn:
            bad, fine = post_transfers(
                conn, tenant_id=tenant_id, specs=[spec, good], actor=actor, now=self.now
            )
        assert isinstance(bad, KopilkaError) and bad.code == code, bad
        assert isinstance(fine, PostedTransfer), fine
        assert self.book.get(self.other_rub).balance_minor == before + 1
        self.book.assert_clean()


@pytest.fixture
def s(book: Book) -> Setup:
    return Setup(book)


def test_unknown_unit(s: Setup) -> None:
    tenant_id, actor = s.book.tenant_id, s.book.actor
    s.refuses("unknown_unit", lambda c: get_unit(c, tenant_id, "NOPE"))
    s.refuses(
        "unknown_unit",
        lambda c: create_account(
            c, tenant_id=tenant_id, unit_code="NOPE", kind="wallet", actor=actor
        ),
    )
    # A currency the tenant did not enable is just as unknown.
    s.refuses(
        "unknown_unit",
        lambda c: create_account(
            c, tenant_id=tenant_id, unit_code="EUR", kind="wallet", actor=actor
        ),
    )


def test_mixed_units_in_a_two_entry_transfer(s: Setup) -> None:
    spec = TransferSpec(key(), (EntrySpec(s.rub, -10), EntrySpec(s.points, 10)))
    s.refuses_spec("mixed_units", spec)
    s.refuses(
        "mixed_units",
        lambda c: place_hold(
            c,
            tenant_id=s.book.tenant_id,
            idempotency_key=key(),
            debit_account_id=s.points,
            credit_account_id=s.revenue,
            amount_minor=1,
            actor=s.book.actor,
            now=s.now,
        ),
    )


def test_zero_amount(s: Setup) -> None:
    s.refuses_spec("zero_amount", TransferSpec(key(), (EntrySpec(s.rub, 0), EntrySpec(s.cash, 0))))
    s.refuses_spec(
        "zero_amount",
        TransferSpec(
            key(), (EntrySpec(s.rub, -5), EntrySpec(s.other_rub, 5), EntrySpec(s.revenue, 0))
        ),
    )


def test_negative_amount_in_simple_transfer(s: Setup) -> None:
    for amount in (-1, 0):
        s.refuses(
            "amount_not_positive",
            lambda _c, amount=amount: simple_transfer(
                key(), debit_account_id=s.rub, credit_account_id=s.revenue, amount_minor=amount
            ),
        )
    s.refuses("amount_not_positive", lambda c: s.place_in(c, s.rub, -5))


def test_unbalanced_multi_entry_transfer(s: Setup) -> None:
    spec = TransferSpec(
        key(), (EntrySpec(s.rub, -10), EntrySpec(s.other_rub, 4), EntrySpec(s.revenue, 5))
    )
    error = s.refuses(
        "unbalanced_transfer",
        lambda c: post_one(c, tenant_id=s.book.tenant_id, spec=spec, actor=s.book.actor),
    )
    assert error.params.get("unit") == "RUB"
    s.refuses_spec("unbalanced_transfer", spec)
    # Balanced in roubles, unbalanced in points: each unit must sum to zero on its own.
    two_units = TransferSpec(
        key(),
        (
            EntrySpec(s.rub, -10),
            EntrySpec(s.revenue, 10),
            EntrySpec(s.points, -3),
            EntrySpec(s.redeemed, 2),
        ),
    )
    s.refuses_spec("unbalanced_transfer", two_units)


def test_spending_past_a_limit(s: Setup) -> None:
    # The wallet has 300.00, of which 100.00 are held: 200.00 are available.
    over = simple_transfer(
        key(), debit_account_id=s.rub, credit_account_id=s.revenue, amount_minor=200_01
    )
    s.refuses_spec("insufficient_funds", over)
    s.refuses("insufficient_funds", lambda c: s.place_in(c, s.rub, 200_01))
    # Points: 500 in one lot.
    s.refuses_spec(
        "insufficient_funds",
        simple_transfer(
            key(), debit_account_id=s.points, credit_account_id=s.redeemed, amount_minor=501
        ),
    )
    # The subscriber may owe up to 100.00.
    s.refuses_spec(
        "credit_limit_exceeded",
        simple_transfer(
            key(), debit_account_id=s.subscriber, credit_account_id=s.revenue, amount_minor=100_01
        ),
    )
    # In a multi-entry transfer one leg over its limit refuses the whole transfer.
    s.refuses_spec(
        "credit_limit_exceeded",
        TransferSpec(
            key(),
            (
                EntrySpec(s.rub, -1),
                EntrySpec(s.subscriber, -100_01),
                EntrySpec(s.revenue, 100_02),
            ),
        ),
    )


def test_capturing_more_than_a_hold(s: Setup) -> None:
    s.refuses(
        "capture_exceeds_hold",
        lambda c: capture_hold(
            c,
            tenant_id=s.book.tenant_id,
            hold_id=s.hold.id,
            idempotency_key=key(),
            amount_minor=100_01,
            actor=s.book.actor,
            now=s.now,
        ),
    )


def test_capturing_a_voided_hold(s: Setup) -> None:
    s.book.tx(
        lambda c: void_hold(
            c,
            tenant_id=s.book.tenant_id,
            hold_id=s.hold.id,
            idempotency_key=key(),
            actor=s.book.actor,
            now=s.now,
        )
    )
    s.refuses(
        "hold_voided",
        lambda c: capture_hold(
            c,
            tenant_id=s.book.tenant_id,
            hold_id=s.hold.id,
            idempotency_key=key(),
            actor=s.book.actor,
            now=s.now,
        ),
    )


def test_capturing_an_expired_hold(s: Setup) -> None:
    hold = s.place(s.rub, 10_00, expires_at=s.now + timedelta(minutes=1))
    later = s.now + timedelta(minutes=1)  # the very moment it lapses

    def capture(c: Connection) -> Any:
        return capture_hold(
            c,
            tenant_id=s.book.tenant_id,
            hold_id=hold.id,
            idempotency_key=key(),
            actor=s.book.actor,
            now=later,
        )

    # Lapsed but not yet swept: refused all the same.
    s.refuses("hold_expired", capture)
    # And once the sweep has written it off.
    assert (
        s.book.tx(
            lambda c: expire_holds(c, tenant_id=s.book.tenant_id, actor=s.book.actor, now=later)
        )
        == 1
    )
    s.refuses("hold_expired", capture)
    assert s.book.hold(hold.id).status == "expired"


def test_another_tenants_account(s: Setup) -> None:
    other = Book(s.book.engine, new_tenant(s.book.engine, s.book.actor).id, s.book.actor)
    foreign = other.account("RUB")
    foreign_cash = other.system("cash", "RUB")
    other.post(
        simple_transfer(
            key(), debit_account_id=foreign_cash, credit_account_id=foreign, amount_minor=50_00
        )
    )
    foreign_transfer = other.post(
        simple_transfer(
            key(), debit_account_id=foreign_cash, credit_account_id=foreign, amount_minor=1_00
        )
    )
    other_before = other.counts()
    tenant_id, actor = s.book.tenant_id, s.book.actor
    # A correction may only name a transfer of its own tenant.
    s.refuses_spec(
        "transfer_not_found",
        simple_transfer(
            key(),
            debit_account_id=s.cash,
            credit_account_id=s.rub,
            amount_minor=1,
            corrects_transfer_id=foreign_transfer.id,
        ),
    )
    # Taking from the other tenant's wallet, and paying into it.
    s.refuses_spec(
        "account_not_found",
        simple_transfer(
            key(), debit_account_id=foreign, credit_account_id=s.revenue, amount_minor=1
        ),
    )
    s.refuses_spec(
        "account_not_found",
        simple_transfer(key(), debit_account_id=s.rub, credit_account_id=foreign, amount_minor=1),
    )
    s.refuses("account_not_found", lambda c: get_account(c, tenant_id, foreign))
    s.refuses(
        "account_not_found",
        lambda c: place_hold(
            c,
            tenant_id=tenant_id,
            idempotency_key=key(),
            debit_account_id=foreign,
            credit_account_id=s.revenue,
            amount_minor=1,
            actor=actor,
            now=s.now,
        ),
    )
    assert other.counts() == other_before
    other.assert_clean()


def test_idempotency_key_reused_with_a_different_body(s: Setup) -> None:
    first = s.post(s.cash, s.rub, 10_00, k="order-1")
    # The same request again is a replay: the first transfer, nothing new.
    before = s.book.counts()
    again = s.post(s.cash, s.rub, 10_00, k="order-1")
    assert (again.id, again.replayed) == (first.id, True)
    assert s.book.counts() == before
    for other_body in (
        simple_transfer(
            "order-1", debit_account_id=s.cash, credit_account_id=s.rub, amount_minor=10_01
        ),
        simple_transfer(
            "order-1", debit_account_id=s.cash, credit_account_id=s.other_rub, amount_minor=10_00
        ),
        simple_transfer(
            "order-1",
            debit_account_id=s.cash,
            credit_account_id=s.rub,
            amount_minor=10_00,
            description="x",
        ),
    ):
        s.refuses_spec("idempotency_conflict", other_body)
    # Holds have keys of their own, with the same rule.
    hold_key = key()

    def hold(amount: int) -> Callable[[Connection], HoldView]:
        return lambda c: place_hold(
            c,
            tenant_id=s.book.tenant_id,
            idempotency_key=hold_key,
            debit_account_id=s.rub,
            credit_account_id=s.revenue,
            amount_minor=amount,
            actor=s.book.actor,
            now=s.now,
        )

    placed = s.book.tx(hold(5_00))
    assert s.book.tx(hold(5_00)).id == placed.id
    s.refuses("idempotency_conflict", hold(6_00))


def test_hold_retry_with_another_expiry_conflicts_and_late_retry_replays(s: Setup) -> None:
    hold_key = key()
    expiry = s.now + timedelta(hours=1)

    def hold(expires_at: Any, now: Any) -> Callable[[Connection], HoldView]:
        return lambda c: place_hold(
            c,
            tenant_id=s.book.tenant_id,
            idempotency_key=hold_key,
            debit_account_id=s.rub,
            credit_account_id=s.revenue,
            amount_minor=7_00,
            actor=s.book.actor,
            expires_at=expires_at,
            now=now,
        )

    placed = s.book.tx(hold(expiry, s.now))
    # The expiry is part of the request: another one under the same key is a conflict.
    s.refuses("idempotency_conflict", hold(expiry + timedelta(minutes=5), s.now))
    # A retry that arrives after the expiry has passed still answers as the first did,
    # rather than judging the (by now past) expiry anew.
    late = s.book.tx(hold(expiry, expiry + timedelta(minutes=1)))
    assert (late.id, late.replayed) == (placed.id, True)


def test_lot_dates_on_an_account_without_lots(s: Setup) -> None:
    # The error is found on the credit leg, after the debit leg was looked at: the refused
    # transfer must still leave no trace, alone or in a batch with a good one.
    spec = simple_transfer(
        key(),
        debit_account_id=s.rub,
        credit_account_id=s.other_rub,
        amount_minor=7,
        expires_at=s.now + timedelta(days=1),
    )
    s.refuses_spec("invalid_lot", spec)


def test_over_precise_amount(s: Setup) -> None:
    def parse(c: Connection) -> int:
        unit = get_unit(c, s.book.tenant_id, "RUB").unit
        assert unit.kind == UnitKind.CURRENCY and unit.exponent == 2
        return unit.parse("10.001")

    s.refuses("amount_too_precise", parse)
    with pytest.raises(KopilkaError) as caught:
        parse_amount("10.001", 2, unit_code="RUB")
    assert caught.value.code == "amount_too_precise"
    # Trailing zeros are not extra precision.
    assert parse_amount("10.010", 2) == 10_01
