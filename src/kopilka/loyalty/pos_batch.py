"""Offline batches applied set by set (SPEC P-6): the same outcome as
``pos._apply_chunk``, item by item, at a fraction of the statements.

A chunk is one transaction. Its cards are locked ``FOR UPDATE`` in id order in one query
(PostgreSQL; SQLite runs one writer at a time) *before* the chunk's known check ids are
read, so an upload of the same checks running at the same moment waits for this one and
then finds them all as duplicates. The wallets' figures are read in one go.

Items are then taken in order and gathered into *runs* in which each card and each check
id appears at most once. A run is quoted in Python from the figures read (exactly what
``commit_check(offline=True)`` computes), posted with one ``post_transfers`` call, and its
checks, purchases and card figures written in bulk; the figures of its cards are read
again before a later item of the chunk uses one of them. A run whose postings would not
come out exactly as one by one (a transfer refused, a posting moment that differs between
its items) is rolled back to its savepoint and applied by ``pos._apply_chunk`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, func, select

from kopilka.core.actor import Actor
from kopilka.core.bulk import insert_rows, new_ids, update_rows
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import one_of
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.ledger.accounts import AccountView, Policy, system_account_id
from kopilka.ledger.posting import (
    PostedTransfer,
    TransferSpec,
    _Lot,
    _lot_spendable,
    post_transfers,
    simple_transfer,
)
from kopilka.ledger.schema import accounts, balance_shards, hold_resolutions, holds, lots
from kopilka.loyalty import pos
from kopilka.loyalty.cards import CardView, card_view, normalise_number
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import Program, lot_dates
from kopilka.loyalty.schema import card_purchases, cards, pos_checks

_CHECK_COLUMNS = (
    "id",
    "tenant_id",
    "terminal_id",
    "check_id",
    "request_hash",
    "card_id",
    "status",
    "total_minor",
    "discount_minor",
    "points_minor",
    "money_minor",
    "accrued_minor",
    "spent_minor",
    "refunded_minor",
    "debt_minor",
    "spend_transfer_id",
    "accrual_transfer_id",
    "lines",
    "closed_at",
    "created_at",
)
_PURCHASE_COLUMNS = ("tenant_id", "card_id", "pos_check_id", "amount_minor", "checks", "at")


@dataclass(frozen=True, slots=True)
class _Wallet:
    """What ``card_view`` takes of a wallet, and the moments that bound a posting's."""

    balance_minor: int
    held_minor: int
    available_minor: int | None
    created_at: datetime
    last_posted_at: datetime | None


@dataclass(slots=True)
class _Planned:
    index: int
    item: pos.BatchItem
    check_id: str
    request_hash: str
    total_minor: int
    card: CardView
    wallet: _Wallet
    program: Program
    quote: pos.Quote
    debt_minor: int


def apply_chunk(
    conn: Connection,
    tenant_id: int,
    terminal_id: int,
    chunk: Sequence[pos.BatchItem | KopilkaError],
    actor: Actor,
    now: datetime | None,
) -> list[pos.BatchResult]:
    """``pos._apply_chunk``'s results and writes, in one transaction, set by set."""
    return _Chunk(conn, tenant_id, terminal_id, list(chunk), actor, now).apply()


