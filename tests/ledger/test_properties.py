"""Random sequences of ledger operations, checked step by step against a Python model.

A hypothesis state machine drives one tenant's ledger through accruals (point lots with
random availability and expiry), spends, multi-entry and two-unit transfers, holds
(placed, captured fully or partly, voided, lapsing), a credit limit that changes, time
passing with lot and hold expiry, refunds and reversals, batches, idempotent replays and
conflicting keys. A plain Python model predicts every outcome: which requests are refused
and with what code, each account's balance, held and available amounts, each lot's
remainder, and the full history of entries.

After every step: ``verify`` finds nothing (SPEC L-9), the database agrees with the model,
and ``balance_at`` / ``turnovers`` at random past moments agree with replaying the model's
history (SPEC L-6). Time is a simulated clock that only moves forward, from the real now.
"""

from __future__ import annotations

import copy
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.ledger.accounts import Policy, get_account, set_credit_limit
from kopilka.ledger.balances import balance_at, turnovers
from kopilka.ledger.holds import capture_hold, expire_holds, place_hold, void_hold
from kopilka.ledger.lots import account_lots, expire_lots
from kopilka.ledger.posting import (
    EntrySpec,
    PostedTransfer,
    TransferSpec,
    post_one,
    post_transfers,
)
from kopilka.ledger.schema import hold_resolutions, holds, lots, transfers
from kopilka.ledger.verify import verify

from .conftest import Book, new_tenant

MAX_EXAMPLES = 25
STEPS = 40
FAR = 10**18  # sorts a lot whose id the database has not told us yet after all others

amounts = st.integers(min_value=1, max_value=120)
picks = st.integers(min_value=0, max_value=10**6)
steps = st.sampled_from(
    [
        timedelta(0),
        timedelta(microseconds=1),
        timedelta(seconds=1),
        timedelta(minutes=1),
        timedelta(minutes=10),
        timedelta(hours=1),
        timedelta(days=1),
        timedelta(days=2),
    ]
)
lot_starts = st.sampled_from(
    [None, timedelta(hours=-1), timedelta(0), timedelta(minutes=1), timedelta(hours=1)]
)
lot_lives = st.sampled_from(
    [None, timedelta(minutes=1), timedelta(hours=1), timedelta(days=1), timedelta(days=3)]
)
hold_lives = st.sampled_from(
    [timedelta(minutes=1), timedelta(minutes=10), timedelta(hours=1), timedelta(days=1)]
)


def new_key() -> str:
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- the model


@dataclass
class MLot:
    id: int  # FAR + n until the database names it
    account: int
    remaining: int
    available_at: datetime
    expires_at: datetime | None
    transfer_id: int = 0

    def spendable(self, now: datetime) -> bool:
        return self.available_at <= now and (self.expires_at is None or self.expires_at > now)

    def order(self) -> tuple[bool, datetime, datetime, int]:
        return (
            self.expires_at is None,
            self.expires_at or self.available_at,
            self.available_at,
            self.id,
        )


@dataclass
class MHold:
    id: int
    key: str
    account: int
    credit: int
    amount: int
    expires_at: datetime
    status: str = "pending"  # captured, voided, expired (resolved rows)


