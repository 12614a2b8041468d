"""Points written off a card by a processing client, and given back (SPEC H-5, L-3, L-4).

A processing client is whoever pays with a card's points outside the POS gateway: this
server's own front desk paying a hotel folio (channel ``folio``) or another system that
reaches the processing API with a terminal key (channel ``terminal:<id>``). Each action
is a row of ``loyalty_redemptions`` and one ledger transfer:

* **redeem**: the card's wallet → ``redeemed:UNIT``, kind ``spend`` (the card's reports
  count it as spent), all or nothing: refused while the card is blocked or expired, its
  program is switched off, the unit is not its program's, or it may spend less now than
  asked (lots not yet active and held points do not count);
* **refund**: ``redeemed:UNIT`` → the wallet, kind ``refund``, naming the write-off it
  corrects; the points come back as a fresh lot with the program's lifetime from now,
  as a POS refund returns spent points. Refunds of one write-off never add up to more
  than it took (``refunded_minor``, also a CHECK in the database).

Both are idempotent by (channel, operation id): the same operation with the same request
answers as the first time and writes nothing (``replayed``), with another request it is
409 ``idempotency_conflict``; a write-off asked again once points of it have been given
back is 409 ``redemption_refunded`` (never "taken" for points the card has again). A
refused request writes nothing, so it may be asked again under the same id and is
judged afresh.

A write-off is named by its ``ref``: the decimal id of its row, as the processing API
shows it. A refund names the write-off by that ref, within the same channel.

Lock order: the card's row (``FOR UPDATE``) first, then the ledger's accounts (in
``post_transfers``). Every write here takes the card before it reads the figures it
judges by, so concurrent write-offs of one card queue on it and never overspend; the
redemption's row is inserted before its transfer, so the same operation asked twice at
once meets the unique key and is retried into a replay (``run_transaction``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import (
    CommonErrorCode,
    Conflict,
    InvalidInput,
    KopilkaError,
    NotFound,
    Refused,
)
from kopilka.core.idempotency import request_hash as _hash
from kopilka.core.money import MAX_ABS_MINOR, format_amount
from kopilka.ledger.accounts import system_account_id
from kopilka.ledger.error_codes import LedgerErrorCode
from kopilka.ledger.posting import PostedTransfer, TransferSpec, post_transfers, simple_transfer
from kopilka.ledger.schema import accounts, units
from kopilka.loyalty.cards import card_for_use, find_card, get_card, normalise_number
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import Program, cached_program, lot_dates
from kopilka.loyalty.schema import cards, loyalty_redemptions

MAX_CHANNEL = 40
MAX_OPERATION_ID = 100
MAX_DESCRIPTION = 200
FOLIO_CHANNEL = "folio"  # this server's own hotel folios (kopilka.hotel)
REDEEM, REFUND = "redeem", "refund"


def terminal_channel(terminal_id: int) -> str:
    """The channel of a terminal calling the processing API."""
    assert terminal_id > 0
    return f"terminal:{terminal_id}"


@dataclass(frozen=True, slots=True)
class UnitBalance:
    unit_code: str
    exponent: int
    balance_minor: int  # spendable now: active lots, less what is held


@dataclass(frozen=True, slots=True)
class CardPoints:
    number: str
    holder: str | None
    status: str  # active, blocked or expired (expired also once its date has passed)
    balances: tuple[UnitBalance, ...]


@dataclass(frozen=True, slots=True)
class Redemption:
    """A write-off (``kind`` redeem) or a give-back (``kind`` refund, ``parent_id`` the
    write-off it returns to). Amounts in the unit's minor units."""

    id: int
    kind: str
    parent_id: int | None
    card_number: str
    channel: str
    operation_id: str
    unit_code: str
    exponent: int
    amount_minor: int
    refunded_minor: int  # of a write-off: given back so far; of a refund: 0
    description: str
    transfer_id: int | None
    created_at: datetime
    replayed: bool = False

    @property
    def ref(self) -> str:
        return str(self.id)

    def fmt(self, amount_minor: int) -> str:
        return format_amount(amount_minor, self.exponent)


# --------------------------------------------------------------------------- reading


def card_balances(
    conn: Connection, tenant_id: int, number: str, *, now: datetime | None = None
) -> CardPoints:
    """The card by its number with what it may spend now, per point unit (a card keeps
    one wallet, in its program's unit). ``card_not_found`` if there is none."""
    moment = as_utc(now) if now else utcnow()
    card = find_card(conn, tenant_id, number=number, now=moment)
    program = cached_program(conn, tenant_id, card.program_id)
    status = "expired" if card.status == "active" and card.is_expired(moment) else card.status
    balance = UnitBalance(program.unit.code, program.unit.exponent, card.available_minor)
    assert balance.balance_minor >= 0
    return CardPoints(card.number, card.holder_name, status, (balance,))