class _Chunk:
    def __init__(
        self,
        conn: Connection,
        tenant_id: int,
        terminal_id: int,
        items: list[pos.BatchItem | KopilkaError],
        actor: Actor,
        now: datetime | None,
    ) -> None:
        self.conn = conn
        self.tenant_id = tenant_id
        self.terminal_id = terminal_id
        self.items = items
        self.actor = actor
        self.now = as_utc(now) if now else utcnow()
        self.results: list[pos.BatchResult | None] = [None] * len(items)
        self.known: dict[str, Any] = {}  # check id -> its pos_checks row (+ card_number)
        self.by_number: dict[str, Any] = {}  # card number -> its (locked) row
        self.views: dict[int, tuple[CardView, _Wallet]] = {}
        self.last_use: dict[int, int] = {}  # card id -> the last position using it
        self.programs: dict[int, Program | KopilkaError] = {}
        self.system: dict[tuple[str, str], int] = {}
        self.run: list[_Planned] = []

    # ------------------------------------------------------------------ the pass

    def apply(self) -> list[pos.BatchResult]:
        shaped: dict[int, tuple[str, str]] = {}
        numbers: dict[int, str] = {}
        for index, item in enumerate(self.items):
            if isinstance(item, KopilkaError):
                check_id = str(item.params.get("check_id", ""))
                self.results[index] = pos.BatchResult(check_id, "refused", item.code, item.detail)
                continue
            try:
                shaped[index] = _shape(item)
            except KopilkaError as error:
                self._refuse(index, error)
                continue
            with suppress(KopilkaError):  # refused in its turn, unless its check is known
                numbers[index] = normalise_number(item.card_number)
        self._lock_cards(sorted(set(numbers.values())))
        for index, number in numbers.items():
            row = self.by_number.get(number)
            if row is not None:
                self.last_use[row.id] = index
        self.known = self._read_known([check_id for check_id, _ in shaped.values()])
        self._load_views(list(self.by_number.values()))

        run_checks: set[str] = set()
        run_cards: set[int] = set()
        for index, (check_id, request_hash) in shaped.items():
            item = self.items[index]
            assert isinstance(item, pos.BatchItem)
            if check_id in run_checks:
                self._flush(index)
                run_checks.clear()
                run_cards.clear()
            known = self.known.get(check_id)
            if known is not None:
                self._known_again(index, known, request_hash)
                continue
            try:
                total = pos.check_total(item.lines, item.total_minor)
                row = self._usable_card(item.card_number)
                program = self._program(row.program_id)
            except KopilkaError as error:
                self._refuse(index, error)
                continue
            if row.id in run_cards:
                self._flush(index)
                run_checks.clear()
                run_cards.clear()
            card, wallet = self.views[row.id]
            quote = pos._as_paid(program, card, total, item.points_minor)
            debt = quote.points_minor - min(quote.points_minor, card.available_minor)
            quote = replace(quote, points_minor=quote.points_minor - debt)
            self.run.append(
                _Planned(
                    index, item, check_id, request_hash, total, card, wallet, program, quote, debt
                )
            )
            run_checks.add(check_id)
            run_cards.add(row.id)
        self._flush(len(self.items))
        assert all(r is not None for r in self.results)
        return [r for r in self.results if r is not None]

    def _refuse(self, index: int, error: KopilkaError) -> None:
        item = self.items[index]
        assert isinstance(item, pos.BatchItem)
        self.results[index] = pos.BatchResult(item.check_id, "refused", error.code, error.detail)

    def _known_again(self, index: int, row: Any, request_hash: str) -> None:
        item = self.items[index]
        assert isinstance(item, pos.BatchItem)
        if row.request_hash != request_hash:
            self._refuse(
                index,
                Conflict(
                    E.CHECK_CONFLICT,
                    f"check {row.check_id!r} of this terminal was committed with other content",
                ),
            )
            return
        check = pos._committed(self.conn, row, replayed=True, card_number=row.card_number)
        self.results[index] = pos.BatchResult(
            item.check_id, "duplicate", None, None, check.debt_minor, check
        )

    def _usable_card(self, number: str) -> Any:
        """``card_for_use``'s refusals, on the row locked for the chunk."""
        wanted = normalise_number(number)
        row = self.by_number.get(wanted)
        if row is None:
            raise NotFound(E.CARD_NOT_FOUND, f"no card numbered {wanted}", number=wanted)
        if row.status == "blocked":
            reason = row.blocked_reason or ""
            raise Refused(
                E.CARD_BLOCKED,
                f"card {wanted} is blocked" + (f": {reason}" if reason else ""),
                number=wanted,
                reason=reason,
            )
        card, _ = self.views[row.id]
        if card.is_expired(self.now):
            raise Refused(E.CARD_EXPIRED, f"card {wanted} has expired", number=wanted)
        return row

    def _program(self, program_id: int) -> Program:
        found = self.programs.get(program_id)
        if found is None:
            try:
                found = pos._enabled_program(self.conn, self.tenant_id, program_id)
            except KopilkaError as error:
                found = error
            self.programs[program_id] = found
        if isinstance(found, KopilkaError):
            raise found
        return found

    # ------------------------------------------------------------------ reading

    def _lock_cards(self, numbers: list[str]) -> None:
        if not numbers:
            return
        query = (
            select(cards)
            .where(cards.c.tenant_id == self.tenant_id, one_of(self.conn, cards.c.number, numbers))
            .order_by(cards.c.id)
            .with_for_update()
        )
        self.by_number = {row.number: row for row in self.conn.execute(query)}

    def _read_known(self, check_ids: list[str]) -> dict[str, Any]:
        if not check_ids:
            return {}
        query = (
            select(pos_checks, cards.c.number.label("card_number"))
            .join(cards, cards.c.id == pos_checks.c.card_id)
            .where(
                pos_checks.c.tenant_id == self.tenant_id,
                pos_checks.c.terminal_id == self.terminal_id,
                one_of(self.conn, pos_checks.c.check_id, sorted(set(check_ids))),
            )
        )
        return {row.check_id: row for row in self.conn.execute(query)}

    def _load_views(self, rows: list[Any]) -> None:
        if not rows:
            return
        wallets = _wallets(self.conn, self.tenant_id, [row.account_id for row in rows], self.now)
        for row in rows:
            wallet = wallets[row.account_id]
            self.views[row.id] = (card_view(row, cast(AccountView, wallet)), wallet)
            self.by_number[row.number] = row

    def _reload(self, card_ids: list[int]) -> None:
        if not card_ids:
            return
        rows = self.conn.execute(
            select(cards).where(one_of(self.conn, cards.c.id, card_ids)).order_by(cards.c.id)
        ).all()
        self._load_views(list(rows))

    def _system(self, unit: str, purpose: str) -> int:
        key = (unit, purpose)
        found = self.system.get(key)
        if found is None:
            found = system_account_id(
                self.conn,
                tenant_id=self.tenant_id,
                unit_code=unit,
                purpose=purpose,
                actor=self.actor,
            )
            self.system[key] = found
        return found

    # ------------------------------------------------------------------ writing

    def _flush(self, position: int) -> None:
        """Apply the run; ``position`` is the first item of the chunk after it."""
        run, self.run = self.run, []
        if not run:
            return
        savepoint = self.conn.begin_nested()
        if self._post_and_write(run):
            savepoint.commit()
        else:
            savepoint.rollback()
            self.system.clear()  # an account opened under the savepoint is gone
            fallback = pos._apply_chunk(
                self.conn,
                self.tenant_id,
                self.terminal_id,
                [p.item for p in run],
                self.actor,
                self.now,
            )
            for planned, result in zip(run, fallback, strict=True):
                self.results[planned.index] = result
            self.known.update(self._read_known([p.check_id for p in run]))
        self._reload(
            sorted({p.card.id for p in run if self.last_use.get(p.card.id, -1) >= position})
        )

    def _post_and_write(self, run: list[_Planned]) -> bool:
        """Post the run's transfers and write its rows; False (with things written that
        the caller rolls back) when it would not come out exactly as item by item."""
        specs: list[TransferSpec] = []
        parts: list[tuple[int | None, int | None]] = []  # per item: its specs' positions
        posting: list[list[int]] = []  # per item that posts: the accounts it touches
        for p in run:
            q, unit = p.quote, p.program.unit.code
            spend = accrual = None
            touched = [p.card.account_id]
            if q.points_minor:
                redeemed = self._system(unit, "redeemed")
                touched.append(redeemed)
                spend = len(specs)
                specs.append(
                    simple_transfer(
                        f"pos:{self.terminal_id}:{p.check_id}:spend",
                        debit_account_id=p.card.account_id,
                        credit_account_id=redeemed,
                        amount_minor=q.points_minor,
                        kind="spend",
                        description=f"check {p.check_id}",
                        meta={"check": p.check_id, "terminal": self.terminal_id},
                    )
                )
            if q.accrual_minor:
                issuance = self._system(unit, "issuance")
                touched.append(issuance)
                available_at, expires_at = lot_dates(p.program, self.now)
                accrual = len(specs)
                specs.append(
                    simple_transfer(
                        f"pos:{self.terminal_id}:{p.check_id}:accrual",
                        debit_account_id=issuance,
                        credit_account_id=p.card.account_id,
                        amount_minor=q.accrual_minor,
                        kind="accrual",
                        description=f"{q.accrual_bp / 100:g} % of check {p.check_id}",
                        meta={
                            "check": p.check_id,
                            "terminal": self.terminal_id,
                            "rate_bp": q.accrual_bp,
                        },
                        available_at=available_at,
                        expires_at=expires_at,
                    )
                )
            parts.append((spend, accrual))
            if len(touched) > 1:
                posting.append(touched)
        if not self._one_moment(run, posting):
            return False
        outcomes = (
            post_transfers(
                self.conn, tenant_id=self.tenant_id, specs=specs, actor=self.actor, now=self.now
            )
            if specs
            else []
        )
        posted: list[PostedTransfer] = []
        for outcome in outcomes:
            if not isinstance(outcome, PostedTransfer):
                return False
            posted.append(outcome)

        ids = new_ids(self.conn, pos_checks, len(run))
        check_rows = []
        purchase_rows = []
        card_rows = []
        for p, row_id, (spend, accrual) in zip(run, ids, parts, strict=True):
            q = p.quote
            check_rows.append(
                (
                    row_id,
                    self.tenant_id,
                    self.terminal_id,
                    p.check_id,
                    p.request_hash,
                    p.card.id,
                    "committed",
                    p.total_minor,
                    q.discount_minor,
                    q.points_money_minor,
                    q.money_minor,
                    q.accrual_minor,
                    q.points_minor,
                    0,
                    p.debt_minor,
                    None if spend is None else posted[spend].id,
                    None if accrual is None else posted[accrual].id,
                    p.item.lines,
                    as_utc(p.item.closed_at) if p.item.closed_at else self.now,
                    self.now,
                )
            )
            purchase_rows.append((self.tenant_id, p.card.id, row_id, q.money_minor, 1, self.now))
            # pos._accumulate and the debt, from the locked row's figures.
            accumulation = max(0, p.card.accumulation_minor + q.money_minor)
            tier = p.program.tier_for(accumulation)
            card_rows.append(
                (
                    accumulation,
                    max(p.card.checks_count + 1, 0),
                    tier.id if tier else None,
                    p.card.debt_minor + p.debt_minor,
                    p.card.id,
                )
            )
        insert_rows(self.conn, pos_checks, _CHECK_COLUMNS, check_rows)
        insert_rows(self.conn, card_purchases, _PURCHASE_COLUMNS, purchase_rows)
        update_rows(
            self.conn,
            cards,
            "id",
            ("accumulation_minor", "checks_count", "tier_id", "debt_minor"),
            card_rows,
        )
        written = {
            row.id: row
            for row in self.conn.execute(
                select(pos_checks, cards.c.number.label("card_number"))
                .join(cards, cards.c.id == pos_checks.c.card_id)
                .where(one_of(self.conn, pos_checks.c.id, ids))
            )
        }
        for p, row_id in zip(run, ids, strict=True):
            row = written[row_id]
            self.known[p.check_id] = row
            check = pos._committed(self.conn, row, replayed=False, card_number=p.card.number)
            self.results[p.index] = pos.BatchResult(
                p.item.check_id, "applied", None, None, check.debt_minor, check
            )
        return True

    def _one_moment(self, run: list[_Planned], posting: list[list[int]]) -> bool:
        """Whether one ``post_transfers`` call posts every item of the run at the moment
        it would post it alone: never before an account's last posting or opening."""
        if not posting:
            return True
        bounds: dict[int, list[datetime]] = {}
        for p in run:
            bounds[p.card.account_id] = [p.wallet.created_at] + (
                [p.wallet.last_posted_at] if p.wallet.last_posted_at else []
            )
        system = sorted({a for touched in posting for a in touched} - set(bounds))
        if system:
            for row in self.conn.execute(
                select(accounts.c.id, accounts.c.created_at, accounts.c.last_posted_at).where(
                    one_of(self.conn, accounts.c.id, system)
                )
            ):
                bounds[row.id] = [row.created_at] + (
                    [row.last_posted_at] if row.last_posted_at else []
                )
        moments = {
            max([self.now, *(as_utc(m) for a in touched for m in bounds[a])]) for touched in posting
        }
        return len(moments) == 1


