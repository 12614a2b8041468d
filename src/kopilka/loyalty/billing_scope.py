"""Which rows are a tenant's loyalty data: what an export writes and a purge removes.

Domain rows: every row of the tenant in the loyalty tables (programs, tiers, cards,
purchases, POS checks and refunds, gift certificates with their payments and refunds,
FarCards' discount/bonus numbers and the calls it answered). Besides, the *points payment
types* (``kopilka.payments``) that spend one of the point units going, with the terminal
codes mapped to them: a payment type of any other kind (cash, card, ...) stays, and so
does a points type of a unit no program uses (the unit stays too).

Ledger rows, by account. The *loyalty accounts* are

* every account in a point unit some program of the tenant uses (card wallets and the
  ``issuance``, ``redeemed``, ``expiry`` system accounts of that unit, whoever opened them);
* every certificate's account and the certificates' own system accounts
  (``certificate_sales:RUB`` and the like);
* every *counterpart*: an account that the transfers (or holds) of the accounts above
  touch and that nothing else ever touched.

With them go their transfers (every entry of each), lots and lot consumptions, holds and
their resolutions, limit history, snapshots and balance shards, and at last the point
units themselves. A counterpart that has history of its own (a cash account a sale was
paid into, say) is *crossing*: removing those transfers would change an account that
stays, so a purge refuses while one exists.

Every part is a ``(table, where)`` pair over two id sets, the accounts and the transfers,
handed in as selectables: subqueries for an export (a snapshot: nothing moves), temporary
tables for a purge (the rows the subqueries read are being deleted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    Select,
    Table,
    and_,
    exists,
    false,
    or_,
    select,
    union,
)
from sqlalchemy.sql.elements import ColumnElement

from kopilka.farcards.schema import farcards_calls, farcards_codes
from kopilka.ledger.schema import (
    account_limits,
    account_snapshots,
    accounts,
    balance_shards,
    entries,
    hold_resolutions,
    holds,
    lot_consumptions,
    lots,
    transfers,
    units,
)
from kopilka.loyalty.certificates import BREAKAGE, REDEMPTIONS, SALES
from kopilka.loyalty.certificates_schema import (
    certificate_payments,
    certificate_refunds,
    certificates,
)
from kopilka.loyalty.schema import (
    card_purchases,
    cards,
    loyalty_programs,
    loyalty_redemptions,
    loyalty_tiers,
    pos_checks,
    pos_refunds,
)
from kopilka.payments.schema import payment_codes, payment_types

# Parents before children: the order of an export, and reversed, of a purge.
LEDGER_TABLES = (
    units,
    accounts,
    account_limits,
    balance_shards,
    account_snapshots,
    transfers,
    entries,
    lots,
    lot_consumptions,
    holds,
    hold_resolutions,
)
DOMAIN_TABLES = (
    loyalty_programs,
    loyalty_tiers,
    cards,
    pos_checks,
    pos_refunds,
    card_purchases,
    loyalty_redemptions,
    certificates,
    certificate_payments,
    certificate_refunds,
    # r_keeper's view of them: the tiers' discount/bonus numbers and the calls answered.
    # (A terminal's FarCards secret and the sub-account mapping are set-up, and stay.)
    farcards_codes,
    farcards_calls,
    # The points payment types of the units going, and their codes (not the whole tables:
    # see ``parts``).
    payment_types,
    payment_codes,
)
CERTIFICATE_PURPOSES = (SALES, REDEMPTIONS, BREAKAGE)

# Tables that refer to ledger rows or payment types but are never loyalty data: a hotel
# folio is an account in the tenant's currency that no loyalty transfer touches (a folio
# paid with points is two transfers: the points off the card, a loyalty one; the money
# onto the folio, a hotel one). A folio payment by a points type keeps that type: a purge
# is refused while one exists (kopilka.loyalty.billing).
NOT_LOYALTY_TABLES = frozenset(
    {
        "hotel_folios",
        "hotel_invoices",
        "hotel_payments",
        "hotel_refunds",
        # Subscriber accounts are in the tenant's currency, never in a point unit.
        "subscribers",
        "sub_charges",
        "sub_topups",
        # Membership sales are in the tenant's currency.
        "membership_orders",
        "membership_refunds",
    }
)


@dataclass(frozen=True, slots=True)
class Part:
    table: Table
    where: ColumnElement[bool]

    @property
    def name(self) -> str:
        return self.table.name


@dataclass(frozen=True, slots=True)
class AccountSet:
    """The loyalty accounts of a tenant, as found before anything is removed."""

    unit_ids: tuple[int, ...]  # the point units the tenant's programs use
    counterparts: tuple[int, ...]  # accounts touched by loyalty transfers only
    crossing: tuple[int, ...]  # accounts touched by loyalty transfers and others too


def program_unit_ids(conn: Connection, tenant_id: int) -> tuple[int, ...]:
    rows = conn.execute(
        select(loyalty_programs.c.unit_id)
        .where(loyalty_programs.c.tenant_id == tenant_id)
        .distinct()
        .order_by(loyalty_programs.c.unit_id)
    ).scalars()
    return tuple(int(unit_id) for unit_id in rows)


def _seed_accounts(tenant_id: int, unit_ids: Sequence[int]) -> Select[Any]:
    """Accounts that are loyalty's by what they are, before counterparts are added."""
    by_certificate = select(certificates.c.account_id).where(certificates.c.tenant_id == tenant_id)
    certificate_system = or_(
        false(), *(accounts.c.code.startswith(f"{purpose}:") for purpose in CERTIFICATE_PURPOSES)
    )
    return select(accounts.c.id).where(
        accounts.c.tenant_id == tenant_id,
        or_(
            accounts.c.unit_id.in_(list(unit_ids)) if unit_ids else false(),
            accounts.c.id.in_(by_certificate),
            and_(accounts.c.kind == "system", certificate_system),
        ),
    )


