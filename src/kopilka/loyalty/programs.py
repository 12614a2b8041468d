"""Loyalty programs: their point unit, rules (SPEC C-4) and tiers by accumulation (C-3).

Rates are basis points (500 = 5 %). A program's points are worth one unit of its currency
each (bonus roubles); the unit's decimals and the currency's may differ, and amounts are
converted exactly between their minor units (see ``points_for_money``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, select

from kopilka.core.actor import Actor
from kopilka.core.cache import ConfigCache
from kopilka.core.clock import utcnow
from kopilka.core.errors import Conflict, InvalidInput, NotFound
from kopilka.core.money import UnitKind, currency_exponent
from kopilka.ledger.accounts import UnitView, get_unit, system_account
from kopilka.ledger.schema import units
from kopilka.loyalty.schema import loyalty_programs, loyalty_tiers
from kopilka.tenancy.audit import record_audit

BP = 10_000  # basis points in a whole


class LoyaltyErrorCode(StrEnum):
    PROGRAM_NOT_FOUND = "program_not_found"
    PROGRAM_EXISTS = "program_exists"
    INVALID_PROGRAM = "invalid_program"
    TIER_EXISTS = "tier_exists"
    INVALID_TIER = "invalid_tier"
    CARD_NOT_FOUND = "card_not_found"
    CARD_BLOCKED = "card_blocked"
    CARD_EXPIRED = "card_expired"
    CARD_EXISTS = "card_exists"
    INVALID_CARD_NUMBER = "invalid_card_number"
    LOYALTY_DISABLED = "loyalty_disabled"
    INVALID_CHECK = "invalid_check"
    CHECK_LINES_MISMATCH = "check_lines_mismatch"
    POINTS_OVER_CAP = "points_over_cap"
    INSUFFICIENT_POINTS = "insufficient_points"
    CHECK_CONFLICT = "check_conflict"
    CHECK_NOT_FOUND = "check_not_found"
    REFUND_TOO_LARGE = "refund_too_large"
    REFUND_CONFLICT = "refund_conflict"
    CHECK_CANCELLED = "check_cancelled"
    INVALID_PHONE = "invalid_phone"
    INVALID_EMAIL = "invalid_email"
    INVALID_HOLDER = "invalid_holder"
    INVALID_CARD_RANGE = "invalid_card_range"
    INVALID_CARD = "invalid_card"
    PROGRAM_UNIT_MISMATCH = "program_unit_mismatch"
    DOCUMENT_CONFLICT = "document_conflict"
    INVALID_DOCUMENT = "invalid_document"
    REASON_REQUIRED = "reason_required"
    INVALID_AMOUNT = "invalid_amount"
    # Gift certificates (kopilka.loyalty.certificates).
    CERTIFICATE_NOT_FOUND = "certificate_not_found"
    CERTIFICATE_EXISTS = "certificate_exists"
    INVALID_CERTIFICATE = "invalid_certificate"
    INVALID_CERTIFICATE_NUMBER = "invalid_certificate_number"
    INVALID_CERTIFICATE_RANGE = "invalid_certificate_range"
    CERTIFICATE_NOT_SOLD = "certificate_not_sold"
    ALREADY_SOLD = "already_sold"
    CERTIFICATE_BLOCKED = "certificate_blocked"
    CERTIFICATE_EXPIRED = "certificate_expired"
    INSUFFICIENT_CERTIFICATE_BALANCE = "insufficient_certificate_balance"
    CERTIFICATE_OPERATION_CONFLICT = "certificate_operation_conflict"
    CERTIFICATE_PAYMENT_NOT_FOUND = "certificate_payment_not_found"
    # Back-office selections (kopilka.loyalty.card_filters).
    INVALID_SELECTION = "invalid_selection"
    # Imports of cards and opening balances (kopilka.loyalty.imports).
    INVALID_IMPORT = "invalid_import"
    IMPORT_CONFLICT = "import_conflict"
    # The tenant's loyalty switch and purge (kopilka.loyalty.billing).
    LOYALTY_MODULE_DISABLED = "loyalty_module_disabled"
    LOYALTY_STILL_ENABLED = "loyalty_still_enabled"
    PURGE_NOT_CONFIRMED = "purge_not_confirmed"
    PURGE_REQUEST_INVALID = "purge_request_invalid"
    PURGE_CROSSES_LEDGER = "purge_crosses_ledger"
    # Reports and reconciliation (kopilka.loyalty.reports).
    INVALID_REPORT = "invalid_report"
    INVALID_RECONCILIATION = "invalid_reconciliation"
    # Taking a POS refund back (kopilka.loyalty.pos.cancel_refund).
    REFUND_NOT_FOUND = "refund_not_found"
    REFUND_NOT_LAST = "refund_not_last"
    REFUND_POINTS_SPENT = "refund_points_spent"
    REFUND_CANCELLED = "refund_cancelled"
    # How a check's money part was paid (SPEC P-8).
    INVALID_PAYMENT = "invalid_payment"
    PAYMENTS_MISMATCH = "payments_mismatch"
    # Points written off by processing clients (kopilka.loyalty.redemptions, SPEC H-5).
    INVALID_REDEMPTION = "invalid_redemption"
    REDEMPTION_NOT_FOUND = "redemption_not_found"
    POINTS_UNIT_MISMATCH = "points_unit_mismatch"
    REDEMPTION_REFUNDED = "redemption_refunded"
    # A purge while hotel folios were paid with the points going (kopilka.hotel).
    PURGE_FOLIO_POINTS = "purge_folio_points"


E = LoyaltyErrorCode


@dataclass(frozen=True, slots=True)
class Tier:
    id: int
    name: str
    threshold_minor: int
    discount_bp: int
    accrual_bp: int


@dataclass(frozen=True, slots=True)
class Program:
    id: int
    tenant_id: int
    name: str
    unit: UnitView
    currency: str
    currency_exponent: int
    enabled: bool
    accrual_bp: int
    exclude_points_part: bool
    activation_delay_days: int
    lifetime_days: int | None
    max_share_bp: int
    min_check_minor: int
    accumulation_window_days: int | None
    tiers: tuple[Tier, ...]  # by threshold, lowest first

    def tier_for(self, accumulation_minor: int) -> Tier | None:
        """The highest tier whose threshold the accumulation has reached."""
        reached = [t for t in self.tiers if t.threshold_minor <= accumulation_minor]
        return reached[-1] if reached else None

    def points_for_money(self, money_minor: int) -> int:
        """Points (unit minor) worth ``money_minor`` of the currency, rounded down."""
        shift = self.unit.exponent - self.currency_exponent
        return money_minor * 10**shift if shift >= 0 else money_minor // 10**-shift

    def money_for_points(self, points_minor: int) -> int:
        """Currency minor units ``points_minor`` points pay for, rounded down."""
        shift = self.currency_exponent - self.unit.exponent
        return points_minor * 10**shift if shift >= 0 else points_minor // 10**-shift


def _check_bp(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= BP:
        raise InvalidInput(E.INVALID_PROGRAM, f"{what} is 0 to 10000 basis points (0 to 100 %)")
    return value


def create_program(
    conn: Connection,
    *,
    tenant_id: int,
    name: str,
    unit_code: str,
    actor: Actor,
    currency: str | None = None,
    accrual_bp: int = 0,
    exclude_points_part: bool = True,
    activation_delay_days: int = 0,
    lifetime_days: int | None = None,
    max_share_bp: int = BP,
    min_check_minor: int = 0,
    accumulation_window_days: int | None = None,
) -> Program:
    """A program accruing and spending points of ``unit_code`` (a point unit)."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput(E.INVALID_PROGRAM, "a program's name is 1 to 200 characters")
    unit = get_unit(conn, tenant_id, unit_code)
    if unit.kind != UnitKind.POINTS:
        raise InvalidInput(E.INVALID_PROGRAM, f"{unit.code} is a currency, not a point unit")
    if currency is None:
        from kopilka.tenancy.actions import get_tenant  # tenancy sits above the ledger

        currency = get_tenant(conn, tenant_id).currency
    currency = currency.strip().upper()
    currency_exponent(currency)  # refuses an unknown currency
    _check_bp(accrual_bp, "the accrual rate")
    _check_bp(max_share_bp, "the share of a check payable with points")
    if activation_delay_days < 0:
        raise InvalidInput(E.INVALID_PROGRAM, "the activation delay is 0 days or more")
    if lifetime_days is not None and lifetime_days <= 0:
        raise InvalidInput(E.INVALID_PROGRAM, "points live at least one day (or for ever)")
    if accumulation_window_days is not None and accumulation_window_days <= 0:
        raise InvalidInput(E.INVALID_PROGRAM, "the accumulation window is at least one day")
    if min_check_minor < 0:
        raise InvalidInput(E.INVALID_PROGRAM, "the minimum check is zero or more")
    if conn.execute(
        select(loyalty_programs.c.id).where(
            loyalty_programs.c.tenant_id == tenant_id, loyalty_programs.c.name == name
        )
    ).first():
        raise Conflict(E.PROGRAM_EXISTS, f"a program named {name!r} exists already")
    program_id = conn.execute(
        loyalty_programs.insert().returning(loyalty_programs.c.id),
        {
            "tenant_id": tenant_id,
            "name": name,
            "unit_id": unit.id,
            "currency": currency,
            "enabled": True,
            "accrual_bp": accrual_bp,
            "exclude_points_part": exclude_points_part,
            "activation_delay_days": activation_delay_days,
            "lifetime_days": lifetime_days,
            "max_share_bp": max_share_bp,
            "min_check_minor": min_check_minor,
            "accumulation_window_days": accumulation_window_days,
            "created_at": utcnow(),
        },
    ).scalar_one()
    # The system accounts its postings use exist from the start.
    for purpose in ("issuance", "redeemed"):
        system_account(conn, tenant_id=tenant_id, unit_code=unit.code, purpose=purpose, actor=actor)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="program.create",
        object_type="program",
        object_id=program_id,
        details={"name": name, "unit": unit.code, "accrual_bp": accrual_bp},
    )
    return get_program(conn, tenant_id, program_id)


