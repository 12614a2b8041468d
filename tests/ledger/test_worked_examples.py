"""Worked examples: short scenarios that read like the ledger's manual (SPEC L-1..L-9).

Each runs on SQLite and on PostgreSQL. Times are explicit (``now=``), so every scenario
says exactly when things happen.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.ledger.accounts import Policy, set_credit_limit
from kopilka.ledger.balances import SNAPSHOT_LAG, balance_at, take_snapshots, turnovers
from kopilka.ledger.holds import capture_hold, expire_holds, place_hold
from kopilka.ledger.lots import expire_lots
from kopilka.ledger.posting import (
    EntrySpec,
    PostedTransfer,
    TransferSpec,
    get_transfer,
    post_transfers,
    simple_transfer,
)
from kopilka.ledger.schema import entries, lot_consumptions, lots, transfers

from .conftest import Book, key

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def accrue(book: Book, wallet: int, amount: int, now: datetime, **lot: datetime | None) -> int:
    issuance = book.system("issuance", "BONUS")
    spec = simple_transfer(
        key(), debit_account_id=issuance, credit_account_id=wallet, amount_minor=amount, **lot
    )
    return book.post(spec, now=now).id


def spend(book: Book, wallet: int, amount: int, now: datetime, unit: str = "BONUS") -> int:
    redeemed = book.system("redeemed", unit)
    spec = simple_transfer(
        key(), debit_account_id=wallet, credit_account_id=redeemed, amount_minor=amount
    )
    return book.post(spec, now=now).id


def refused(code: str, work: object) -> None:
    assert callable(work)
    with pytest.raises(KopilkaError) as caught:
        work()
    assert caught.value.code == code, caught.value


def test_spending_takes_the_earliest_expiring_lot_and_expiry_writes_off_the_rest(
    book: Book,
) -> None:
    t0 = utcnow()
    wallet = book.account("BONUS", uses_lots=True)
    accrue(book, wallet, 100, t0, expires_at=t0 + DAY)  # expires tomorrow
    accrue(book, wallet, 50, t0)  # never expires
    spent = spend(book, wallet, 70, t0 + HOUR)

    expiring, forever = book.lots(wallet)
    assert (expiring.remaining_minor, forever.remaining_minor) == (30, 50)
    with read_only(book.engine) as conn:
        taken = conn.execute(
            select(lot_consumptions.c.lot_id, lot_consumptions.c.amount_minor).where(
                lot_consumptions.c.transfer_id == spent
            )
        ).all()
    assert [tuple(r) for r in taken] == [(expiring.id, 70)]

    # The day after tomorrow the 30 left of the first lot are written off by a transfer.
    t2 = t0 + 2 * DAY
    assert expire_lots(book.engine, tenant_id=book.tenant_id, actor=book.actor, now=t2) == 1
    expired = book.system("expired", "BONUS")
    assert book.get(wallet, now=t2).balance_minor == 50
    assert book.get(expired).balance_minor == 30
    with read_only(book.engine) as conn:
        write_off = conn.execute(
            select(transfers.c.id).where(
                transfers.c.tenant_id == book.tenant_id, transfers.c.kind == "expiry"
            )
        ).scalar_one()
        posted = get_transfer(conn, book.tenant_id, write_off)
        # Never by deleting: the lot is still there, with nothing left in it.
        lot_row = conn.execute(select(lots).where(lots.c.id == expiring.id)).one()
    assert sorted((e.account_id, e.amount_minor) for e in posted.entries) == sorted(
        [(wallet, -30), (expired, 30)]
    )
    assert (lot_row.amount_minor, lot_row.remaining_minor) == (100, 0)

    # Running the expiry again changes nothing.
    before = book.counts()
    assert expire_lots(book.engine, tenant_id=book.tenant_id, actor=book.actor, now=t2) == 0
    assert expire_lots(book.engine, tenant_id=book.tenant_id, actor=book.actor, now=t2 + DAY) == 0
    assert book.counts() == before
    book.assert_clean()


def test_a_hold_reserves_and_a_partial_capture_releases_the_rest(book: Book) -> None:
    t0 = utcnow()
    wallet = book.account("BONUS", uses_lots=True)
    shop = book.system("redeemed", "BONUS")
    accrue(book, wallet, 150, t0)

    hold = book.tx(
        lambda c: place_hold(
            c,
            tenant_id=book.tenant_id,
            idempotency_key=key(),
            debit_account_id=wallet,
            credit_account_id=shop,
            amount_minor=120,
            actor=book.actor,
            now=t0,
        )
    )
    view = book.get(wallet, now=t0)
    assert (view.balance_minor, view.held_minor, view.available_minor) == (150, 120, 30)
    # The 120 are reserved: a spend of 31 does not fit, 30 does not either once 1 is gone.
    refused("insufficient_funds", lambda: spend(book, wallet, 31, t0))

    held, posted = book.tx(
        lambda c: capture_hold(
            c,
            tenant_id=book.tenant_id,
            hold_id=hold.id,
            idempotency_key=key(),
            amount_minor=70,
            actor=book.actor,
            now=t0 + timedelta(minutes=5),
        )
    )
    assert (held.status, held.captured_minor) == ("captured", 70)
    assert posted.hold_id == hold.id
    view = book.get(wallet, now=t0 + timedelta(minutes=5))
    assert (view.balance_minor, view.held_minor, view.available_minor) == (80, 0, 80)
    assert book.get(shop).balance_minor == 70
    book.assert_clean()


def test_a_lapsed_hold_stops_holding_before_any_sweep(book: Book) -> None:
    t0 = utcnow()
    wallet = book.account("RUB")
    cash = book.system("cash", "RUB")
    shop = book.system("revenue", "RUB")
    book.post(
        simple_transfer(key(), debit_account_id=cash, credit_account_id=wallet, amount_minor=150),
        now=t0,
    )
    hold = book.tx(
        lambda c: place_hold(
            c,
            tenant_id=book.tenant_id,
            idempotency_key=key(),
            debit_account_id=wallet,
            credit_account_id=shop,
            amount_minor=120,
            expires_at=t0 + timedelta(minutes=10),
            actor=book.actor,
            now=t0,
        )
    )
    assert book.get(wallet, now=t0 + timedelta(minutes=9)).available_minor == 30
    later = t0 + timedelta(minutes=11)
    # Nothing has swept the hold yet: it is still stored, but it no longer holds.
    view = book.get(wallet, now=later)
    assert (view.held_minor, view.available_minor) == (120, 150)
    assert book.hold(hold.id).status == "pending"
    refused(
        "hold_expired",
        lambda: book.tx(
            lambda c: capture_hold(
                c,
                tenant_id=book.tenant_id,
                hold_id=hold.id,
                idempotency_key=key(),
                actor=book.actor,
                now=later,
            )
        ),
    )
    # A spend of everything goes through, and sweeps the lapsed hold on its way.
    book.post(
        simple_transfer(key(), debit_account_id=wallet, credit_account_id=shop, amount_minor=150),
        now=later,
    )
    assert book.hold(hold.id).status == "expired"
    view = book.get(wallet, now=later)
    assert (view.balance_minor, view.held_minor, view.available_minor) == (0, 0, 0)
    assert (
        book.tx(lambda c: expire_holds(c, tenant_id=book.tenant_id, actor=book.actor, now=later))
        == 0
    )
    book.assert_clean()


def test_spends_are_checked_against_the_credit_limit_in_force(book: Book) -> None:
    t0 = utcnow() + timedelta(seconds=1)
    subscriber = book.account("RUB", policy=Policy.CREDIT_LIMIT, credit_limit_minor=100_00)
    revenue = book.system("revenue", "RUB")
    cash = book.system("cash", "RUB")

    def charge(amount: int, at: datetime) -> None:
        book.post(
            simple_transfer(
                key(), debit_account_id=subscriber, credit_account_id=revenue, amount_minor=amount
            ),
            now=at,
        )

    def limit(amount: int, at: datetime) -> None:
        book.tx(
            lambda c: set_credit_limit(
                c,
                tenant_id=book.tenant_id,
                account_id=subscriber,
                credit_limit_minor=amount,
                reason="test",
                actor=book.actor,
                now=at,
            )
        )

    charge(80_00, t0)
    refused("credit_limit_exceeded", lambda: charge(30_00, t0 + HOUR))
    limit(200_00, t0 + 2 * HOUR)
    charge(30_00, t0 + 3 * HOUR)  # -110.00, within the raised limit
    limit(50_00, t0 + 4 * HOUR)  # lowered below what is owed: allowed, only credits fit now
    refused("credit_limit_exceeded", lambda: charge(1, t0 + 5 * HOUR))
    book.post(
        simple_transfer(
            key(), debit_account_id=cash, credit_account_id=subscriber, amount_minor=70_00
        ),
        now=t0 + 6 * HOUR,
    )  # pays 70.00: -40.00
    charge(10_00, t0 + 7 * HOUR)  # exactly at the limit: -50.00
    refused("credit_limit_exceeded", lambda: charge(1, t0 + 8 * HOUR))
    view = book.get(subscriber)
    assert (view.balance_minor, view.credit_limit_minor, view.available_minor) == (-50_00, 50_00, 0)
    # verify judges each entry against the limit that was in force when it was posted.
    book.assert_clean()


def test_balance_at_a_past_moment_and_turnovers_for_an_account_and_a_group(book: Book) -> None:
    t0 = utcnow()
    a = book.account("BONUS", uses_lots=True)
    b = book.account("BONUS", uses_lots=True)
    accrue(book, a, 100, t0)  # a: 100
    accrue(book, b, 40, t0 + HOUR)  # b: 40
    spend(book, a, 30, t0 + 2 * HOUR)  # a: 70
    accrue(book, a, 5, t0 + 3 * HOUR)  # a: 75
    spend(book, b, 40, t0 + 4 * HOUR)  # b: 0
    issuance = book.system("issuance", "BONUS")
    redeemed = book.system("redeemed", "BONUS")

    with read_only(book.engine) as conn:
        assert balance_at(conn, book.tenant_id, a, t0 - HOUR) == 0
        assert balance_at(conn, book.tenant_id, a, t0) == 100  # the moment itself counts
        assert balance_at(conn, book.tenant_id, a, t0 + 2 * HOUR - timedelta(microseconds=1)) == 100
        assert balance_at(conn, book.tenant_id, a, t0 + 2 * HOUR) == 70
        assert balance_at(conn, book.tenant_id, a, t0 + 10 * HOUR) == 75

        # A period is [start, end): the spend at +2h is inside, the accrual at +3h is not.
        one = turnovers(conn, book.tenant_id, [a], t0 + HOUR, t0 + 3 * HOUR)
        assert (one.opening_minor, one.debit_minor, one.credit_minor, one.closing_minor) == (
            100,
            30,
            0,
            70,
        )
        group = turnovers(conn, book.tenant_id, [a, b], t0 + HOUR, t0 + 5 * HOUR)
        assert (
            group.opening_minor,
            group.debit_minor,
            group.credit_minor,
            group.closing_minor,
        ) == (
            100,
            70,
            45,
            75,
        )
        # The issuance account of the same unit can join the group; everything nets to 0.
        whole = turnovers(conn, book.tenant_id, [a, b, issuance, redeemed], t0, t0 + 5 * HOUR)
        assert whole.opening_minor == 0 and whole.closing_minor == 0
        assert whole.debit_minor == whole.credit_minor == 145 + 70
    book.assert_clean()


def test_hot_account_balance_from_snapshots_equals_the_sum_of_its_entries(book: Book) -> None:
    issuance = book.system("issuance", "BONUS")
    # Snapshots are only taken SNAPSHOT_LAG behind now, so this history lies further back.
    t0 = utcnow() - SNAPSHOT_LAG - 10 * HOUR
    moments = [t0 + n * HOUR for n in range(6)]
    for n, moment in enumerate(moments):
        accrue(book, book.account("BONUS", uses_lots=True), 10 * (n + 1), moment)

    with book.engine.begin() as conn:
        assert take_snapshots(conn, book.tenant_id, as_of=moments[2]) >= 1
        assert take_snapshots(conn, book.tenant_id, as_of=moments[2]) == 0  # already there
        # A moment past now - SNAPSHOT_LAG is pulled back to it.
        assert take_snapshots(conn, book.tenant_id, as_of=utcnow() + DAY) >= 1
    with read_only(book.engine) as conn:
        snap_times = (
            conn.execute(
                text("SELECT as_of FROM account_snapshots WHERE account_id = :a ORDER BY as_of"),
                {"a": issuance},
            )
            .scalars()
            .all()
        )
        assert len(snap_times) == 2
        for n, moment in enumerate(moments):
            expected = -sum(10 * (k + 1) for k in range(n + 1))
            assert balance_at(conn, book.tenant_id, issuance, moment) == expected
            assert balance_at(
                conn, book.tenant_id, issuance, moment - timedelta(microseconds=1)
            ) == (expected + 10 * (n + 1))
        total = conn.execute(
            select(text("COALESCE(SUM(amount_minor), 0)"))
            .select_from(entries)
            .where(entries.c.account_id == issuance)
        ).scalar_one()
        assert book.get(issuance).balance_minor == total == -210
        period = turnovers(conn, book.tenant_id, [issuance], moments[1], moments[4])
        assert (period.opening_minor, period.debit_minor, period.closing_minor) == (-10, 90, -100)
    book.assert_clean()


@pytest.mark.parametrize("table", ["entries", "transfers"])
@pytest.mark.parametrize("verb", ["UPDATE", "DELETE"])
def test_entries_and_transfers_are_append_only(book: Book, table: str, verb: str) -> None:
    wallet = book.account("BONUS", uses_lots=True)
    transfer_id = accrue(book, wallet, 10, utcnow())
    column = "transfer_id" if table == "entries" else "id"
    statement = (
        f"UPDATE {table} SET posted_at = posted_at WHERE {column} = :t"
        if verb == "UPDATE"
        else f"DELETE FROM {table} WHERE {column} = :t"
    )
    before = book.counts()
    with pytest.raises(DBAPIError, match="append-only"), book.engine.begin() as conn:
        conn.execute(text(statement), {"t": transfer_id})
    assert book.counts() == before
    book.assert_clean()


def test_postgresql_refuses_a_hand_written_unbalanced_transfer_at_commit(
    engine: Engine, book: Book
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the deferred balance trigger is PostgreSQL's")
    wallet = book.account("BONUS", uses_lots=False)
    issuance = book.system("issuance", "BONUS")
    before = book.counts()
    now = utcnow()
    conn = engine.connect()
    try:
        trans = conn.begin()
        unit_id = conn.execute(
            text("SELECT unit_id FROM accounts WHERE id = :a"), {"a": wallet}
        ).scalar_one()
        transfer_id = conn.execute(
            transfers.insert().returning(transfers.c.id),
            {
                "tenant_id": book.tenant_id,
                "idempotency_key": key(),
                "request_hash": "x" * 64,
                "kind": "transfer",
                "posted_at": now,
                "actor_type": "cli",
            },
        ).scalar_one()
        rows = [(issuance, -5), (wallet, 3)]  # sums to -2
        conn.execute(
            entries.insert(),
            [
                {
                    "tenant_id": book.tenant_id,
                    "transfer_id": transfer_id,
                    "account_id": account,
                    "unit_id": unit_id,
                    "amount_minor": amount,
                    "posted_at": now,
                }
                for account, amount in rows
            ],
        )
        # Every statement went through; the check waits for the commit, and refuses it.
        with pytest.raises(DBAPIError, match="does not balance"):
            trans.commit()
    finally:
        conn.close()
    assert book.counts() == before
    book.assert_clean()


def test_a_correction_is_a_new_transfer_naming_the_one_it_corrects(book: Book) -> None:
    t0 = utcnow()
    wallet = book.account("BONUS", uses_lots=True)
    issuance = book.system("issuance", "BONUS")
    wrong = accrue(book, wallet, 500, t0)
    (lot,) = book.lots(wallet)
    reversal = book.post(
        TransferSpec(
            key(),
            (EntrySpec(wallet, -500, from_lot_id=lot.id), EntrySpec(issuance, 500)),
            kind="reversal",
            corrects_transfer_id=wrong,
        ),
        now=t0 + HOUR,
    )
    assert reversal.corrects_transfer_id == wrong
    assert book.get(wallet).balance_minor == 0
    with read_only(book.engine) as conn:
        # Both transfers stay: the history tells what happened and how it was put right.
        kinds = conn.execute(
            select(transfers.c.id, transfers.c.corrects_transfer_id)
            .where(transfers.c.tenant_id == book.tenant_id)
            .order_by(transfers.c.id)
        ).all()
    assert [tuple(k) for k in kinds] == [(wrong, None), (reversal.id, wrong)]
    book.assert_clean()


def test_a_batch_can_spend_points_accrued_earlier_in_the_same_batch(book: Book) -> None:
    # An offline upload: a check that earns points, then a check that spends some of them.
    t0 = utcnow()
    wallet = book.account("BONUS", uses_lots=True)
    issuance = book.system("issuance", "BONUS")
    shop = book.system("redeemed", "BONUS")
    specs = [
        simple_transfer(
            key(), debit_account_id=issuance, credit_account_id=wallet, amount_minor=100
        ),
        simple_transfer(key(), debit_account_id=wallet, credit_account_id=shop, amount_minor=60),
        simple_transfer(key(), debit_account_id=wallet, credit_account_id=shop, amount_minor=41),
    ]
    specs.append(specs[1])  # a duplicate inside the batch is a replay of the first
    with book.engine.begin() as conn:
        outcomes = post_transfers(
            conn, tenant_id=book.tenant_id, specs=specs, actor=book.actor, now=t0
        )
    earned, spent, too_much, again = outcomes
    assert isinstance(earned, PostedTransfer) and isinstance(spent, PostedTransfer)
    assert isinstance(too_much, KopilkaError) and too_much.code == "insufficient_funds"
    assert isinstance(again, PostedTransfer) and (again.id, again.replayed) == (spent.id, True)
    assert book.get(wallet, now=t0).balance_minor == 40
    assert [lot.remaining_minor for lot in book.lots(wallet)] == [40]
    book.assert_clean()


def test_a_limit_changed_at_the_moment_of_a_charge_takes_effect_after_it(book: Book) -> None:
    t0 = utcnow() + timedelta(seconds=1)
    subscriber = book.account("RUB", policy=Policy.CREDIT_LIMIT, credit_limit_minor=100_00)
    revenue = book.system("revenue", "RUB")
    charge = simple_transfer(
        key(), debit_account_id=subscriber, credit_account_id=revenue, amount_minor=80_00
    )
    book.post(charge, now=t0)  # judged by the limit of 100.00
    book.tx(
        lambda c: set_credit_limit(
            c,
            tenant_id=book.tenant_id,
            account_id=subscriber,
            credit_limit_minor=50_00,
            reason="same moment",
            actor=book.actor,
            now=t0,
        )
    )
    # The charge stays within the limit it was judged by; verify agrees.
    book.assert_clean()
    more = simple_transfer(
        key(), debit_account_id=subscriber, credit_account_id=revenue, amount_minor=1
    )
    refused("credit_limit_exceeded", lambda: book.post(more, now=t0))


def test_a_back_dated_posting_never_lands_before_its_accounts_were_opened(book: Book) -> None:
    """History brought over from another system keeps every account's limits in force:
    a posting dated before an account was opened lands at its opening instead, so a
    credit limit (which starts when the account opens) always applies to it."""
    subscriber = book.account("RUB", policy=Policy.CREDIT_LIMIT, credit_limit_minor=500_00)
    revenue = book.system("revenue", "RUB")
    opened = book.get(subscriber).created_at
    posted = book.post(
        simple_transfer(
            key(), debit_account_id=subscriber, credit_account_id=revenue, amount_minor=400_00
        ),
        now=opened - timedelta(days=30),
    )
    assert posted.posted_at >= opened
    assert book.get(subscriber).balance_minor == -400_00
    book.assert_clean()  # verify finds the limit in force at the posting's moment