def find_accounts(conn: Connection, tenant_id: int) -> AccountSet:
    """The point units, and the counterparts of the seed accounts, sorted pure or crossing."""
    unit_ids = program_unit_ids(conn, tenant_id)
    seed = _seed_accounts(tenant_id, unit_ids)
    mine, theirs = entries.alias("mine"), entries.alias("theirs")
    by_entries = (
        select(theirs.c.account_id)
        .join(mine, mine.c.transfer_id == theirs.c.transfer_id)
        .where(
            mine.c.tenant_id == tenant_id,
            mine.c.account_id.in_(seed),
            theirs.c.account_id.not_in(seed),
        )
    )
    by_holds_debit = select(holds.c.debit_account_id).where(
        holds.c.tenant_id == tenant_id,
        holds.c.credit_account_id.in_(seed),
        holds.c.debit_account_id.not_in(seed),
    )
    by_holds_credit = select(holds.c.credit_account_id).where(
        holds.c.tenant_id == tenant_id,
        holds.c.debit_account_id.in_(seed),
        holds.c.credit_account_id.not_in(seed),
    )
    found = sorted(
        {int(a) for a in conn.execute(union(by_entries, by_holds_debit, by_holds_credit)).scalars()}
    )
    seed_transfers = select(entries.c.transfer_id).where(
        entries.c.tenant_id == tenant_id, entries.c.account_id.in_(seed)
    )
    pure: list[int] = []
    crossing: list[int] = []
    for account_id in found:
        own_entries = exists().where(
            entries.c.account_id == account_id, entries.c.transfer_id.not_in(seed_transfers)
        )
        own_holds = exists().where(
            or_(holds.c.debit_account_id == account_id, holds.c.credit_account_id == account_id),
            holds.c.debit_account_id.not_in(seed),
            holds.c.credit_account_id.not_in(seed),
        )
        if conn.execute(select(or_(own_entries, own_holds))).scalar():
            crossing.append(account_id)
        else:
            pure.append(account_id)
    return AccountSet(unit_ids, tuple(pure), tuple(crossing))


def account_ids(tenant_id: int, found: AccountSet) -> Select[Any]:
    """The loyalty accounts: the seed and its pure counterparts (crossing ones stay out)."""
    seed = _seed_accounts(tenant_id, found.unit_ids)
    if not found.counterparts:
        return seed
    return select(accounts.c.id).where(
        accounts.c.tenant_id == tenant_id,
        or_(accounts.c.id.in_(seed), accounts.c.id.in_(list(found.counterparts))),
    )


def transfer_ids(tenant_id: int, account_set: Any) -> Select[Any]:
    """The transfers with an entry on one of ``account_set`` (a selectable of ids)."""
    return select(entries.c.transfer_id).where(
        entries.c.tenant_id == tenant_id, entries.c.account_id.in_(account_set)
    )