def _select() -> Any:
    return (
        select(
            loyalty_redemptions,
            cards.c.number.label("card_number"),
            units.c.code.label("unit_code"),
            units.c.exponent,
        )
        .join(cards, cards.c.id == loyalty_redemptions.c.card_id)
        .join(accounts, accounts.c.id == cards.c.account_id)
        .join(units, units.c.id == accounts.c.unit_id)
    )


def _view(row: Any, *, replayed: bool = False) -> Redemption:
    return Redemption(
        id=row.id,
        kind=row.kind,
        parent_id=row.parent_id,
        card_number=row.card_number,
        channel=row.channel,
        operation_id=row.operation_id,
        unit_code=row.unit_code,
        exponent=row.exponent,
        amount_minor=row.amount_minor,
        refunded_minor=row.refunded_minor,
        description=row.description,
        transfer_id=row.transfer_id,
        created_at=as_utc(row.created_at),
        replayed=replayed,
    )


def _by_operation(conn: Connection, tenant_id: int, channel: str, operation_id: str) -> Any:
    return conn.execute(
        _select().where(
            loyalty_redemptions.c.tenant_id == tenant_id,
            loyalty_redemptions.c.channel == channel,
            loyalty_redemptions.c.operation_id == operation_id,
        )
    ).first()


def _ref_id(ref: str | int) -> int | None:
    text = str(ref).strip()
    # isascii: "¹" and "٣" are digits to isdigit, not to int.
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def get_redemption(conn: Connection, tenant_id: int, *, channel: str, ref: str | int) -> Redemption:
    """A write-off or refund this channel made, by its ref; another channel's, or another
    tenant's, does not exist for it."""
    found = None
    ref_id = _ref_id(ref)
    if ref_id is not None:
        found = conn.execute(
            _select().where(
                loyalty_redemptions.c.tenant_id == tenant_id,
                loyalty_redemptions.c.channel == channel,
                loyalty_redemptions.c.id == ref_id,
            )
        ).first()
    if found is None:
        raise NotFound(
            E.REDEMPTION_NOT_FOUND, f"no write-off {str(ref)[:40]!r} was made here", ref=str(ref)
        )
    return _view(found)


# --------------------------------------------------------------------------- checks


def _text(value: object, what: str, longest: int, *, empty: bool = False) -> str:
    cleaned = value.strip() if isinstance(value, str) else ""
    if len(cleaned) > longest or (not cleaned and not empty):
        lowest = 0 if empty else 1
        raise InvalidInput(E.INVALID_REDEMPTION, f"{what} is {lowest} to {longest} characters")
    return cleaned


def _amount(amount_minor: object) -> int:
    if (
        not isinstance(amount_minor, int)
        or isinstance(amount_minor, bool)
        or not 0 < amount_minor <= MAX_ABS_MINOR
    ):
        raise InvalidInput(E.INVALID_AMOUNT, "the amount of points is greater than zero")
    return amount_minor


def _conflict(operation_id: str) -> Conflict:
    return Conflict(
        CommonErrorCode.IDEMPOTENCY_CONFLICT,
        f"operation {operation_id!r} was made already with another request",
        operation_id=operation_id,
    )


@dataclass(frozen=True, slots=True)
class _Operation:
    """One request of a channel, as it is remembered: by its id and the digest of what
    it asked."""

    tenant_id: int
    channel: str
    operation_id: str
    request_hash: str
    now: datetime


def _operation(
    tenant_id: int, channel: str, operation_id: str, request: dict[str, Any], now: datetime | None
) -> _Operation:
    return _Operation(
        tenant_id,
        _text(channel, "a channel", MAX_CHANNEL),
        _text(operation_id, "an operation id", MAX_OPERATION_ID),
        _hash(request),
        as_utc(now) if now else utcnow(),
    )


def _known(conn: Connection, op: _Operation) -> Redemption | None:
    """The operation's first answer, if it was made; a conflict if made otherwise."""
    row = _by_operation(conn, op.tenant_id, op.channel, op.operation_id)
    if row is None:
        return None
    if row.request_hash != op.request_hash:
        raise _conflict(op.operation_id)
    return _view(row, replayed=True)


