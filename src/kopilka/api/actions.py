"""The API's units of work: parse a request's amounts with the right unit, then call the
ledger, all inside one transaction (routes run these through ``run_transaction``).

``reverse_transfer`` and the small reads at the bottom are ledger-level operations the
ledger package does not offer yet; they use only its public tables and functions and
could move to ``kopilka.ledger`` as they are.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from kopilka.api.schemas import CaptureIn, HoldIn, ReverseIn, TransferIn
from kopilka.core.actor import Actor
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, Refused
from kopilka.core.money import format_amount, parse_amount
from kopilka.ledger.accounts import AccountView, get_account, get_unit
from kopilka.ledger.error_codes import LedgerErrorCode as E
from kopilka.ledger.holds import HoldView, capture_hold, get_hold, place_hold, void_hold
from kopilka.ledger.posting import (
    EntrySpec,
    PostedTransfer,
    TransferSpec,
    get_transfer,
    load_transfers,
    post_one,
    simple_transfer,
)
from kopilka.ledger.schema import hold_resolutions, lots, transfers

REVERSAL = "reversal"


def _check_unit(conn: Connection, tenant_id: int, unit: str | None, account: AccountView) -> None:
    """A unit named in the request must exist for the tenant and be the account's."""
    if unit is None:
        return
    named = get_unit(conn, tenant_id, unit)
    if named.code != account.unit.code:
        raise InvalidInput(
            E.MIXED_UNITS,
            f"the amount is in {named.code} but account {account.id} holds {account.unit.code}",
            account_id=account.id,
            unit=named.code,
        )


# --------------------------------------------------------------------------- transfers


def post_transfer(
    conn: Connection, *, tenant_id: int, key: str, body: TransferIn, actor: Actor
) -> tuple[PostedTransfer, bool]:
    """Post the request; returns the stored transfer (read back) and whether it replayed."""
    spec = _transfer_spec(conn, tenant_id, key, body)
    posted = post_one(conn, tenant_id=tenant_id, spec=spec, actor=actor)
    # The reply is built from the stored rows, so a replay gives the very same bytes.
    return get_transfer(conn, tenant_id, posted.id), posted.replayed


def _transfer_spec(conn: Connection, tenant_id: int, key: str, body: TransferIn) -> TransferSpec:
    meta = body.metadata
    if body.entries is None:
        assert body.debit_account_id is not None and body.credit_account_id is not None
        assert body.amount is not None
        debit = get_account(conn, tenant_id, body.debit_account_id)
        credit = get_account(conn, tenant_id, body.credit_account_id)
        _check_unit(conn, tenant_id, body.unit, debit)
        _check_unit(conn, tenant_id, body.unit, credit)
        amount = parse_amount(
            body.amount, debit.unit.exponent, unit_code=debit.unit.code, positive=True
        )
        if debit.id == credit.id:
            raise InvalidInput(E.DUPLICATE_ACCOUNT, "a transfer moves between two accounts")
        return simple_transfer(
            key,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount_minor=amount,
            kind=body.kind,
            description=body.description,
            meta=meta,
            available_at=body.available_at,
            expires_at=body.expires_at,
        )
    specs = []
    for entry in body.entries:
        account = get_account(conn, tenant_id, entry.account_id)
        _check_unit(conn, tenant_id, body.unit, account)
        minor = parse_amount(entry.amount, account.unit.exponent, unit_code=account.unit.code)
        specs.append(
            EntrySpec(
                account.id,
                minor,
                available_at=entry.available_at,
                expires_at=entry.expires_at,
            )
        )
    return TransferSpec(
        idempotency_key=key,
        entries=tuple(specs),
        kind=body.kind,
        description=body.description,
        meta=meta,
    )


