"""Tables of the loyalty domain: programs with tiers and rules, cards, POS checks.

Points themselves live in the ledger: every card has a wallet account in the program's
point unit (with lots: activation delay and lifetime), so balances, holds, expiry and
history are the ledger's. What is kept here is what the ledger does not know: which
program and tier a card is on, its holder, its accumulation, and the checks terminals
committed (so a check is applied once, and refunds never exceed it).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from kopilka.core.db import Id, Json, Minor, UtcDateTime, metadata

# Percentages are kept in basis points: 500 is 5 %, 10000 is 100 %.
loyalty_programs = Table(
    "loyalty_programs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    # The point unit accrued and spent; one point's worth is one unit of the currency.
    Column("unit_id", Id, ForeignKey("units.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("accrual_bp", Integer, nullable=False, server_default="0"),
    Column("exclude_points_part", Boolean, nullable=False, server_default="1"),
    Column("activation_delay_days", Integer, nullable=False, server_default="0"),
    Column("lifetime_days", Integer, nullable=True),
    Column("max_share_bp", Integer, nullable=False, server_default="10000"),
    Column("min_check_minor", Minor, nullable=False, server_default="0"),
    # Accumulation counts purchases of the last N days only (None: all of them).
    Column("accumulation_window_days", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
    CheckConstraint("accrual_bp >= 0 AND accrual_bp <= 10000", name="accrual_bp"),
    CheckConstraint("max_share_bp >= 0 AND max_share_bp <= 10000", name="max_share_bp"),
    CheckConstraint("activation_delay_days >= 0", name="activation_delay_days"),
    CheckConstraint("lifetime_days IS NULL OR lifetime_days > 0", name="lifetime_days"),
    CheckConstraint("min_check_minor >= 0", name="min_check_minor"),
)

# A tier applies from an accumulation threshold up: its discount and its accrual rate.
loyalty_tiers = Table(
    "loyalty_tiers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("program_id", Id, ForeignKey("loyalty_programs.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("threshold_minor", Minor, nullable=False),
    Column("discount_bp", Integer, nullable=False, server_default="0"),
    Column("accrual_bp", Integer, nullable=False, server_default="0"),
    UniqueConstraint("program_id", "threshold_minor"),
    CheckConstraint("threshold_minor >= 0", name="threshold_minor"),
    CheckConstraint("discount_bp >= 0 AND discount_bp <= 10000", name="discount_bp"),
    CheckConstraint("accrual_bp >= 0 AND accrual_bp <= 10000", name="accrual_bp"),
)

CARD_STATUSES = ("active", "blocked", "expired")

cards = Table(
    "cards",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("program_id", Id, ForeignKey("loyalty_programs.id"), nullable=False),
    Column("number", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("blocked_reason", String(200), nullable=True),
    Column("holder_name", String(200), nullable=True),
    Column("holder_phone", String(32), nullable=True),
    Column("holder_email", String(200), nullable=True),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    # The card's points: a wallet account of the program's unit, with lots.
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False, unique=True),
    Column("accumulation_minor", Minor, nullable=False, server_default="0"),
    Column("checks_count", Integer, nullable=False, server_default="0"),
    Column("tier_id", Id, ForeignKey("loyalty_tiers.id"), nullable=True),
    # Points a refund or an offline check could not take back: owed by the card.
    Column("debt_minor", Minor, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "number"),
    Index("ix_cards_tenant_id_holder_phone", "tenant_id", "holder_phone"),
    CheckConstraint("status IN ('active', 'blocked', 'expired')", name="status"),
    CheckConstraint("debt_minor >= 0", name="debt_minor"),
)

# Money a card's holder paid, by day, for accumulation with an aging window.
card_purchases = Table(
    "card_purchases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("card_id", Id, ForeignKey("cards.id"), nullable=False),
    Column("pos_check_id", Id, ForeignKey("pos_checks.id"), nullable=True),
    Column("amount_minor", Minor, nullable=False),  # negative for a refund
    Column("checks", Integer, nullable=False),  # +1 a check, -1 a full refund, 0 otherwise
    Column("at", UtcDateTime, nullable=False),
    Index("ix_card_purchases_card_id_at", "card_id", "at"),
)

POS_CHECK_STATUSES = ("committed", "partly_refunded", "refunded", "cancelled")

# A check a terminal closed with a card: applied once per (terminal, check id).
pos_checks = Table(
    "pos_checks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("terminal_id", Id, ForeignKey("terminals.id"), nullable=False),
    Column("check_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("card_id", Id, ForeignKey("cards.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("total_minor", Minor, nullable=False),  # the lines, before the discount
    Column("discount_minor", Minor, nullable=False),
    Column("points_minor", Minor, nullable=False),  # paid with points (currency minor)
    Column("money_minor", Minor, nullable=False),  # paid otherwise
    Column("accrued_minor", Minor, nullable=False),  # points accrued (point unit minor)
    Column("spent_minor", Minor, nullable=False),  # points spent (point unit minor)
    Column("refunded_minor", Minor, nullable=False, server_default="0"),
    # Points an offline check took that the card no longer had (added to the card's debt).
    Column("debt_minor", Minor, nullable=False, server_default="0"),
    Column("spend_transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("accrual_transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("lines", Json, nullable=False),
    # How the money part was paid, when the POS said (SPEC P-8): [{code, payment_type_id,
    # payment_type, kind, amount_minor}], the type's name and kind as they were then.
    Column("payments", Json),
    Column("closed_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "terminal_id", "check_id"),
    Index("ix_pos_checks_card_id", "card_id"),
    CheckConstraint(
        "status IN ('committed', 'partly_refunded', 'refunded', 'cancelled')", name="status"
    ),
    CheckConstraint("refunded_minor >= 0 AND refunded_minor <= total_minor", name="refunded"),
)

# Refunds of a check, each once by its own id.
pos_refunds = Table(
    "pos_refunds",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("pos_check_id", Id, ForeignKey("pos_checks.id"), nullable=False),
    Column("refund_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("points_returned_minor", Minor, nullable=False),
    Column("accrual_reversed_minor", Minor, nullable=False),
    Column("debt_minor", Minor, nullable=False),
    Column("transfer_ids", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # Taken back (a return rolled back at the terminal): when, and the transfers that undid it.
    Column("cancelled_at", UtcDateTime),
    Column("cancel_transfer_ids", Json),
    UniqueConstraint("pos_check_id", "refund_id"),
)

# Points written off a card by a processing client (SPEC H-5: a hotel paying a folio with
# points, this server's own front desk or another system reaching it over HTTP), and
# points given back (``kind`` refund, ``parent_id`` the write-off it returns). Idempotent
# by the client's channel and operation id; refunds never return more than was taken.
loyalty_redemptions = Table(
    "loyalty_redemptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("card_id", Id, ForeignKey("cards.id"), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("parent_id", Id, ForeignKey("loyalty_redemptions.id"), nullable=True),
    Column("channel", String(40), nullable=False),
    Column("operation_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("refunded_minor", Minor, nullable=False, server_default="0"),
    Column("description", String(200), nullable=False, server_default=""),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("kind IN ('redeem', 'refund')", name="kind"),
    CheckConstraint("amount_minor > 0", name="amount"),
    CheckConstraint("refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refunded"),
    CheckConstraint("(kind = 'refund') = (parent_id IS NOT NULL)", name="parent"),
    UniqueConstraint("tenant_id", "channel", "operation_id"),
    Index("ix_loyalty_redemptions_card", "card_id", "created_at"),
)