def _record(
    conn: Connection,
    op: _Operation,
    *,
    card_id: int,
    kind: str,
    amount_minor: int,
    description: str,
    parent_id: int | None = None,
) -> int:
    """The operation's row, before its transfer: the same operation asked at the same
    moment waits on its unique key and is retried into a replay, instead of meeting the
    transfer half-way."""
    assert amount_minor > 0 and (kind == REFUND) == (parent_id is not None)
    return int(
        conn.execute(
            loyalty_redemptions.insert().returning(loyalty_redemptions.c.id),
            {
                "tenant_id": op.tenant_id,
                "card_id": card_id,
                "kind": kind,
                "parent_id": parent_id,
                "channel": op.channel,
                "operation_id": op.operation_id,
                "request_hash": op.request_hash,
                "amount_minor": amount_minor,
                "refunded_minor": 0,
                "description": description,
                "transfer_id": None,
                "created_at": op.now,
            },
        ).scalar_one()
    )


def _apply(
    conn: Connection, op: _Operation, row_id: int, spec: TransferSpec, actor: Actor
) -> PostedTransfer:
    """Post the operation's transfer and note it on its row."""
    posted = _post(conn, op.tenant_id, spec, actor, op.now, op.operation_id)
    conn.execute(
        update(loyalty_redemptions)
        .where(loyalty_redemptions.c.id == row_id)
        .values(transfer_id=posted.id)
    )
    return posted


def _post(
    conn: Connection, tenant_id: int, spec: TransferSpec, actor: Actor, now: datetime, op: str
) -> PostedTransfer:
    (outcome,) = post_transfers(conn, tenant_id=tenant_id, specs=[spec], actor=actor, now=now)
    if isinstance(outcome, KopilkaError):
        if outcome.code == LedgerErrorCode.IDEMPOTENCY_CONFLICT:
            raise _conflict(op)
        raise outcome
    if outcome.replayed:
        # Our table did not know the operation, so the ledger key is another request's.
        raise _conflict(op)
    return outcome


def _usable_program(conn: Connection, tenant_id: int, program_id: int, unit_code: str) -> Program:
    program = cached_program(conn, tenant_id, program_id)
    if not program.enabled:
        raise Refused(E.LOYALTY_DISABLED, f"the program {program.name!r} is switched off")
    if program.unit.code != unit_code:
        raise Refused(
            E.POINTS_UNIT_MISMATCH,
            f"the card keeps {program.unit.code}, not {unit_code}",
            card_unit=program.unit.code,
            unit=unit_code,
        )
    return program


# --------------------------------------------------------------------------- writing


def redeem(
    conn: Connection,
    *,
    tenant_id: int,
    number: str,
    unit_code: str,
    amount_minor: int,
    channel: str,
    operation_id: str,
    description: str,
    actor: Actor,
    now: datetime | None = None,
) -> Redemption:
    """Write ``amount_minor`` points of ``unit_code`` off the card numbered ``number``:
    all of them or nothing. Once per (channel, ``operation_id``)."""
    description = _text(description, "a description", MAX_DESCRIPTION, empty=True)
    wanted = normalise_number(number)
    unit = _text(unit_code, "a unit", 16).upper()
    amount = _amount(amount_minor)
    request = {"kind": REDEEM, "card": wanted, "unit": unit, "amount": amount, "text": description}
    op = _operation(tenant_id, channel, operation_id, request, now)
    known = _known(conn, op)
    if known is not None:
        return _replayed_write_off(known)
    card = card_for_use(conn, tenant_id, wanted, now=op.now, lock=True)
    # Asked twice at once: the second waited on the card's row, and sees the first now.
    known = _known(conn, op)
    if known is not None:
        return _replayed_write_off(known)
    program = _usable_program(conn, tenant_id, card.program_id, unit)
    if amount > card.available_minor:
        exponent = program.unit.exponent
        raise Refused(
            E.INSUFFICIENT_POINTS,
            f"card {card.number} may spend {format_amount(card.available_minor, exponent)} "
            f"{unit} now; {format_amount(amount, exponent)} was asked",
            available=format_amount(card.available_minor, exponent),
            unit=unit,
        )
    row_id = _record(
        conn, op, card_id=card.id, kind=REDEEM, amount_minor=amount, description=description
    )
    redeemed = system_account_id(
        conn, tenant_id=tenant_id, unit_code=unit, purpose="redeemed", actor=actor
    )
    posted = _apply(
        conn,
        op,
        row_id,
        simple_transfer(
            f"redemption:{op.channel}:{op.operation_id}",
            debit_account_id=card.account_id,
            credit_account_id=redeemed,
            amount_minor=amount,
            kind="spend",
            description=description or f"paid with points ({op.channel})",
            meta={"redemption": row_id, "channel": op.channel, "operation": op.operation_id},
        ),
        actor,
    )
    done = get_redemption(conn, tenant_id, channel=op.channel, ref=row_id)
    assert done.amount_minor == amount and done.transfer_id == posted.id
    return done