@dataclass
class Model:
    balance: dict[int, int]
    held: dict[int, int]  # as stored: lapsed holds count until something sweeps them
    policy: dict[int, str]
    with_lots: set[int]
    hot: set[int]
    limit: int = 0
    lots: list[MLot] = field(default_factory=list)
    holds: list[MHold] = field(default_factory=list)
    history: list[tuple[datetime, int, int]] = field(default_factory=list)
    transfers: int = 0
    placeholder: int = 0
    last_moment: datetime | None = None
    # An ordinary account's last posting: a later one never lands before it.
    last_posted: dict[int, datetime] = field(default_factory=dict)

    def posted_at(self, now: datetime, accounts: set[int]) -> datetime:
        return max([now, *(self.last_posted[a] for a in accounts if a in self.last_posted)])

    # ----- reading

    def live_held(self, account: int, now: datetime) -> int:
        return sum(
            h.amount
            for h in self.holds
            if h.account == account and h.status == "pending" and h.expires_at > now
        )

    def spendable(self, account: int, now: datetime) -> int:
        return sum(
            lot.remaining for lot in self.lots if lot.account == account and lot.spendable(now)
        )

    def available(self, account: int, now: datetime) -> int | None:
        if account in self.hot:
            return None
        if account in self.with_lots:
            return max(self.spendable(account, now) - self.live_held(account, now), 0)
        return max(self.balance[account] - self.live_held(account, now) + self.floor(account), 0)

    def floor(self, account: int) -> int:
        """How far below zero the account may go."""
        return self.limit if self.policy[account] == "credit_limit" else 0

    def open_lots(self, account: int) -> list[tuple[int, int]]:
        return sorted(
            (lot.id, lot.remaining)
            for lot in self.lots
            if lot.account == account and lot.remaining > 0
        )

    def balance_at(self, account: int, moment: datetime) -> int:
        return sum(a for t, acc, a in self.history if acc == account and t <= moment)

    def turnover(
        self, accounts: list[int], start: datetime, end: datetime
    ) -> tuple[int, int, int, int]:
        rows = [(t, a) for t, acc, a in self.history if acc in accounts]
        opening = sum(a for t, a in rows if t < start)
        closing = sum(a for t, a in rows if t < end)
        debit = sum(-a for t, a in rows if start <= t < end and a < 0)
        credit = sum(a for t, a in rows if start <= t < end and a > 0)
        return opening, debit, credit, closing

    # ----- changing

    def sweep(self, account: int, now: datetime) -> None:
        """What every posting that debits the account does first: lapsed holds end."""
        if self.held[account] <= 0:
            return
        for h in self.holds:
            if h.account == account and h.status == "pending" and h.expires_at <= now:
                h.status = "expired"
                self.held[account] -= h.amount

    def judge(
        self,
        spec: TransferSpec,
        now: datetime,
        hold: MHold | None = None,
        sweep: bool = True,
        at: datetime | None = None,
    ) -> str | None:
        """Apply the transfer to this model; the refusal's code if it would be refused.

        Mirrors the ledger's rule: every leg is checked (in the order given) before any
        changes; a debit may use what is available at the moment of posting, which is
        ``at`` (a batch's) or now, unless an account's last posting is later.
        """
        posted_at = at or self.posted_at(now, {e.account_id for e in spec.entries})
        self.last_moment = posted_at
        if sweep:
            for e in spec.entries:
                if e.amount_minor < 0:
                    self.sweep(e.account_id, now)
        for e in spec.entries:
            account = e.account_id
            if e.amount_minor > 0:
                if (e.available_at or e.expires_at) and account not in self.with_lots:
                    return "invalid_lot"
                continue
            if account in self.hot:
                continue
            held = self.held[account] - (
                hold.amount if hold is not None and hold.account == account else 0
            )
            if account in self.with_lots:
                if e.from_lot_id is not None:
                    lot = self.lot(e.from_lot_id)
                    if lot is None or lot.remaining == 0:
                        return "lot_not_found"
                    available = lot.remaining
                else:
                    available = self.spendable(account, posted_at) - held
            else:
                available = self.balance[account] - held + self.floor(account)
            if -e.amount_minor > available:
                return (
                    "credit_limit_exceeded"
                    if self.policy[account] == "credit_limit"
                    else "insufficient_funds"
                )
        for e in spec.entries:
            account = e.account_id
            if e.amount_minor < 0:
                if hold is not None and hold.account == account:
                    self.held[account] -= hold.amount
                if account in self.with_lots:
                    self.consume(account, -e.amount_minor, e.from_lot_id, posted_at)
            elif account in self.with_lots:
                self.placeholder += 1
                self.lots.append(
                    MLot(
                        FAR + self.placeholder,
                        account,
                        e.amount_minor,
                        e.available_at or posted_at,
                        e.expires_at,
                    )
                )
            self.balance[account] += e.amount_minor
            self.history.append((posted_at, account, e.amount_minor))
            if account not in self.hot:
                self.last_posted[account] = posted_at
        self.transfers += 1
        return None

    def consume(self, account: int, amount: int, from_lot: int | None, now: datetime) -> None:
        left = amount
        if from_lot is not None:
            candidates = [lot for lot in self.lots if lot.id == from_lot]
        else:
            candidates = sorted(
                (lot for lot in self.lots if lot.account == account and lot.spendable(now)),
                key=MLot.order,
            )
        for lot in candidates:
            part = min(left, lot.remaining)
            lot.remaining -= part
            left -= part
            if left == 0:
                break
        assert left == 0, "the model let a debit through that its lots do not cover"

    def lot(self, lot_id: int) -> MLot | None:
        return next((lot for lot in self.lots if lot.id == lot_id), None)

    def name_new_lots(self, named: dict[int, list[tuple[int, int]]]) -> None:
        """Give new lots their ids: ``named`` is account -> (lot id, transfer id), in order."""
        for lot in self.lots:
            if lot.id >= FAR and named.get(lot.account):
                lot.id, lot.transfer_id = named[lot.account].pop(0)


