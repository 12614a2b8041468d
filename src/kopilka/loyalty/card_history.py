"""A card's history (SPEC C-11): every change of the card, explained, with its balance
after each. It only reads.

The history merges several sources, each read a page at a time in (moment, source, id)
order, so a cursor continues where the last page ended whatever source it came from:
the wallet's ledger entries (checks, refunds, documents, imports, expiry, captures), holds
placed and ended, checks and refunds that moved no points, and the card's own record in
the audit trail (issued, blocked, moved to another program, ...).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, false, or_, select
from sqlalchemy.sql.elements import ColumnElement

from kopilka.core.clock import as_utc
from kopilka.core.db import one_of
from kopilka.core.errors import InvalidInput, NotFound
from kopilka.core.money import format_amount
from kopilka.ledger.schema import accounts, entries, hold_resolutions, holds, lots, transfers, units
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import get_program
from kopilka.loyalty.schema import cards, loyalty_redemptions, pos_checks, pos_refunds
from kopilka.tenancy.schema import audit_events, terminals, users


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One change of a card, explained. ``amount_minor`` is the change of its points
    (None for changes that move no points: holds, status, holder, checks without points);
    ``balance_after_minor`` is the balance right after it."""

    at: datetime
    kind: str
    title: str
    amount_minor: int | None
    balance_after_minor: int
    details: dict[str, Any]
    transfer_id: int | None
    cursor: str


@dataclass(frozen=True, slots=True)
class CardHistory:
    card_id: int
    number: str
    unit_code: str
    exponent: int
    currency_exponent: int
    items: list[HistoryItem]
    next_cursor: str | None


# The sources of a card's history, in their order at one moment.
_LEDGER, _HOLD, _HOLD_END, _CHECK, _REFUND, _AUDIT = range(6)
MAX_HISTORY_PAGE = 500


