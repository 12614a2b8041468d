"""Units and accounts: creating them, changing credit limits, reading their figures."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from kopilka.core.actor import Actor
from kopilka.core.bulk import insert_rows, new_ids
from kopilka.core.cache import ConfigCache
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import one_of
from kopilka.core.errors import Conflict, InvalidInput, NotFound
from kopilka.core.money import Unit, UnitKind, currency_exponent, format_amount
from kopilka.core.settings import get_settings
from kopilka.ledger.error_codes import LedgerErrorCode as E
from kopilka.ledger.posting import _Lot, _lot_spendable
from kopilka.ledger.schema import account_limits, accounts, balance_shards, lots, units
from kopilka.tenancy.audit import record_audit


class Policy(StrEnum):
    NON_NEGATIVE = "non_negative"
    CREDIT_LIMIT = "credit_limit"
    UNLIMITED = "unlimited"


_POINT_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,15}$")


@dataclass(frozen=True, slots=True)
class UnitView:
    id: int
    code: str
    kind: UnitKind
    exponent: int
    name: str

    @property
    def unit(self) -> Unit:
        return Unit(self.code, self.kind, self.exponent)


@dataclass(frozen=True, slots=True)
class AccountView:
    id: int
    tenant_id: int
    unit: UnitView
    code: str | None
    name: str
    kind: str
    owner_type: str | None
    owner_id: str | None
    policy: Policy
    credit_limit_minor: int
    uses_lots: bool
    is_hot: bool
    balance_minor: int
    held_minor: int
    available_minor: int | None  # None for unlimited accounts
    created_at: datetime

    def fmt(self, amount_minor: int) -> str:
        return format_amount(amount_minor, self.unit.exponent)


# --------------------------------------------------------------------------- units


def create_unit(
    conn: Connection,
    *,
    tenant_id: int,
    code: str,
    kind: UnitKind,
    name: str = "",
    exponent: int | None = None,
    actor: Actor,
) -> UnitView:
    """Enable an ISO 4217 currency, or define a point unit (``BONUS``, 0..6 decimals)."""
    code = code.strip().upper()
    if kind == UnitKind.CURRENCY:
        iso_exponent = currency_exponent(code)
        if exponent is not None and exponent != iso_exponent:
            raise InvalidInput(
                E.INVALID_UNIT,
                f"{code} has {iso_exponent} minor digits by ISO 4217, not {exponent}",
            )
        exponent = iso_exponent
        name = name or code
    else:
        if not _POINT_CODE.match(code):
            raise InvalidInput(
                E.INVALID_UNIT,
                "a point unit code is 2 to 16 latin capitals, digits or '_', "
                "starting with a letter",
            )
        if _is_currency_code(code):
            raise InvalidInput(E.INVALID_UNIT, f"{code} is a currency code; pick another name")
        exponent = 0 if exponent is None else exponent
        if not 0 <= exponent <= 6:
            raise InvalidInput(E.INVALID_UNIT, "a point unit has 0 to 6 decimal places")
        name = name or code
    existing = conn.execute(
        select(units.c.id).where(units.c.tenant_id == tenant_id, units.c.code == code)
    ).first()
    if existing is not None:
        raise Conflict(E.UNIT_EXISTS, f"unit {code} exists already")
    unit_id = conn.execute(
        units.insert().returning(units.c.id),
        {
            "tenant_id": tenant_id,
            "code": code,
            "kind": kind.value,
            "exponent": exponent,
            "name": name,
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="unit.create",
        object_type="unit",
        object_id=unit_id,
        details={"code": code, "kind": kind},
    )
    return UnitView(unit_id, code, kind, exponent, name)


def _is_currency_code(code: str) -> bool:
    from kopilka.core.money import is_iso_currency

    return is_iso_currency(code)


def list_units(conn: Connection, tenant_id: int) -> list[UnitView]:
    rows = conn.execute(
        select(units).where(units.c.tenant_id == tenant_id).order_by(units.c.code)
    ).all()
    return [_unit_view(row) for row in rows]


def get_unit(conn: Connection, tenant_id: int, code: str) -> UnitView:
    row = conn.execute(
        select(units).where(units.c.tenant_id == tenant_id, units.c.code == code.upper())
    ).first()
    if row is None:
        raise InvalidInput(
            E.UNKNOWN_UNIT, f"unit {code!r} is not defined for this tenant", unit=code
        )
    return _unit_view(row)


def _unit_view(row: Any) -> UnitView:
    return UnitView(row.id, row.code, UnitKind(row.kind), row.exponent, row.name)


# --------------------------------------------------------------------------- accounts


def create_account(
    conn: Connection,
    *,
    tenant_id: int,
    unit_code: str,
    kind: str,
    policy: Policy = Policy.NON_NEGATIVE,
    name: str = "",
    code: str | None = None,
    owner_type: str | None = None,
    owner_id: str | None = None,
    credit_limit_minor: int = 0,
    uses_lots: bool = False,
    is_hot: bool = False,
    actor: Actor,
    opened_at: datetime | None = None,
) -> AccountView:
    """A new account. ``opened_at`` (default: now) may lie in the past, for accounts
    brought over from another system with their history; nothing posts before it."""
    unit = get_unit(conn, tenant_id, unit_code)
    _check_account_shape(kind, policy, credit_limit_minor, uses_lots, is_hot)
    if (
        code is not None
        and conn.execute(
            select(accounts.c.id).where(accounts.c.tenant_id == tenant_id, accounts.c.code == code)
        ).first()
    ):
        raise Conflict(E.ACCOUNT_CODE_EXISTS, f"an account with code {code!r} exists already")
    now = utcnow() if opened_at is None else min(as_utc(opened_at), utcnow())
    account_id = conn.execute(
        accounts.insert().returning(accounts.c.id),
        {
            "tenant_id": tenant_id,
            "unit_id": unit.id,
            "code": code,
            "name": name,
            "kind": kind,
            "owner_type": owner_type,
            "owner_id": owner_id,
            "policy": policy.value,
            "credit_limit_minor": credit_limit_minor if policy == Policy.CREDIT_LIMIT else 0,
            "uses_lots": uses_lots,
            "is_hot": is_hot,
            "created_at": now,
        },
    ).scalar_one()
    if policy == Policy.CREDIT_LIMIT:
        conn.execute(
            account_limits.insert(),
            {
                "tenant_id": tenant_id,
                "account_id": account_id,
                "credit_limit_minor": credit_limit_minor,
                "effective_at": now,
                "reason": "opening limit",
                "actor_type": actor.type.value,
                "actor_id": actor.id,
                "source_ip": actor.source_ip,
            },
        )
    if is_hot:
        shards = get_settings().hot_account_shards
        conn.execute(
            balance_shards.insert(),
            [{"tenant_id": tenant_id, "account_id": account_id, "shard": n} for n in range(shards)],
        )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="account.create",
        object_type="account",
        object_id=account_id,
        details={"unit": unit.code, "kind": kind, "policy": policy.value, "code": code},
    )
    return get_account(conn, tenant_id, account_id)


def create_wallets(
    conn: Connection,
    *,
    tenant_id: int,
    unit_code: str,
    owners: Sequence[tuple[str, str]],
    actor: Actor,
    names: Sequence[str] | None = None,
    kind: str = "wallet",
    policy: Policy = Policy.NON_NEGATIVE,
    uses_lots: bool = False,
    opened_at: datetime | None = None,
) -> list[int]:
    """Many plain accounts at once (a batch of cards), one per ``(owner_type, owner_id)``.

    Returns their ids in the order of ``owners``. The rows go in as one bulk insert with
    ids drawn up front, and one audit record covers the batch. Only accounts without a
    credit limit and not hot (those need rows of their own: use ``create_account``).
    """
    unit = get_unit(conn, tenant_id, unit_code)
    if policy == Policy.CREDIT_LIMIT:
        raise InvalidInput(E.INVALID_ACCOUNT, "create credit-limit accounts one by one")
    _check_account_shape(kind, policy, 0, uses_lots, False)
    if names is not None and len(names) != len(owners):
        raise InvalidInput(E.INVALID_ACCOUNT, "one name per owner is required")
    if not owners:
        return []
    now = utcnow() if opened_at is None else min(as_utc(opened_at), utcnow())
    ids = new_ids(conn, accounts, len(owners))
    rows = [
        (
            account_id,
            tenant_id,
            unit.id,
            None,
            "" if names is None else names[i],
            kind,
            owner_type,
            owner_id,
            policy.value,
            0,
            uses_lots,
            False,
            0,
            0,
            0,
            0,
            now,
        )
        for i, (account_id, (owner_type, owner_id)) in enumerate(zip(ids, owners, strict=True))
    ]
    insert_rows(conn, accounts, _WALLET_COLUMNS, rows)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="account.create_batch",
        object_type="account",
        object_id=None,
        details={
            "unit": unit.code,
            "kind": kind,
            "policy": policy.value,
            "count": len(ids),
            "first_id": ids[0],
            "last_id": ids[-1],
        },
    )
    return ids


_WALLET_COLUMNS = (
    "id",
    "tenant_id",
    "unit_id",
    "code",
    "name",
    "kind",
    "owner_type",
    "owner_id",
    "policy",
    "credit_limit_minor",
    "uses_lots",
    "is_hot",
    "balance_minor",
    "held_minor",
    "debit_total_minor",
    "entry_count",
    "created_at",
)


def _check_account_shape(
    kind: str, policy: Policy, credit_limit_minor: int, uses_lots: bool, is_hot: bool
) -> None:
    if not kind or len(kind) > 32:
        raise InvalidInput(E.INVALID_ACCOUNT, "an account kind of 1 to 32 characters is required")
    if credit_limit_minor < 0:
        raise InvalidInput(E.INVALID_ACCOUNT, "a credit limit cannot be negative")
    if credit_limit_minor and policy != Policy.CREDIT_LIMIT:
        raise InvalidInput(E.INVALID_ACCOUNT, "only a credit_limit account has a credit limit")
    if uses_lots and policy != Policy.NON_NEGATIVE:
        raise InvalidInput(E.INVALID_ACCOUNT, "an account with lots never goes below zero")
    if is_hot and policy != Policy.UNLIMITED:
        raise InvalidInput(E.INVALID_ACCOUNT, "only an unlimited system account can be hot")


def system_account(
    conn: Connection,
    *,
    tenant_id: int,
    unit_code: str,
    purpose: str,
    actor: Actor,
    opened_at: datetime | None = None,
) -> AccountView:
    """The tenant's hot system account for a purpose (issuance, revenue, expiry...) and unit.

    Created on first use. Its code is ``purpose:UNIT``.
    """
    code = f"{purpose}:{unit_code.upper()}"
    row = conn.execute(
        select(accounts.c.id).where(accounts.c.tenant_id == tenant_id, accounts.c.code == code)
    ).first()
    if row is not None:
        return get_account(conn, tenant_id, row.id)
    return create_account(
        conn,
        tenant_id=tenant_id,
        unit_code=unit_code,
        kind="system",
        policy=Policy.UNLIMITED,
        name=f"{purpose} ({unit_code.upper()})",
        code=code,
        is_hot=True,
        actor=actor,
        opened_at=opened_at,
    )


def backdate_unused(conn: Connection, account_ids: Sequence[int], opened_at: datetime) -> int:
    """Date the opening of accounts that never had an entry back to ``opened_at``; how
    many moved.

    Nothing is posted before an account opens; a card issued today whose balance is brought
    over as of last month needs its (empty) wallet to have been open then. Only accounts
    without entries move, so no history changes.
    """
    moved = 0
    size = 10_000 if conn.dialect.name == "postgresql" else 500
    for start in range(0, len(account_ids), size):
        moved += conn.execute(
            update(accounts)
            .where(
                one_of(conn, accounts.c.id, account_ids[start : start + size]),
                accounts.c.entry_count == 0,
                accounts.c.created_at > opened_at,
            )
            .values(created_at=opened_at)
        ).rowcount
    return moved


# A system account, once opened, keeps its id until its tenant's data is purged
# (kopilka.loyalty.billing empties the caches then).
SYSTEM_ACCOUNT_IDS: ConfigCache[tuple[int, str], int] = ConfigCache("system account ids")


def system_account_id(
    conn: Connection,
    *,
    tenant_id: int,
    unit_code: str,
    purpose: str,
    actor: Actor,
    opened_at: datetime | None = None,
) -> int:
    """``system_account(...).id``: the hot paths post to it and need nothing else of it, so
    a process keeps the id for a moment (kopilka.core.cache) and asks one small query
    otherwise."""
    code = f"{purpose}:{unit_code.upper()}"

    def load() -> int | None:
        found = conn.execute(
            select(accounts.c.id).where(accounts.c.tenant_id == tenant_id, accounts.c.code == code)
        ).scalar()
        return None if found is None else int(found)

    found = SYSTEM_ACCOUNT_IDS.get(conn, (tenant_id, code), load)
    if found is not None:
        return found
    return system_account(
        conn,
        tenant_id=tenant_id,
        unit_code=unit_code,
        purpose=purpose,
        actor=actor,
        opened_at=opened_at,
    ).id


def get_account(
    conn: Connection, tenant_id: int, account_id: int, *, now: datetime | None = None
) -> AccountView:
    row = conn.execute(
        select(
            accounts,
            units.c.code.label("unit_code"),
            units.c.kind.label("unit_kind"),
            units.c.exponent,
            units.c.name.label("unit_name"),
        )
        .join(units, units.c.id == accounts.c.unit_id)
        .where(accounts.c.tenant_id == tenant_id, accounts.c.id == account_id)
    ).first()
    if row is None:
        raise NotFound(
            E.ACCOUNT_NOT_FOUND, f"account {account_id} does not exist", account_id=account_id
        )
    return _account_view(conn, row, now or utcnow())


def find_accounts(
    conn: Connection,
    tenant_id: int,
    *,
    after_id: int = 0,
    limit: int = 50,
    owner_type: str | None = None,
    owner_id: str | None = None,
    kind: str | None = None,
    unit_code: str | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    offset: int = 0,
    now: datetime | None = None,
) -> list[AccountView]:
    """Accounts in id order after ``after_id`` (cursor paging; screens page by ``offset``).

    ``where`` adds conditions on ``accounts`` and ``units`` (a screen's search box)."""
    query = (
        select(
            accounts,
            units.c.code.label("unit_code"),
            units.c.kind.label("unit_kind"),
            units.c.exponent,
            units.c.name.label("unit_name"),
        )
        .join(units, units.c.id == accounts.c.unit_id)
        .where(accounts.c.tenant_id == tenant_id, accounts.c.id > after_id, *where)
        .order_by(accounts.c.id)
        .limit(limit)
        .offset(offset)
    )
    if owner_type is not None:
        query = query.where(accounts.c.owner_type == owner_type)
    if owner_id is not None:
        query = query.where(accounts.c.owner_id == owner_id)
    if kind is not None:
        query = query.where(accounts.c.kind == kind)
    if unit_code is not None:
        query = query.where(units.c.code == unit_code.upper())
    moment = now or utcnow()
    return [_account_view(conn, row, moment) for row in conn.execute(query)]


def _account_view(conn: Connection, row: Any, now: datetime) -> AccountView:
    balance, held = row.balance_minor, row.held_minor
    if row.is_hot:
        # SUM of a BIGINT is NUMERIC on PostgreSQL (a Decimal here): back to int.
        balance = int(
            conn.execute(
                select(func.coalesce(func.sum(balance_shards.c.balance_minor), 0)).where(
                    balance_shards.c.account_id == row.id
                )
            ).scalar_one()
        )
    available: int | None
    if row.policy == Policy.UNLIMITED:
        available = None
    elif row.uses_lots:
        open_lots = conn.execute(
            select(lots.c.id, lots.c.remaining_minor, lots.c.available_at, lots.c.expires_at).where(
                lots.c.account_id == row.id, lots.c.remaining_minor > 0
            )
        ).all()
        spendable = sum(
            lot.remaining_minor
            for lot in open_lots
            if _lot_spendable(
                _Lot(lot.id, lot.remaining_minor, lot.available_at, lot.expires_at), now
            )
        )
        available = max(spendable - _live_held(conn, row.id, held, now), 0)
    else:
        floor = -row.credit_limit_minor if row.policy == Policy.CREDIT_LIMIT else 0
        available = max(balance - _live_held(conn, row.id, held, now) - floor, 0)
    return AccountView(
        id=row.id,
        tenant_id=row.tenant_id,
        unit=UnitView(
            row.unit_id, row.unit_code, UnitKind(row.unit_kind), row.exponent, row.unit_name
        ),
        code=row.code,
        name=row.name,
        kind=row.kind,
        owner_type=row.owner_type,
        owner_id=row.owner_id,
        policy=Policy(row.policy),
        credit_limit_minor=row.credit_limit_minor,
        uses_lots=row.uses_lots,
        is_hot=row.is_hot,
        balance_minor=balance,
        held_minor=held,
        available_minor=available,
        created_at=as_utc(row.created_at),
    )


def _live_held(conn: Connection, account_id: int, held: int, now: datetime) -> int:
    """Held minus holds that have lapsed but were not swept yet: they hold nothing."""
    if held == 0:
        return 0
    from kopilka.ledger.schema import hold_resolutions, holds

    lapsed = conn.execute(
        select(func.coalesce(func.sum(holds.c.amount_minor), 0))
        .outerjoin(hold_resolutions, hold_resolutions.c.hold_id == holds.c.id)
        .where(
            holds.c.debit_account_id == account_id,
            holds.c.expires_at <= now,
            hold_resolutions.c.hold_id.is_(None),
        )
    ).scalar_one()
    return int(held - lapsed)


def set_credit_limit(
    conn: Connection,
    *,
    tenant_id: int,
    account_id: int,
    credit_limit_minor: int,
    reason: str,
    actor: Actor,
    now: datetime | None = None,
) -> AccountView:
    """Change the limit from now on; the history of limits is kept, append-only.

    Lowering a limit below what the account already owes is allowed (the business decides
    it); from then on only credits are accepted until the account is back within it.
    """
    if credit_limit_minor < 0:
        raise InvalidInput(E.INVALID_ACCOUNT, "a credit limit cannot be negative")
    now = as_utc(now) if now else utcnow()
    row = conn.execute(
        select(accounts.c.id, accounts.c.policy, accounts.c.last_posted_at)
        .where(accounts.c.tenant_id == tenant_id, accounts.c.id == account_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(E.ACCOUNT_NOT_FOUND, f"account {account_id} does not exist")
    if row.policy != Policy.CREDIT_LIMIT:
        raise InvalidInput(E.INVALID_ACCOUNT, f"account {account_id} has no credit limit")
    # The new limit takes effect strictly after every entry already posted (those were
    # judged by the old one, and verify judges each entry by the limit in force at its
    # posted_at), and later postings land at or after it (posting never goes back in time
    # behind an account's last_posted_at).
    effective_at = now
    if row.last_posted_at is not None and as_utc(row.last_posted_at) >= now:
        effective_at = as_utc(row.last_posted_at) + timedelta(microseconds=1)
    conn.execute(
        account_limits.insert(),
        {
            "tenant_id": tenant_id,
            "account_id": account_id,
            "credit_limit_minor": credit_limit_minor,
            "effective_at": effective_at,
            "reason": reason,
            "actor_type": actor.type.value,
            "actor_id": actor.id,
            "source_ip": actor.source_ip,
        },
    )
    conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id)
        .values(credit_limit_minor=credit_limit_minor, last_posted_at=effective_at)
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="account.set_credit_limit",
        object_type="account",
        object_id=account_id,
        details={"credit_limit_minor": credit_limit_minor, "reason": reason},
    )
    return get_account(conn, tenant_id, account_id, now=now)