def add_tier(
    conn: Connection,
    *,
    tenant_id: int,
    program_id: int,
    name: str,
    threshold_minor: int,
    actor: Actor,
    discount_bp: int = 0,
    accrual_bp: int = 0,
) -> Tier:
    """A level reached from ``threshold_minor`` of accumulation (in the currency)."""
    get_program(conn, tenant_id, program_id)
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput(E.INVALID_TIER, "a tier's name is 1 to 100 characters")
    if threshold_minor < 0:
        raise InvalidInput(E.INVALID_TIER, "a tier's threshold is zero or more")
    for value, what in ((discount_bp, "the discount"), (accrual_bp, "the accrual rate")):
        if not 0 <= value <= BP:
            raise InvalidInput(E.INVALID_TIER, f"{what} is 0 to 10000 basis points")
    if conn.execute(
        select(loyalty_tiers.c.id).where(
            loyalty_tiers.c.program_id == program_id,
            loyalty_tiers.c.threshold_minor == threshold_minor,
        )
    ).first():
        raise Conflict(E.TIER_EXISTS, "the program has a tier at this threshold already")
    tier_id = conn.execute(
        loyalty_tiers.insert().returning(loyalty_tiers.c.id),
        {
            "tenant_id": tenant_id,
            "program_id": program_id,
            "name": name,
            "threshold_minor": threshold_minor,
            "discount_bp": discount_bp,
            "accrual_bp": accrual_bp,
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="tier.create",
        object_type="program",
        object_id=program_id,
        details={"tier": tier_id, "threshold_minor": threshold_minor},
    )
    forget_program(conn, tenant_id, program_id)
    return Tier(tier_id, name, threshold_minor, discount_bp, accrual_bp)


def get_program(conn: Connection, tenant_id: int, program_id: int) -> Program:
    # Two queries (the program with its unit, then its tiers): the POS reads this per check.
    row = conn.execute(
        select(
            loyalty_programs,
            units.c.code.label("unit_code"),
            units.c.kind.label("unit_kind"),
            units.c.exponent.label("unit_exponent"),
            units.c.name.label("unit_name"),
        )
        .join(units, units.c.id == loyalty_programs.c.unit_id)
        .where(loyalty_programs.c.tenant_id == tenant_id, loyalty_programs.c.id == program_id)
    ).first()
    if row is None:
        raise NotFound(E.PROGRAM_NOT_FOUND, f"program {program_id} does not exist")
    tiers = tuple(
        Tier(t.id, t.name, t.threshold_minor, t.discount_bp, t.accrual_bp)
        for t in conn.execute(
            select(loyalty_tiers)
            .where(loyalty_tiers.c.program_id == program_id)
            .order_by(loyalty_tiers.c.threshold_minor)
        )
    )
    return Program(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        unit=UnitView(
            row.unit_id, row.unit_code, UnitKind(row.unit_kind), row.unit_exponent, row.unit_name
        ),
        currency=row.currency,
        currency_exponent=currency_exponent(row.currency),
        enabled=bool(row.enabled),
        accrual_bp=row.accrual_bp,
        exclude_points_part=bool(row.exclude_points_part),
        activation_delay_days=row.activation_delay_days,
        lifetime_days=row.lifetime_days,
        max_share_bp=row.max_share_bp,
        min_check_minor=row.min_check_minor,
        accumulation_window_days=row.accumulation_window_days,
        tiers=tiers,
    )


# The POS gateway reads the card's program on every request (kopilka.core.cache).
PROGRAMS: ConfigCache[tuple[int, int], Program] = ConfigCache("loyalty programs")


def cached_program(conn: Connection, tenant_id: int, program_id: int) -> Program:
    """``get_program`` through this process's short-lived cache (the POS hot paths)."""
    program = PROGRAMS.get(
        conn, (tenant_id, program_id), lambda: get_program(conn, tenant_id, program_id)
    )
    assert program is not None
    return program


def forget_program(conn: Connection, tenant_id: int, program_id: int) -> None:
    """A program or its tiers changed (in ``conn``'s transaction): read it afresh."""
    PROGRAMS.forget(lambda key: key == (tenant_id, program_id), conn=conn)


def list_programs(conn: Connection, tenant_id: int) -> list[Program]:
    ids = conn.execute(
        select(loyalty_programs.c.id)
        .where(loyalty_programs.c.tenant_id == tenant_id)
        .order_by(loyalty_programs.c.name)
    ).scalars()
    return [get_program(conn, tenant_id, program_id) for program_id in ids]


def rates(program: Program, accumulation_minor: int) -> tuple[Tier | None, int, int]:
    """(tier, discount bp, accrual bp) for a card with this accumulation."""
    tier = program.tier_for(accumulation_minor)
    if tier is None:
        return None, 0, program.accrual_bp
    return tier, tier.discount_bp, tier.accrual_bp


def lot_dates(program: Program, moment: datetime) -> tuple[datetime | None, datetime | None]:
    """When points accrued at ``moment`` become spendable, and when they expire (the
    lifetime counts from when they become spendable)."""
    available = moment + timedelta(days=program.activation_delay_days)
    expires = (
        None
        if program.lifetime_days is None
        else moment + timedelta(days=program.activation_delay_days + program.lifetime_days)
    )
    return (available if program.activation_delay_days else None), expires