# --------------------------------------------------------------------------- the machine


def make_machine(engine: Engine) -> type[RuleBasedStateMachine]:
    actor = Actor.cli("properties")

    class Ledger(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            book = Book(engine, new_tenant(engine, actor).id, actor)
            book.unit("BONUS")
            self.book = book
            self.tenant_id = book.tenant_id
            self.lot1 = book.account("BONUS", uses_lots=True)
            self.lot2 = book.account("BONUS", uses_lots=True)
            self.w1 = book.account("RUB")
            self.w2 = book.account("RUB")
            self.c1 = book.account("RUB", policy=Policy.CREDIT_LIMIT, credit_limit_minor=100)
            self.iss = book.system("issuance", "BONUS")
            self.red = book.system("redeemed", "BONUS")
            self.exp = book.system("expired", "BONUS")
            self.cash = book.system("cash", "RUB")
            self.rev = book.system("revenue", "RUB")
            self.ordinary = [self.lot1, self.lot2, self.w1, self.w2, self.c1]
            self.hot = [self.iss, self.red, self.exp, self.cash, self.rev]
            self.bonus_group = [self.lot1, self.lot2, self.iss, self.red, self.exp]
            self.rub_group = [self.w1, self.w2, self.c1, self.cash, self.rev]
            everyone = self.ordinary + self.hot
            policy = {a: "non_negative" for a in self.ordinary} | {a: "unlimited" for a in self.hot}
            policy[self.c1] = "credit_limit"
            self.model = Model(
                balance=dict.fromkeys(everyone, 0),
                held=dict.fromkeys(everyone, 0),
                policy=policy,
                with_lots={self.lot1, self.lot2},
                hot=set(self.hot),
                limit=100,
            )
            self.start = utcnow()
            self.now = self.start
            self.rng = random.Random(0)
            self.posted: list[tuple[TransferSpec, int]] = []  # replayable
            self.accruals: list[tuple[int, int]] = []  # (transfer id, lot account)
            self.spends: list[tuple[int, int, int, int]] = []  # (transfer, account, amount, to)
            self.refused_keys: list[str] = []
            self.placed_holds: list[tuple[str, int, int, int, datetime]] = []

        # ----- plumbing

        def post(self, spec: TransferSpec, hold: MHold | None = None) -> PostedTransfer | None:
            """Post through the ledger and the model; they must agree on the outcome."""
            trial = copy.deepcopy(self.model)
            expected = trial.judge(spec, self.now, hold)
            try:
                posted = self.book.tx(
                    lambda c: post_one(
                        c, tenant_id=self.tenant_id, spec=spec, actor=actor, now=self.now
                    )
                )
            except KopilkaError as error:
                assert error.code == expected, f"refused with {error!r}, model said {expected}"
                self.refused_keys.append(spec.idempotency_key)
                return None
            assert expected is None, f"posted, but the model expected {expected}"
            self.accept(trial, posted)
            self.posted.append((spec, posted.id))
            return posted

        def accept(self, trial: Model, posted: PostedTransfer) -> None:
            assert not posted.replayed
            assert posted.posted_at == trial.last_moment
            for entry in posted.entries:
                if entry.account_id not in trial.hot:
                    assert entry.balance_after_minor == trial.balance[entry.account_id]
            self.name_lots(trial, [posted.id])
            self.model = trial

        def name_lots(self, trial: Model, transfer_ids: list[int]) -> None:
            with read_only(engine) as conn:
                rows = conn.execute(
                    select(lots.c.id, lots.c.account_id, lots.c.transfer_id)
                    .where(lots.c.transfer_id.in_(transfer_ids))
                    .order_by(lots.c.id)
                ).all()
            named: dict[int, list[tuple[int, int]]] = {}
            for row in rows:
                named.setdefault(row.account_id, []).append((row.id, row.transfer_id))
            trial.name_new_lots(named)

        def hold_by_key(self, key: str) -> MHold | None:
            return next((h for h in self.model.holds if h.key == key), None)

        # ----- rules

        @initialize(seed=st.integers(0, 2**32))
        def seed(self, seed: int) -> None:
            self.rng = random.Random(seed)

        @rule(delta=steps)
        def time_passes(self, delta: timedelta) -> None:
            self.now += delta

        @rule(
            second=st.booleans(),
            amount=amounts,
            starts=lot_starts,
            lives=lot_lives,
        )
        def accrue_points(
            self,
            second: bool,
            amount: int,
            starts: timedelta | None,
            lives: timedelta | None,
        ) -> None:
            wallet = self.lot2 if second else self.lot1
            available_at = None if starts is None else self.now + starts
            expires_at = None if lives is None else (available_at or self.now) + lives
            spec = TransferSpec(
                new_key(),
                (
                    EntrySpec(self.iss, -amount),
                    EntrySpec(wallet, amount, available_at=available_at, expires_at=expires_at),
                ),
                kind="accrual",
            )
            posted = self.post(spec)
            assert posted is not None
            self.accruals.append((posted.id, wallet))

        @rule(account=st.sampled_from(["w1", "w2", "c1"]), amount=amounts)
        def top_up(self, account: str, amount: int) -> None:
            wallet = getattr(self, account)
            spec = TransferSpec(
                new_key(), (EntrySpec(self.cash, -amount), EntrySpec(wallet, amount))
            )
            assert self.post(spec) is not None

        @rule(
            account=st.sampled_from(["lot1", "lot2", "w1", "w2", "c1"]),
            amount=amounts,
            reuse=st.booleans(),
        )
        def spend(self, account: str, amount: int, reuse: bool) -> None:
            wallet = getattr(self, account)
            to = self.red if wallet in self.model.with_lots else self.rev
            # A refused request is not remembered: its key may be used again, afresh.
            key = self.refused_keys.pop() if reuse and self.refused_keys else new_key()
            spec = TransferSpec(
                key, (EntrySpec(wallet, -amount), EntrySpec(to, amount)), kind="spend"
            )
            posted = self.post(spec)
            if posted is not None:
                self.spends.append((posted.id, wallet, amount, to))

        @rule(variant=st.integers(0, 4), a=amounts, b=amounts)
        def multi_entry(self, variant: int, a: int, b: int) -> None:
            soon = self.now + timedelta(days=1)
            legs = [
                # Two customers pay one bill.
                (EntrySpec(self.w1, -a), EntrySpec(self.c1, -b), EntrySpec(self.rev, a + b)),
                # A pay-out split between two customers.
                (EntrySpec(self.cash, -(a + b)), EntrySpec(self.w2, a), EntrySpec(self.c1, b)),
                # Points bought back for roubles: two units, each balancing on its own.
                (
                    EntrySpec(self.lot1, -a),
                    EntrySpec(self.red, a),
                    EntrySpec(self.cash, -b),
                    EntrySpec(self.w1, b),
                ),
                # Points given from one card to another, as a lot that expires.
                (EntrySpec(self.lot1, -a), EntrySpec(self.lot2, a, expires_at=soon)),
                # Lot dates on a wallet without lots: refused, whatever the debit leg.
                (EntrySpec(self.w1, -a), EntrySpec(self.w2, a, expires_at=soon)),
            ][variant]
            self.post(TransferSpec(new_key(), legs, kind="multi"))

        @rule(
            account=st.sampled_from(["lot1", "lot2", "w1", "c1"]), amount=amounts, life=hold_lives
        )
        def place(self, account: str, amount: int, life: timedelta) -> None:
            debit = getattr(self, account)
            credit = self.red if debit in self.model.with_lots else self.rev
            key = new_key()
            self._place(key, debit, credit, amount, self.now + life)

        @precondition(lambda self: bool(self.placed_holds))
        @rule(pick=picks, same=st.booleans())
        def place_again(self, pick: int, same: bool) -> None:
            """A hold's key again: the same request is a replay, another is a conflict."""
            key, debit, credit, amount, expires_at = self.placed_holds[
                pick % len(self.placed_holds)
            ]
            # The expiry is part of the request: the same moment again, even once it has
            # passed (the key is looked at first, and the first reply stands).
            self._place(key, debit, credit, amount if same else amount + 1, expires_at)

        def _place(
            self, key: str, debit: int, credit: int, amount: int, expires_at: datetime | None
        ) -> None:
            known = self.hold_by_key(key)
            trial = copy.deepcopy(self.model)
            expected: str | None = None
            if known is not None:
                expected = None if known.amount == amount else "idempotency_conflict"
            else:
                trial.sweep(debit, self.now)
                if debit in trial.with_lots:
                    available = trial.spendable(debit, self.now) - trial.held[debit]
                else:
                    available = trial.balance[debit] - trial.held[debit] + trial.floor(debit)
                if amount > available:
                    expected = "credit_limit_exceeded" if debit == self.c1 else "insufficient_funds"
            try:
                view = self.book.tx(
                    lambda c: place_hold(
                        c,
                        tenant_id=self.tenant_id,
                        idempotency_key=key,
                        debit_account_id=debit,
                        credit_account_id=credit,
                        amount_minor=amount,
                        expires_at=expires_at,
                        actor=actor,
                        now=self.now,
                    )
                )
            except KopilkaError as error:
                assert error.code == expected, f"refused with {error!r}, model said {expected}"
                return
            assert expected is None, f"placed, but the model expected {expected}"
            if known is not None:
                assert view.replayed and view.id == known.id
                return
            assert view.status == "pending" and view.amount_minor == amount
            trial.held[debit] += amount
            trial.holds.append(MHold(view.id, key, debit, credit, amount, expires_at))
            self.model = trial
            self.placed_holds.append((key, debit, credit, amount, expires_at))

        @precondition(lambda self: bool(self.model.holds))
        @rule(pick=picks, part=st.sampled_from([None, 1, 2, 3]))
        def capture(self, pick: int, part: int | None) -> None:
            hold = self.model.holds[pick % len(self.model.holds)]
            # None: all of it; otherwise a third, two thirds, or (3) one more than held.
            amount = (
                hold.amount
                if part is None
                else (hold.amount + 1 if part == 3 else max(1, hold.amount * part // 3))
            )
            key = new_key()
            expected: str | None
            trial = copy.deepcopy(self.model)
            spec = TransferSpec(
                key,
                (EntrySpec(hold.account, -amount), EntrySpec(hold.credit, amount)),
                kind="capture",
                hold_id=hold.id,
                release_minor=hold.amount,
            )
            if hold.status in ("captured", "voided"):
                expected = f"hold_{hold.status}"
            elif hold.status == "expired" or hold.expires_at <= self.now:
                expected = "hold_expired"
            elif amount > hold.amount:
                expected = "capture_exceeds_hold"
            else:
                expected = trial.judge(spec, self.now, trial.holds[self.model.holds.index(hold)])
            try:
                view, posted = self.book.tx(
                    lambda c: capture_hold(
                        c,
                        tenant_id=self.tenant_id,
                        hold_id=hold.id,
                        idempotency_key=key,
                        amount_minor=None if part is None else amount,
                        actor=actor,
                        now=self.now,
                    )
                )
            except KopilkaError as error:
                assert error.code == expected, f"refused with {error!r}, model said {expected}"
                return
            assert expected is None, f"captured, but the model expected {expected}"
            assert (view.status, view.captured_minor, view.transfer_id) == (
                "captured",
                amount,
                posted.id,
            )
            trial.holds[self.model.holds.index(hold)].status = "captured"
            self.accept(trial, posted)
            self.posted.append((spec, posted.id))

        @precondition(lambda self: bool(self.model.holds))
        @rule(pick=picks)
        def void(self, pick: int) -> None:
            index = pick % len(self.model.holds)
            hold = self.model.holds[index]
            expected: str | None = None
            if hold.status == "captured":
                expected = "hold_captured"
            elif hold.status == "expired" or (
                hold.status == "pending" and hold.expires_at <= self.now
            ):
                expected = "hold_expired"
            try:
                view = self.book.tx(
                    lambda c: void_hold(
                        c,
                        tenant_id=self.tenant_id,
                        hold_id=hold.id,
                        idempotency_key=new_key(),
                        actor=actor,
                        now=self.now,
                    )
                )
            except KopilkaError as error:
                assert error.code == expected, f"refused with {error!r}, model said {expected}"
                return
            assert expected is None, f"voided, but the model expected {expected}"
            assert view.status == "voided"
            if hold.status == "voided":
                assert view.replayed
                return
            hold.status = "voided"
            self.model.held[hold.account] -= hold.amount

        @rule()
        def sweep_holds(self) -> None:
            due = [
                h for h in self.model.holds if h.status == "pending" and h.expires_at <= self.now
            ]
            count = self.book.tx(
                lambda c: expire_holds(c, tenant_id=self.tenant_id, actor=actor, now=self.now)
            )
            assert count == len(due)
            for h in due:
                h.status = "expired"
                self.model.held[h.account] -= h.amount

        @rule()
        def expire_points(self) -> None:
            trial = copy.deepcopy(self.model)
            due = sorted(
                (
                    lot
                    for lot in trial.lots
                    if lot.remaining > 0
                    and lot.expires_at is not None
                    and lot.expires_at <= self.now
                ),
                key=lambda lot: lot.id,
            )
            for account in sorted({lot.account for lot in due}):
                trial.sweep(account, self.now)
            at = trial.posted_at(self.now, {lot.account for lot in due})
            for lot in due:
                spec = TransferSpec(
                    "x",
                    (
                        EntrySpec(lot.account, -lot.remaining, from_lot_id=lot.id),
                        EntrySpec(self.exp, lot.remaining),
                    ),
                )
                assert trial.judge(spec, self.now, sweep=False, at=at) is None
            done = expire_lots(engine, tenant_id=self.tenant_id, actor=actor, now=self.now)
            assert done == len(due)
            self.model = trial

        @rule(limit=st.integers(0, 300))
        def change_credit_limit(self, limit: int) -> None:
            view = self.book.tx(
                lambda c: set_credit_limit(
                    c,
                    tenant_id=self.tenant_id,
                    account_id=self.c1,
                    credit_limit_minor=limit,
                    reason="property test",
                    actor=actor,
                    now=self.now,
                )
            )
            assert view.credit_limit_minor == limit
            self.model.limit = limit
            # It takes effect after the account's last posting, and later ones follow it.
            last = self.model.last_posted.get(self.c1)
            if last is not None and last >= self.now:
                self.model.last_posted[self.c1] = last + timedelta(microseconds=1)
            else:
                self.model.last_posted[self.c1] = self.now

        @precondition(lambda self: bool(self.accruals))
        @rule(pick=picks)
        def reverse_accrual(self, pick: int) -> None:
            """Take back what is left of an accrual's lot, naming the accrual."""
            transfer_id, wallet = self.accruals[pick % len(self.accruals)]
            lot = next(lot for lot in self.model.lots if lot.transfer_id == transfer_id)
            amount = lot.remaining or 1
            spec = TransferSpec(
                new_key(),
                (
                    EntrySpec(wallet, -amount, from_lot_id=lot.id),
                    EntrySpec(self.iss, amount),
                ),
                kind="reversal",
                corrects_transfer_id=transfer_id,
            )
            posted = self.post(spec)
            if posted is not None:
                assert posted.corrects_transfer_id == transfer_id

        @precondition(lambda self: bool(self.spends))
        @rule(pick=picks)
        def refund_spend(self, pick: int) -> None:
            transfer_id, wallet, amount, to = self.spends.pop(pick % len(self.spends))
            spec = TransferSpec(
                new_key(),
                (EntrySpec(to, -amount), EntrySpec(wallet, amount)),
                kind="refund",
                corrects_transfer_id=transfer_id,
            )
            assert self.post(spec) is not None

        @precondition(lambda self: bool(self.posted))
        @rule(pick=picks)
        def replay(self, pick: int) -> None:
            spec, transfer_id = self.posted[pick % len(self.posted)]
            again = self.book.tx(
                lambda c: post_one(
                    c, tenant_id=self.tenant_id, spec=spec, actor=actor, now=self.now
                )
            )
            assert again.replayed and again.id == transfer_id

        @precondition(lambda self: bool(self.posted))
        @rule(pick=picks, how=st.integers(0, 2))
        def conflicting_key(self, pick: int, how: int) -> None:
            spec, _ = self.posted[pick % len(self.posted)]
            first, *rest = spec.entries
            other = TransferSpec(
                spec.idempotency_key,
                spec.entries,
                kind=spec.kind,
                description="another request",
                corrects_transfer_id=spec.corrects_transfer_id,
                hold_id=spec.hold_id,
                release_minor=spec.release_minor,
            )
            if how == 1:  # the same accounts, other amounts
                other = TransferSpec(
                    spec.idempotency_key,
                    (
                        EntrySpec(first.account_id, first.amount_minor * 2),
                        *(EntrySpec(e.account_id, e.amount_minor * 2) for e in rest),
                    ),
                    kind=spec.kind,
                )
            elif how == 2:  # the same request through a batch, beside another key's conflict
                outcomes = self.book.tx(
                    lambda c: post_transfers(
                        c, tenant_id=self.tenant_id, specs=[spec, other], actor=actor, now=self.now
                    )
                )
                assert isinstance(outcomes[0], PostedTransfer) and outcomes[0].replayed
                assert isinstance(outcomes[1], KopilkaError)
                assert outcomes[1].code == "idempotency_conflict"
                return
            with pytest.raises(KopilkaError) as caught:
                self.book.tx(
                    lambda c: post_one(
                        c, tenant_id=self.tenant_id, spec=other, actor=actor, now=self.now
                    )
                )
            assert caught.value.code == "idempotency_conflict"

        @rule(
            plan=st.lists(
                st.tuples(st.sampled_from(["accrue", "spend", "top_up", "pay"]), amounts),
                min_size=2,
                max_size=5,
            )
        )
        def batch(self, plan: list[tuple[str, int]]) -> None:
            """Many requests in one transaction, each judged on its own, in order."""
            wallet = {"accrue": self.lot1, "spend": self.lot1, "top_up": self.w1, "pay": self.w1}
            specs = []
            for what, amount in plan:
                if what in ("accrue", "top_up"):
                    source = self.iss if what == "accrue" else self.cash
                    legs = (EntrySpec(source, -amount), EntrySpec(wallet[what], amount))
                else:
                    sink = self.red if what == "spend" else self.rev
                    legs = (EntrySpec(wallet[what], -amount), EntrySpec(sink, amount))
                specs.append(TransferSpec(new_key(), legs, kind=what))
            trial = copy.deepcopy(self.model)
            # One look at the accounts for the whole batch: lapsed holds end once, first.
            for spec in specs:
                for e in spec.entries:
                    if e.amount_minor < 0:
                        trial.sweep(e.account_id, self.now)
            at = trial.posted_at(self.now, {e.account_id for x in specs for e in x.entries})
            expected = [trial.judge(spec, self.now, sweep=False, at=at) for spec in specs]
            outcomes = self.book.tx(
                lambda c: post_transfers(
                    c, tenant_id=self.tenant_id, specs=specs, actor=actor, now=self.now
                )
            )
            got = [o.code if isinstance(o, KopilkaError) else None for o in outcomes]
            assert got == expected, f"batch outcomes {got}, the model expected {expected}"
            posted = [o for o in outcomes if isinstance(o, PostedTransfer)]
            self.name_lots(trial, [p.id for p in posted])
            self.model = trial
            for spec, outcome in zip(specs, outcomes, strict=True):
                if isinstance(outcome, PostedTransfer):
                    self.posted.append((spec, outcome.id))

        # ----- what must hold after every step

        @invariant()
        def agrees_with_the_model(self) -> None:
            model, now = self.model, self.now
            with read_only(engine) as conn:
                problems = verify(conn, tenant_id=self.tenant_id)
                assert problems == [], "\n".join(map(str, problems))
                for account in self.ordinary + self.hot:
                    view = get_account(conn, self.tenant_id, account, now=now)
                    got = (view.balance_minor, view.held_minor, view.available_minor)
                    want = (
                        model.balance[account],
                        model.held[account],
                        model.available(account, now),
                    )
                    assert got == want, (
                        f"account {account}: (balance, held, available) {got} != {want}"
                    )
                for account in (self.lot1, self.lot2):
                    got_lots = [
                        (lot.id, lot.remaining_minor)
                        for lot in account_lots(conn, self.tenant_id, account)
                    ]
                    assert got_lots == model.open_lots(account), f"lots of {account}"
                counts = [
                    conn.execute(
                        select(func.count())
                        .select_from(table)
                        .where(table.c.tenant_id == self.tenant_id)
                    ).scalar_one()
                    for table in (transfers, holds, hold_resolutions)
                ]
                resolved = sum(1 for h in model.holds if h.status != "pending")
                assert counts == [model.transfers, len(model.holds), resolved]
                self._check_history(conn)

        def _moment(self) -> datetime:
            """A past moment: often exactly when something was posted, or just around it."""
            history = self.model.history
            if history and self.rng.random() < 0.7:
                moment = self.rng.choice(history)[0]
                return moment + self.rng.choice(
                    [timedelta(0), timedelta(microseconds=-1), timedelta(microseconds=1)]
                )
            span = (self.now - self.start) + timedelta(seconds=2)
            return self.start - timedelta(seconds=1) + span * self.rng.random()

        def _check_history(self, conn: Connection) -> None:
            model = self.model
            moment = self._moment()
            for account in self.rng.sample(self.ordinary + self.hot, 4):
                got = balance_at(conn, self.tenant_id, account, moment)
                assert got == model.balance_at(account, moment), f"balance of {account} at {moment}"
            start, end = sorted([self._moment(), self._moment()])
            if end == start:
                end = start + timedelta(microseconds=1)
            group = self.rng.choice([self.bonus_group, self.rub_group])
            for accounts in ([self.rng.choice(group)], group):
                t = turnovers(conn, self.tenant_id, accounts, start, end)
                got = (t.opening_minor, t.debit_minor, t.credit_minor, t.closing_minor)
                assert got == model.turnover(accounts, start, end), f"turnovers of {accounts}"

    return Ledger


def test_random_operations_agree_with_the_model(engine: Engine) -> None:
    run_state_machine_as_test(
        make_machine(engine),
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