def _replayed_write_off(known: Redemption) -> Redemption:
    """A write-off asked again answers as the first time, unless points of it have been
    given back since: "taken" would then mislead whoever asks again (a folio payment
    retried after its points were returned would record points the card still has)."""
    assert known.kind == REDEEM and known.replayed
    if known.refunded_minor > 0:
        raise Conflict(
            E.REDEMPTION_REFUNDED,
            f"operation {known.operation_id!r} wrote {known.fmt(known.amount_minor)} "
            f"{known.unit_code} off and {known.fmt(known.refunded_minor)} of them have been "
            "given back; pay again under a new operation id",
            ref=known.ref,
            refunded=known.fmt(known.refunded_minor),
        )
    return known


def refund_redemption(
    conn: Connection,
    *,
    tenant_id: int,
    channel: str,
    ref: str | int,
    amount_minor: int | None,
    operation_id: str,
    actor: Actor,
    now: datetime | None = None,
) -> Redemption:
    """Give back ``amount_minor`` points of the write-off ``ref`` (its id; ``None``: all
    of it not given back yet) to its card. Refunds of one write-off never add up to more
    than it took. Once per (channel, ``operation_id``); the write-off must be this
    channel's. The card's status does not matter: the points were its own."""
    amount = None if amount_minor is None else _amount(amount_minor)
    request = {"kind": REFUND, "ref": str(ref).strip(), "amount": amount}
    op = _operation(tenant_id, channel, operation_id, request, now)
    known = _known(conn, op)
    if known is not None:
        return known
    parent = get_redemption(conn, tenant_id, channel=op.channel, ref=ref)
    if parent.kind != REDEEM:
        raise NotFound(E.REDEMPTION_NOT_FOUND, f"{parent.ref} is a refund, not a write-off")
    # The card's row orders everything done to its write-offs; read the figures after it.
    card = get_card(conn, tenant_id, _card_id(conn, parent.id), lock=True, now=op.now)
    known = _known(conn, op)
    if known is not None:
        return known
    parent = get_redemption(conn, tenant_id, channel=op.channel, ref=parent.id)
    amount = _left_to_give_back(parent, amount)
    program = cached_program(conn, tenant_id, card.program_id)
    assert program.unit.code == parent.unit_code, "a card's wallet keeps one unit"
    row_id = _record(
        conn,
        op,
        card_id=card.id,
        kind=REFUND,
        amount_minor=amount,
        description=parent.description,
        parent_id=parent.id,
    )
    redeemed = system_account_id(
        conn, tenant_id=tenant_id, unit_code=parent.unit_code, purpose="redeemed", actor=actor
    )
    # Back as a fresh lot, spendable at once, as a POS refund returns spent points.
    _, expires_at = lot_dates(program, op.now)
    _apply(
        conn,
        op,
        row_id,
        simple_transfer(
            f"redemption-refund:{op.channel}:{op.operation_id}",
            debit_account_id=redeemed,
            credit_account_id=card.account_id,
            amount_minor=amount,
            kind="refund",
            description=f"points back: write-off {parent.ref}",
            meta={"redemption": row_id, "parent": parent.id, "channel": op.channel},
            expires_at=expires_at,
            corrects_transfer_id=parent.transfer_id,
        ),
        actor,
    )
    conn.execute(
        update(loyalty_redemptions)
        .where(loyalty_redemptions.c.id == parent.id)
        .values(refunded_minor=loyalty_redemptions.c.refunded_minor + amount)
    )
    after = get_redemption(conn, tenant_id, channel=op.channel, ref=parent.id)
    assert after.refunded_minor == parent.refunded_minor + amount <= after.amount_minor
    return get_redemption(conn, tenant_id, channel=op.channel, ref=row_id)


def _left_to_give_back(parent: Redemption, asked_minor: int | None) -> int:
    """What a refund of ``parent`` gives back: ``asked_minor``, or all that is left;
    never more than is left."""
    left = parent.amount_minor - parent.refunded_minor
    assert 0 <= left <= parent.amount_minor
    amount = left if asked_minor is None else asked_minor
    if left == 0 or amount > left:
        raise Refused(
            E.REFUND_TOO_LARGE,
            f"at most {parent.fmt(left)} {parent.unit_code} of write-off {parent.ref} is left "
            f"to give back; {parent.fmt(amount)} was asked",
            left=parent.fmt(left),
        )
    return amount


def _card_id(conn: Connection, redemption_id: int) -> int:
    return int(
        conn.execute(
            select(loyalty_redemptions.c.card_id).where(loyalty_redemptions.c.id == redemption_id)
        ).scalar_one()
    )