def _shape(item: pos.BatchItem) -> tuple[str, str]:
    """``commit_check``'s checks before it looks the check up: (check id, request hash)."""
    check_id = (item.check_id or "").strip()
    if not 1 <= len(check_id) <= 100:
        raise InvalidInput(E.INVALID_CHECK, "a check id of 1 to 100 characters is required")
    points = item.points_minor
    if not isinstance(points, int) or isinstance(points, bool) or points < 0:
        raise InvalidInput(E.INVALID_CHECK, "points spent are a whole amount, zero or more")
    request_hash = pos._hash(
        {
            "card": item.card_number.strip(),
            "lines": item.lines,
            "points": points,
            "total": item.total_minor,
        }
    )
    return check_id, request_hash


def _wallets(
    conn: Connection, tenant_id: int, account_ids: list[int], now: datetime
) -> dict[int, _Wallet]:
    """The wallets' figures as ``get_account`` gives them at ``now``, read in one go."""
    rows = conn.execute(
        select(
            accounts.c.id,
            accounts.c.policy,
            accounts.c.credit_limit_minor,
            accounts.c.uses_lots,
            accounts.c.is_hot,
            accounts.c.balance_minor,
            accounts.c.held_minor,
            accounts.c.created_at,
            accounts.c.last_posted_at,
        ).where(accounts.c.tenant_id == tenant_id, one_of(conn, accounts.c.id, account_ids))
    ).all()
    spendable: dict[int, int] = {row.id: 0 for row in rows if row.uses_lots}
    if spendable:
        for lot in conn.execute(
            select(
                lots.c.id,
                lots.c.account_id,
                lots.c.remaining_minor,
                lots.c.available_at,
                lots.c.expires_at,
            ).where(one_of(conn, lots.c.account_id, list(spendable)), lots.c.remaining_minor > 0)
        ):
            if _lot_spendable(
                _Lot(lot.id, lot.remaining_minor, lot.available_at, lot.expires_at), now
            ):
                spendable[lot.account_id] += lot.remaining_minor
    lapsed: dict[int, int] = {}
    holding = [row.id for row in rows if row.held_minor != 0]
    if holding:
        lapsed = {
            account_id: int(amount)
            for account_id, amount in conn.execute(
                select(holds.c.debit_account_id, func.sum(holds.c.amount_minor))
                .outerjoin(hold_resolutions, hold_resolutions.c.hold_id == holds.c.id)
                .where(
                    one_of(conn, holds.c.debit_account_id, holding),
                    holds.c.expires_at <= now,
                    hold_resolutions.c.hold_id.is_(None),
                )
                .group_by(holds.c.debit_account_id)
            )
        }
    hot: dict[int, int] = {}
    hot_ids = [row.id for row in rows if row.is_hot]
    if hot_ids:
        hot = {
            account_id: int(total)
            for account_id, total in conn.execute(
                select(balance_shards.c.account_id, func.sum(balance_shards.c.balance_minor))
                .where(one_of(conn, balance_shards.c.account_id, hot_ids))
                .group_by(balance_shards.c.account_id)
            )
        }
    found: dict[int, _Wallet] = {}
    for row in rows:
        balance = hot.get(row.id, 0) if row.is_hot else row.balance_minor
        held = row.held_minor - lapsed.get(row.id, 0) if row.held_minor else 0
        available: int | None
        if row.policy == Policy.UNLIMITED:
            available = None
        elif row.uses_lots:
            available = max(spendable[row.id] - held, 0)
        else:
            floor = -row.credit_limit_minor if row.policy == Policy.CREDIT_LIMIT else 0
            available = max(balance - held - floor, 0)
        found[row.id] = _Wallet(
            balance, row.held_minor, available, as_utc(row.created_at), row.last_posted_at
        )
    return found
