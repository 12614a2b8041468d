"""Tables of the payment types directory (SPEC H-3) and the terminals' payment codes (P-8).

* ``payment_types``: how a tenant is paid (cash, card, bank transfer, deposit, room
  charge, points, gift certificate, other), each with a name and an on/off switch. A
  *points* type also names the point unit it spends (at most one type per unit), what one
  point is worth in the folio's currency (``rate_micro``: millionths of a currency unit
  per whole point, so 1_000_000 is "one point pays one rouble"), and the share of what a
  guest owes that points may pay (``max_share_bp``, basis points: 3000 is 30 %). Those
  three are set for a points type and for no other; a CHECK says so.
* ``payment_codes``: the code a POS sends (an r_keeper currency code such as ``12``, or
  ``ROOM``) and the payment type it means, for every terminal of the tenant
  (``terminal_id`` NULL) or for one terminal, whose own mapping wins for that code. A code
  is mapped once tenant-wide and once per terminal at most: a partial unique index covers
  the tenant-wide rows, which a plain unique key over a NULL column would not.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    text,
)

from kopilka.core.db import Id, UtcDateTime, metadata

PAYMENT_KINDS = (
    "cash",
    "card",
    "bank_transfer",
    "deposit",
    "room_charge",
    "points",
    "gift_certificate",
    "other",
)

payment_types = Table(
    "payment_types",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    # Points types only (NULL for every other kind).
    Column("unit_id", Id, ForeignKey("units.id"), nullable=True),
    Column("rate_micro", BigInteger, nullable=True),
    Column("max_share_bp", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
    # One points type per point unit (seed 000); NULLs (other kinds) never collide.
    UniqueConstraint("tenant_id", "unit_id"),
    CheckConstraint(
        "kind IN ('cash', 'card', 'bank_transfer', 'deposit', 'room_charge', 'points', "
        "'gift_certificate', 'other')",
        name="kind",
    ),
    CheckConstraint(
        "(kind = 'points' AND unit_id IS NOT NULL AND rate_micro IS NOT NULL "
        "AND max_share_bp IS NOT NULL) OR (kind <> 'points' AND unit_id IS NULL "
        "AND rate_micro IS NULL AND max_share_bp IS NULL)",
        name="points_fields",
    ),
    CheckConstraint("rate_micro IS NULL OR rate_micro > 0", name="rate_micro"),
    CheckConstraint(
        "max_share_bp IS NULL OR (max_share_bp >= 0 AND max_share_bp <= 10000)",
        name="max_share_bp",
    ),
)

payment_codes = Table(
    "payment_codes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("code", String(32), nullable=False),
    # NULL: every terminal of the tenant; otherwise this terminal only.
    Column("terminal_id", Id, ForeignKey("terminals.id"), nullable=True),
    Column("payment_type_id", Id, ForeignKey("payment_types.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # A terminal's own mapping of a code: once. Also the index the resolver reads.
    UniqueConstraint("tenant_id", "code", "terminal_id"),
    # The tenant-wide mapping of a code: once (the key above lets NULLs repeat).
    Index(
        "uq_payment_codes_tenant_wide",
        "tenant_id",
        "code",
        unique=True,
        sqlite_where=text("terminal_id IS NULL"),
        postgresql_where=text("terminal_id IS NULL"),
    ),
    Index("ix_payment_codes_payment_type_id", "payment_type_id"),
)