def reverse_transfer(
    conn: Connection,
    *,
    tenant_id: int,
    transfer_id: int,
    key: str,
    body: ReverseIn,
    actor: Actor,
) -> tuple[PostedTransfer, bool]:
    """Post the mirror image of a transfer (kind ``reversal``), at most once per transfer.

    Credits that opened lots are taken back from those very lots, so a reversal cannot
    eat points the customer earned elsewhere; if the lot was spent already, the reversal
    is refused like any spend past what is there.
    """
    # Lock the original first: two reversals with different keys queue here, and the
    # second then sees the first and is refused. No other code locks transfer rows, so
    # taking this lock before the accounts' cannot close a cycle.
    found = conn.execute(
        select(transfers.c.id)
        .where(transfers.c.tenant_id == tenant_id, transfers.c.id == transfer_id)
        .with_for_update()
    ).first()
    original = get_transfer(conn, tenant_id, transfer_id)
    assert found is not None
    earlier = conn.execute(
        select(transfers.c.id, transfers.c.idempotency_key).where(
            transfers.c.tenant_id == tenant_id,
            transfers.c.corrects_transfer_id == transfer_id,
            transfers.c.kind == REVERSAL,
        )
    ).first()
    if earlier is not None and earlier.idempotency_key != key:
        raise Conflict(
            E.ALREADY_REVERSED,
            f"transfer {transfer_id} was reversed already, by transfer {earlier.id}",
            reversal_transfer_id=earlier.id,
        )
    opened = {
        row.account_id: row
        for row in conn.execute(
            select(lots.c.id, lots.c.account_id, lots.c.remaining_minor).where(
                lots.c.tenant_id == tenant_id, lots.c.transfer_id == transfer_id
            )
        )
    }
    for e in original.entries:
        lot = opened.get(e.account_id)
        if e.amount_minor > 0 and lot is not None and lot.remaining_minor < e.amount_minor:
            # Said here, in words, rather than as the ledger's bare "lot has nothing left".
            raise Refused(
                E.INSUFFICIENT_FUNDS,
                f"cannot reverse transfer {transfer_id}: of the {e.amount} {e.unit_code} it "
                f"credited to account {e.account_id}, only "
                f"{format_amount(lot.remaining_minor, e.exponent)} is left unspent",
                account_id=e.account_id,
                available=format_amount(lot.remaining_minor, e.exponent),
            )
    lot_of = {account_id: row.id for account_id, row in opened.items()}
    legs = tuple(
        EntrySpec(
            e.account_id,
            -e.amount_minor,
            from_lot_id=lot_of.get(e.account_id) if e.amount_minor > 0 else None,
        )
        for e in original.entries
    )
    spec = TransferSpec(
        idempotency_key=key,
        entries=legs,
        kind=REVERSAL,
        description=body.description or f"reversal of transfer {transfer_id}",
        corrects_transfer_id=transfer_id,
        meta=body.metadata,
    )
    posted = post_one(conn, tenant_id=tenant_id, spec=spec, actor=actor)
    return get_transfer(conn, tenant_id, posted.id), posted.replayed


# --------------------------------------------------------------------------- holds


def place(conn: Connection, *, tenant_id: int, key: str, body: HoldIn, actor: Actor) -> HoldView:
    debit = get_account(conn, tenant_id, body.debit_account_id)
    credit = get_account(conn, tenant_id, body.credit_account_id)
    _check_unit(conn, tenant_id, body.unit, debit)
    _check_unit(conn, tenant_id, body.unit, credit)
    amount = parse_amount(
        body.amount, debit.unit.exponent, unit_code=debit.unit.code, positive=True
    )
    return place_hold(
        conn,
        tenant_id=tenant_id,
        idempotency_key=key,
        debit_account_id=debit.id,
        credit_account_id=credit.id,
        amount_minor=amount,
        actor=actor,
        expires_at=body.expires_at,
        ttl_seconds=body.ttl_seconds,
        description=body.description,
        meta=body.metadata,
    )


def capture(
    conn: Connection, *, tenant_id: int, hold_id: int, key: str, body: CaptureIn, actor: Actor
) -> tuple[HoldView, PostedTransfer, bool]:
    hold = get_hold(conn, tenant_id, hold_id)
    amount = None
    if body.amount is not None:
        amount = parse_amount(body.amount, hold.exponent, unit_code=hold.unit_code, positive=True)
    try:
        captured, posted = capture_hold(
            conn,
            tenant_id=tenant_id,
            hold_id=hold_id,
            idempotency_key=key,
            actor=actor,
            amount_minor=amount,
            description=body.description,
            meta=body.metadata,
        )
    except KopilkaError as error:
        # The key that captured this hold, sent again with another body, is a key
        # conflict (409), not a second capture.
        if error.code == E.HOLD_CAPTURED and _capture_key(conn, hold_id) == key:
            raise Conflict(
                E.IDEMPOTENCY_CONFLICT,
                f"idempotency key {key!r} captured hold {hold_id} with a different request",
                idempotency_key=key,
            ) from error
        raise
    return captured, get_transfer(conn, tenant_id, posted.id), posted.replayed


def _capture_key(conn: Connection, hold_id: int) -> str | None:
    row = conn.execute(
        select(hold_resolutions.c.idempotency_key).where(hold_resolutions.c.hold_id == hold_id)
    ).first()
    return None if row is None else row.idempotency_key


def void(conn: Connection, *, tenant_id: int, hold_id: int, key: str, actor: Actor) -> HoldView:
    return void_hold(conn, tenant_id=tenant_id, hold_id=hold_id, idempotency_key=key, actor=actor)


# --------------------------------------------------------------------------- reads


def transfer_page(
    conn: Connection, tenant_id: int, *, before_id: int | None, limit: int
) -> list[PostedTransfer]:
    """The tenant's transfers, newest first, with ids below ``before_id``."""
    query = select(transfers.c.id).where(transfers.c.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(transfers.c.id < before_id)
    ids = list(conn.execute(query.order_by(transfers.c.id.desc()).limit(limit)).scalars())
    return load_transfers(conn, tenant_id, ids)
