"""Tables of fiscal receipts (SPEC H-6).

* ``cash_registers``: a tenant's registers, each an adapter (``atol_online_v5``, the cloud
  service of ATOL Online, API v5) with its settings (the service's address, login,
  password, group code, the seller's INN, payment address, tax system, e-mail). The
  password is a secret: never logged, never shown back.
* ``fiscal_receipts``: a receipt asked for a payment or refund (``source_type`` and
  ``source_id``): the operation (``sell`` / ``sell_refund``), the register, where its
  electronic copy goes (e-mail or phone), what it says (``payload``: items, payments,
  total), and how far it got: ``pending`` (not yet accepted by the register), ``wait``
  (accepted, being fiscalised), ``done`` (fiscal data in ``fiscal``), ``failed`` (the
  register refused; kept, shown and retried by hand or by the job). ``external_id`` is
  the register's idempotency key: the same receipt sent twice is printed once.
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
    Text,
    UniqueConstraint,
)

from kopilka.core.db import Id, Json, UtcDateTime, metadata

cash_registers = Table(
    "cash_registers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("adapter", String(32), nullable=False),
    Column("settings", Json, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

RECEIPT_STATUSES = ("pending", "wait", "done", "failed")

fiscal_receipts = Table(
    "fiscal_receipts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("register_id", Id, ForeignKey("cash_registers.id"), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("source_type", String(32), nullable=False),
    Column("source_id", Id, nullable=False),
    Column("external_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider_uuid", String(64), nullable=True),
    Column("contact_email", String(254), nullable=True),
    Column("contact_phone", String(32), nullable=True),
    Column("payload", Json, nullable=False),
    Column("fiscal", Json, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("operation IN ('sell', 'sell_refund')", name="operation"),
    CheckConstraint("status IN ('pending', 'wait', 'done', 'failed')", name="status"),
    UniqueConstraint("tenant_id", "external_id"),
    UniqueConstraint("tenant_id", "source_type", "source_id"),
    Index("ix_fiscal_receipts_due", "status", "next_attempt_at"),
)