def encode_history_cursor(at: datetime, rank: int, item_id: int) -> str:
    text = f"{as_utc(at).isoformat()}|{rank}|{item_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_history_cursor(cursor: str) -> tuple[datetime, int, int]:
    try:
        text = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
        at, rank, item_id = text.split("|")
        return as_utc(datetime.fromisoformat(at)), int(rank), int(item_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidInput(
            E.INVALID_REPORT, "the cursor is not one this history gave out"
        ) from error


def _after(
    at: Any, item_id: Any, rank: int, cursor: tuple[datetime, int, int] | None, newest: bool
) -> ColumnElement[bool] | None:
    """Rows of this source that come after the cursor in (at, rank, id) order."""
    if cursor is None:
        return None
    c_at, c_rank, c_id = cursor
    if not newest:
        if rank > c_rank:
            return at >= c_at
        if rank < c_rank:
            return at > c_at
        return or_(at > c_at, and_(at == c_at, item_id > c_id))
    if rank < c_rank:
        return at <= c_at
    if rank > c_rank:
        return at < c_at
    return or_(at < c_at, and_(at == c_at, item_id < c_id))


def card_history(
    conn: Connection,
    tenant_id: int,
    card_id: int,
    *,
    limit: int = 50,
    cursor: str | None = None,
    newest_first: bool = False,
) -> CardHistory:
    """SPEC C-11: every change of the card, each explained, with the balance after it.

    Points: checks (terminal, check id, total, money paid, rate, the tier that rate is,
    points spent and accrued, debt), refunds (which check, the share refunded), manual
    documents (reason, who), imports, lot expiry (which lot, accrued when), hold captures,
    bills paid with points through the processing API or a hotel folio, and points such
    payments gave back (``redemption``, ``redemption_refund``).
    No points: holds placed, voided or expired, checks that moved no points, refunds that
    took nothing back, and the card's own record (issued, blocked, unblocked, moved to
    another program, expiry date, holder). Tier moves are not recorded as events (the
    nightly routine moves tiers in bulk); each check shows the tier its rate came from.

    Paged by ``cursor`` (``next_cursor`` of the previous page), oldest first or newest.
    """
    if not 1 <= limit <= MAX_HISTORY_PAGE:
        raise InvalidInput(E.INVALID_REPORT, f"a page has 1 to {MAX_HISTORY_PAGE} items")
    card = conn.execute(
        select(cards, units.c.code.label("unit_code"), units.c.exponent)
        .join(accounts, accounts.c.id == cards.c.account_id)
        .join(units, units.c.id == accounts.c.unit_id)
        .where(cards.c.tenant_id == tenant_id, cards.c.id == card_id)
    ).first()
    if card is None:
        raise NotFound(E.CARD_NOT_FOUND, f"card {card_id} does not exist", card_id=card_id)
    program = get_program(conn, tenant_id, card.program_id)
    position = decode_history_cursor(cursor) if cursor else None
    source = _HistorySource(conn, tenant_id, card, program, position, newest_first, limit + 1)
    merged = sorted(
        [*source.ledger(), *source.holds(), *source.quiet_checks(), *source.audit()],
        key=lambda pair: pair[0],
        reverse=newest_first,
    )[: limit + 1]
    more = len(merged) > limit
    items = [item for _, item in merged[:limit]]
    return CardHistory(
        card_id=card.id,
        number=card.number,
        unit_code=card.unit_code,
        exponent=card.exponent,
        currency_exponent=program.currency_exponent,
        items=items,
        next_cursor=items[-1].cursor if more and items else None,
    )


_Keyed = tuple[tuple[datetime, int, int], HistoryItem]


class _HistorySource:
    """Reads one page's worth of each source of a card's history and explains it."""

    def __init__(
        self,
        conn: Connection,
        tenant_id: int,
        card: Any,
        program: Any,
        position: tuple[datetime, int, int] | None,
        newest: bool,
        limit: int,
    ) -> None:
        self.conn = conn
        self.tenant_id = tenant_id
        self.card = card
        self.program = program
        self.position = position
        self.newest = newest
        self.limit = limit

    def _page(self, query: Any, at: Any, item_id: Any, rank: int) -> list[Any]:
        after = _after(at, item_id, rank, self.position, self.newest)
        if after is not None:
            query = query.where(after)
        order = (at.desc(), item_id.desc()) if self.newest else (at, item_id)
        return list(self.conn.execute(query.order_by(*order).limit(self.limit)))

    def _item(
        self,
        at: datetime,
        rank: int,
        item_id: int,
        kind: str,
        title: str,
        amount: int | None,
        balance: int,
        details: dict[str, Any],
        transfer_id: int | None = None,
    ) -> _Keyed:
        at = as_utc(at)
        cursor = encode_history_cursor(at, rank, item_id)
        item = HistoryItem(at, kind, title, amount, balance, details, transfer_id, cursor)
        return (at, rank, item_id), item

    def balance_at(self, moment: datetime) -> int:
        row = self.conn.execute(
            select(entries.c.balance_after_minor)
            .where(entries.c.account_id == self.card.account_id, entries.c.posted_at <= moment)
            .order_by(entries.c.posted_at.desc(), entries.c.account_seq.desc())
            .limit(1)
        ).first()
        return 0 if row is None else int(row[0])

    def _points(self, amount: int) -> str:
        return format_amount(amount, self.card.exponent)

    # ----------------------------------------------------------------- ledger

    def ledger(self) -> list[_Keyed]:
        rows = self._page(
            select(
                entries.c.account_seq,
                entries.c.posted_at,
                entries.c.amount_minor,
                entries.c.balance_after_minor,
                transfers.c.id.label("transfer_id"),
                transfers.c.kind,
                transfers.c.description,
                transfers.c.meta,
                transfers.c.idempotency_key,
                transfers.c.actor_type,
                transfers.c.actor_id,
                transfers.c.hold_id,
                transfers.c.corrects_transfer_id,
            )
            .join(transfers, transfers.c.id == entries.c.transfer_id)
            .where(entries.c.account_id == self.card.account_id),
            entries.c.posted_at,
            entries.c.account_seq,
            _LEDGER,
        )
        explain = _Explainer(self.conn, self.tenant_id, self.program, self.card, rows)
        out = []
        for row in rows:
            kind, title, details = explain(row)
            out.append(
                self._item(
                    row.posted_at,
                    _LEDGER,
                    row.account_seq,
                    kind,
                    title,
                    row.amount_minor,
                    row.balance_after_minor,
                    details,
                    row.transfer_id,
                )
            )
        return out

    # ----------------------------------------------------------------- holds

    def holds(self) -> list[_Keyed]:
        placed = self._page(
            select(holds).where(
                holds.c.tenant_id == self.tenant_id,
                holds.c.debit_account_id == self.card.account_id,
            ),
            holds.c.created_at,
            holds.c.id,
            _HOLD,
        )
        out = []
        for row in placed:
            details = {"hold_id": row.id, "amount_minor": row.amount_minor}
            details |= {"expires_at": as_utc(row.expires_at).isoformat()}
            details |= {"description": row.description}
            title = f"{self._points(row.amount_minor)} held: {row.description or 'a hold'}"
            out.append(
                self._item(
                    row.created_at,
                    _HOLD,
                    row.id,
                    "hold",
                    title,
                    None,
                    self.balance_at(as_utc(row.created_at)),
                    details,
                )
            )
        ended = self._page(
            select(hold_resolutions, holds.c.amount_minor.label("held_minor"))
            .join(holds, holds.c.id == hold_resolutions.c.hold_id)
            .where(
                holds.c.tenant_id == self.tenant_id,
                holds.c.debit_account_id == self.card.account_id,
                hold_resolutions.c.status != "captured",  # the capture is a ledger line
            ),
            hold_resolutions.c.resolved_at,
            hold_resolutions.c.hold_id,
            _HOLD_END,
        )
        for row in ended:
            title = f"hold {row.hold_id} {row.status}: {self._points(row.held_minor)} released"
            out.append(
                self._item(
                    row.resolved_at,
                    _HOLD_END,
                    row.hold_id,
                    f"hold_{row.status}",
                    title,
                    None,
                    self.balance_at(as_utc(row.resolved_at)),
                    {"hold_id": row.hold_id, "amount_minor": row.held_minor},
                )
            )
        return out

    # ----------------------------------------------------------------- checks without points

    def quiet_checks(self) -> list[_Keyed]:
        """Checks and refunds that moved no points (so have no ledger line): they still
        fed the accumulation, or left a debt."""
        names = dict(
            self.conn.execute(
                select(terminals.c.id, terminals.c.name).where(
                    terminals.c.tenant_id == self.tenant_id
                )
            ).all()
        )
        checks = self._page(
            select(pos_checks).where(
                pos_checks.c.card_id == self.card.id,
                pos_checks.c.spend_transfer_id.is_(None),
                pos_checks.c.accrual_transfer_id.is_(None),
            ),
            pos_checks.c.created_at,
            pos_checks.c.id,
            _CHECK,
        )
        out = []
        for row in checks:
            details = _check_details(row, names.get(row.terminal_id))
            title = f"check {row.check_id} at {details['terminal']}: no points"
            if row.debt_minor:
                title += f", {self._points(row.debt_minor)} owed"
            out.append(
                self._item(
                    row.created_at,
                    _CHECK,
                    row.id,
                    "check",
                    title,
                    None,
                    self.balance_at(as_utc(row.created_at)),
                    details,
                )
            )
        refunds = self._page(
            select(pos_refunds, pos_checks.c.check_id, pos_checks.c.terminal_id)
            .join(pos_checks, pos_checks.c.id == pos_refunds.c.pos_check_id)
            .where(
                pos_checks.c.card_id == self.card.id,
                pos_refunds.c.points_returned_minor == 0,
                pos_refunds.c.accrual_reversed_minor == 0,
            ),
            pos_refunds.c.created_at,
            pos_refunds.c.id,
            _REFUND,
        )
        for row in refunds:
            details = {
                "check_id": row.check_id,
                "terminal": names.get(row.terminal_id),
                "refund_id": row.refund_id,
                "amount_minor": row.amount_minor,
                "debt_minor": row.debt_minor,
            }
            title = f"refund {row.refund_id} of check {row.check_id}: no points"
            if row.debt_minor:
                title += f", {self._points(row.debt_minor)} owed"
            out.append(
                self._item(
                    row.created_at,
                    _REFUND,
                    row.id,
                    "refund",
                    title,
                    None,
                    self.balance_at(as_utc(row.created_at)),
                    details,
                )
            )
        return out

    # ----------------------------------------------------------------- the card's record

    def audit(self) -> list[_Keyed]:
        """The card's own record from the audit trail: events naming this card alone,
        and group operations that list it among their ``card_ids``."""
        query = select(audit_events).where(
            audit_events.c.tenant_id == self.tenant_id,
            audit_events.c.object_type == "card",
            or_(audit_events.c.object_id == str(self.card.id), audit_events.c.object_id.is_(None)),
        )
        found: list[Any] = []
        position = self.position
        # Group operations (object_id NULL) that do not name this card are skipped, so
        # read on until a page's worth of this card's events is found.
        while len(found) < self.limit:
            after = _after(audit_events.c.at, audit_events.c.id, _AUDIT, position, self.newest)
            page = query.where(after) if after is not None else query
            order = (
                (audit_events.c.at.desc(), audit_events.c.id.desc())
                if self.newest
                else (audit_events.c.at, audit_events.c.id)
            )
            rows = list(self.conn.execute(page.order_by(*order).limit(self.limit)))
            found.extend(r for r in rows if _names_card(r, self.card.id))
            if len(rows) < self.limit:
                break
            position = (as_utc(rows[-1].at), _AUDIT, rows[-1].id)
        out = []
        for row in found[: self.limit]:
            details = dict(row.details or {})
            details.pop("card_ids", None)
            details |= {"who": _who(row.actor_type, row.actor_label)}
            out.append(
                self._item(
                    row.at,
                    _AUDIT,
                    row.id,
                    row.action.replace(".", "_"),
                    _AUDIT_TITLES.get(row.action, row.action),
                    None,
                    self.balance_at(as_utc(row.at)),
                    details,
                )
            )
        return out


_AUDIT_TITLES = {
    "card.issue": "card issued",
    "card.issue_range": "card issued (batch)",
    "card.block": "card blocked",
    "card.unblock": "card unblocked",
    "card.change_program": "moved to another program",
    "card.set_expiry": "expiry date set",
    "card.update_holder": "holder changed",
}


def _names_card(row: Any, card_id: int) -> bool:
    if row.object_id is not None:
        return True
    listed = (row.details or {}).get("card_ids")
    if isinstance(listed, str):  # stored as text by older records
        return str(card_id) in listed.strip("[]").replace(" ", "").split(",")
    return isinstance(listed, list) and card_id in listed


def _who(actor_type: str, label: str | None) -> str:
    return f"{actor_type}: {label}" if label else actor_type


def _check_details(row: Any, terminal: str | None) -> dict[str, Any]:
    return {
        "check_id": row.check_id,
        "terminal": terminal or f"terminal {row.terminal_id}",
        "total_minor": row.total_minor,
        "discount_minor": row.discount_minor,
        "money_minor": row.money_minor,
        "points_money_minor": row.points_minor,
        "spent_minor": row.spent_minor,
        "accrued_minor": row.accrued_minor,
        "refunded_minor": row.refunded_minor,
        "debt_minor": row.debt_minor,
        "status": row.status,
        "closed_at": as_utc(row.closed_at).isoformat(),
    }


class _Explainer:
    """Says what each ledger line of a page was, with a few set-based look-ups."""

    def __init__(
        self, conn: Connection, tenant_id: int, program: Any, card: Any, rows: list[Any]
    ) -> None:
        self.program = program
        self.exponent = card.exponent
        ids = [r.transfer_id for r in rows]
        self.terminals = dict(
            conn.execute(
                select(terminals.c.id, terminals.c.name).where(terminals.c.tenant_id == tenant_id)
            ).all()
        )
        self.checks: dict[int, Any] = {}
        if ids:
            for check in conn.execute(
                select(pos_checks).where(
                    pos_checks.c.card_id == card.id,
                    or_(
                        one_of(conn, pos_checks.c.spend_transfer_id, ids),
                        one_of(conn, pos_checks.c.accrual_transfer_id, ids),
                    ),
                )
            ):
                for transfer_id in (check.spend_transfer_id, check.accrual_transfer_id):
                    if transfer_id is not None:
                        self.checks[transfer_id] = check
        self.refunds = self._refunds(conn, card.id, rows)
        self.redemptions = self._redemptions(conn, card.id, rows)
        lot_ids = [int(r.meta["lot_id"]) for r in rows if r.kind == "expiry" and r.meta]
        self.lots = {
            lot.id: lot
            for lot in conn.execute(
                select(lots.c.id, lots.c.amount_minor, lots.c.created_at, transfers.c.kind)
                .join(transfers, transfers.c.id == lots.c.transfer_id)
                .where(one_of(conn, lots.c.id, lot_ids) if lot_ids else false())
            )
        }
        user_ids = [int(r.actor_id) for r in rows if r.actor_type == "user" and r.actor_id]
        self.users = {
            u.id: u.full_name or u.login
            for u in conn.execute(
                select(users.c.id, users.c.login, users.c.full_name).where(
                    one_of(conn, users.c.id, user_ids) if user_ids else false()
                )
            )
        }

    def _refunds(self, conn: Connection, card_id: int, rows: list[Any]) -> dict[int, Any]:
        """Refund rows by transfer id (a refund lists its transfers)."""
        wanted = {
            r.transfer_id for r in rows if r.kind in ("refund", "accrual_reversal", "refund_cancel")
        }
        if not wanted:
            return {}
        found: dict[int, Any] = {}
        for refund in conn.execute(
            select(
                pos_refunds,
                pos_checks.c.check_id,
                pos_checks.c.terminal_id,
                pos_checks.c.total_minor,
            )
            .join(pos_checks, pos_checks.c.id == pos_refunds.c.pos_check_id)
            .where(pos_checks.c.card_id == card_id)
        ):
            for transfer_id in (*(refund.transfer_ids or ()), *(refund.cancel_transfer_ids or ())):
                if int(transfer_id) in wanted:
                    found[int(transfer_id)] = refund
        return found

    def _redemptions(self, conn: Connection, card_id: int, rows: list[Any]) -> dict[int, Any]:
        """Points a processing client wrote off or gave back (kopilka.loyalty.redemptions),
        by transfer id."""
        wanted = [r.transfer_id for r in rows if r.kind in ("spend", "refund")]
        if not wanted:
            return {}
        return {
            found.transfer_id: found
            for found in conn.execute(
                select(loyalty_redemptions).where(
                    loyalty_redemptions.c.card_id == card_id,
                    one_of(conn, loyalty_redemptions.c.transfer_id, wanted),
                )
            )
        }

    def who(self, row: Any) -> str:
        if row.actor_type == "user" and row.actor_id:
            return f"user: {self.users.get(int(row.actor_id), row.actor_id)}"
        if row.actor_type == "terminal" and row.actor_id:
            return f"terminal: {self.terminals.get(int(row.actor_id), row.actor_id)}"
        return row.actor_type

    def _points(self, amount: int) -> str:
        return format_amount(abs(amount), self.exponent)

    def __call__(self, row: Any) -> tuple[str, str, dict[str, Any]]:
        details: dict[str, Any] = {"who": self.who(row), "description": row.description}
        meta = row.meta or {}
        check = self.checks.get(row.transfer_id)
        if check is not None:
            details |= _check_details(check, self.terminals.get(check.terminal_id))
            return self._check(row, check, meta, details)
        refund = self.refunds.get(row.transfer_id)
        if refund is not None:
            share = f"{refund.amount_minor}/{refund.total_minor}"
            details |= {
                "check_id": refund.check_id,
                "terminal": self.terminals.get(refund.terminal_id),
                "refund_id": refund.refund_id,
                "refund_amount_minor": refund.amount_minor,
                "check_total_minor": refund.total_minor,
                "share": share,
                "debt_minor": refund.debt_minor,
            }
            if row.kind == "refund_cancel":
                details["cancelled_at"] = as_utc(refund.cancelled_at).isoformat()
                what = "of accrual back" if row.amount_minor > 0 else "given back leave the card"
                title = (
                    f"refund {refund.refund_id} of check {refund.check_id} taken back: "
                    f"{self._points(row.amount_minor)} {what}"
                )
                return row.kind, title, details
            what = "points back" if row.kind == "refund" else "accrual taken back"
            title = (
                f"refund {refund.refund_id} of check {refund.check_id} ({share}): "
                f"{self._points(row.amount_minor)} {what}"
            )
            return row.kind, title, details
        redemption = self.redemptions.get(row.transfer_id)
        if redemption is not None:
            return self._redemption(row, redemption, details)
        if row.kind in ("manual_accrual", "manual_write_off"):
            details |= {"document_id": meta.get("document"), "reason": row.description}
            verb = "accrued" if row.kind == "manual_accrual" else "written off"
            title = (
                f"document {meta.get('document')}: {self._points(row.amount_minor)} {verb} "
                f"({row.description}) by {details['who']}"
            )
            return row.kind, title, details
        if row.kind == "expiry":
            lot = self.lots.get(int(meta.get("lot_id", 0)))
            if lot is not None:
                details |= {
                    "lot_id": lot.id,
                    "lot_amount_minor": lot.amount_minor,
                    "accrued_at": as_utc(lot.created_at).isoformat(),
                    "accrued_by": lot.kind,
                }
                title = (
                    f"{self._points(row.amount_minor)} expired: lot {lot.id} of "
                    f"{self._points(lot.amount_minor)} accrued {as_utc(lot.created_at):%Y-%m-%d}"
                )
                return "expiry", title, details
        if row.kind == "capture" and row.hold_id is not None:
            details |= {"hold_id": row.hold_id}
            title = f"hold {row.hold_id} captured: {self._points(row.amount_minor)} spent"
            return "capture", title, details
        details |= {"meta": meta}
        sign = "+" if row.amount_minor > 0 else "-"
        title = f"{row.kind}: {sign}{self._points(row.amount_minor)}"
        if row.description:
            title += f" ({row.description})"
        return row.kind, title, details

    def _redemption(
        self, row: Any, redemption: Any, details: dict[str, Any]
    ) -> tuple[str, str, dict[str, Any]]:
        """A hotel bill (or another processing client's payment) paid with the card's
        points, or points such a payment gave back."""
        channel = redemption.channel
        if channel.startswith("terminal:") and channel[9:].isascii() and channel[9:].isdigit():
            where = f"terminal {self.terminals.get(int(channel[9:]), channel[9:])}"
        else:
            where = "hotel folio" if channel == "folio" else channel
        details |= {
            "redemption_id": redemption.id,
            "channel": channel,
            "operation_id": redemption.operation_id,
            "reason": redemption.description,
        }
        points = self._points(row.amount_minor)
        if redemption.kind == "refund":
            details |= {"parent_redemption_id": redemption.parent_id}
            title = f"{points} given back: write-off {redemption.parent_id} ({where})"
            return "redemption_refund", title, details
        title = f"{points} paid with points ({where})"
        if redemption.description:
            title += f": {redemption.description}"
        return "redemption", title, details

    def _check(
        self, row: Any, check: Any, meta: dict[str, Any], details: dict[str, Any]
    ) -> tuple[str, str, dict[str, Any]]:
        terminal = details["terminal"]
        if row.kind == "accrual":
            rate = int(meta.get("rate_bp", self.program.accrual_bp))
            tier = next((t.name for t in self.program.tiers if t.accrual_bp == rate), None)
            details |= {"rate_bp": rate, "tier": tier}
            title = (
                f"check {check.check_id} at {terminal}: {self._points(row.amount_minor)} "
                f"accrued ({format_amount(rate, 2)} %" + (f", tier {tier})" if tier else ")")
            )
            return "check_accrual", title, details
        title = f"check {check.check_id} at {terminal}: {self._points(row.amount_minor)} spent"
        if check.debt_minor:
            title += f", {self._points(check.debt_minor)} owed"
        return "check_spend", title, details