def parts(
    tenant_id: int, unit_ids: Sequence[int], account_set: Any, transfer_set: Any
) -> list[Part]:
    """Every table's share of the loyalty data, parents first."""
    t = tenant_id
    held = or_(
        holds.c.debit_account_id.in_(account_set), holds.c.credit_account_id.in_(account_set)
    )
    ledger = {
        units: and_(units.c.tenant_id == t, units.c.id.in_(list(unit_ids)))
        if unit_ids
        else false(),
        accounts: and_(accounts.c.tenant_id == t, accounts.c.id.in_(account_set)),
        transfers: and_(transfers.c.tenant_id == t, transfers.c.id.in_(transfer_set)),
        entries: and_(entries.c.tenant_id == t, entries.c.transfer_id.in_(transfer_set)),
        lot_consumptions: and_(
            lot_consumptions.c.tenant_id == t,
            lot_consumptions.c.lot_id.in_(
                select(lots.c.id).where(lots.c.tenant_id == t, lots.c.account_id.in_(account_set))
            ),
        ),
        holds: and_(holds.c.tenant_id == t, held),
        hold_resolutions: and_(
            hold_resolutions.c.tenant_id == t,
            hold_resolutions.c.hold_id.in_(select(holds.c.id).where(holds.c.tenant_id == t, held)),
        ),
    }
    for by_account in (account_limits, balance_shards, account_snapshots, lots):
        ledger[by_account] = and_(
            by_account.c.tenant_id == t, by_account.c.account_id.in_(account_set)
        )
    result = [Part(table, ledger[table]) for table in LEDGER_TABLES]
    narrower = _payment_parts(t, unit_ids)
    result += [Part(table, narrower.get(table, table.c.tenant_id == t)) for table in DOMAIN_TABLES]
    return result


def _payment_parts(tenant_id: int, unit_ids: Sequence[int]) -> dict[Table, ColumnElement[bool]]:
    """Of the payments tables, only the points types of the units going and their codes.

    The unit ids are a literal list (read before anything is removed), so the codes' part
    still finds its types while the purge deletes codes first."""
    t = tenant_id
    if not unit_ids:
        return {payment_types: false(), payment_codes: false()}
    going = and_(payment_types.c.tenant_id == t, payment_types.c.unit_id.in_(list(unit_ids)))
    return {
        payment_types: going,
        payment_codes: and_(
            payment_codes.c.tenant_id == t,
            payment_codes.c.payment_type_id.in_(select(payment_types.c.id).where(going)),
        ),
    }


def snapshot_parts(conn: Connection, tenant_id: int) -> tuple[AccountSet, list[Part]]:
    """The parts as subqueries: for reading inside one snapshot (export, counts)."""
    found = find_accounts(conn, tenant_id)
    account_set = account_ids(tenant_id, found)
    return found, parts(
        tenant_id, found.unit_ids, account_set, transfer_ids(tenant_id, account_set)
    )


# --------------------------------------------------------------------------- purge

# The id sets a purge materialises before it deletes anything: the subqueries above read
# rows (certificates, programs, entries) that are gone before the rows they pick are.
_scratch = MetaData()
purge_accounts = Table(
    "kopilka_purge_accounts",
    _scratch,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    prefixes=["TEMPORARY"],
)
purge_transfers = Table(
    "kopilka_purge_transfers",
    _scratch,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    prefixes=["TEMPORARY"],
)


def materialise(conn: Connection, tenant_id: int, found: AccountSet) -> list[Part]:
    """Writes the account and transfer ids to temporary tables; the parts read those."""
    for scratch in (purge_accounts, purge_transfers):
        scratch.create(conn)
    conn.execute(purge_accounts.insert().from_select(["id"], account_ids(tenant_id, found)))
    conn.execute(
        purge_transfers.insert().from_select(
            ["id"], transfer_ids(tenant_id, select(purge_accounts.c.id)).distinct()
        )
    )
    return parts(
        tenant_id, found.unit_ids, select(purge_accounts.c.id), select(purge_transfers.c.id)
    )


def drop_scratch(conn: Connection) -> None:
    for scratch in (purge_transfers, purge_accounts):
        scratch.drop(conn)
