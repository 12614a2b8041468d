"""Tables of the ledger. See ``kopilka.ledger.posting`` for the model they serve.

What is append-only (never updated, never deleted; triggers refuse it on both databases):
``transfers``, ``entries``, ``account_limits``, ``hold_resolutions``, ``lot_consumptions``,
``account_snapshots``. What is a cache kept under the account's row lock and checked by
``kopilka ledger verify`` against the append-only rows: ``accounts.balance_minor`` and its
companions, ``balance_shards``, ``lots.remaining_minor``.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from kopilka.core.db import Id, Json, Minor, UtcDateTime, metadata

units = Table(
    "units",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("code", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("exponent", SmallInteger, nullable=False),
    Column("name", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "code"),
    CheckConstraint("kind IN ('currency', 'points')", name="kind"),
    CheckConstraint("exponent >= 0 AND exponent <= 6", name="exponent"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("unit_id", Id, ForeignKey("units.id"), nullable=False),
    # A stable name for system accounts ("issuance:BONUS"); NULL for customers' accounts.
    Column("code", String(100), nullable=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("kind", String(32), nullable=False),
    Column("owner_type", String(32), nullable=True),
    Column("owner_id", String(64), nullable=True),
    Column("policy", String(16), nullable=False),
    Column("credit_limit_minor", Minor, nullable=False, server_default="0"),
    Column("uses_lots", Boolean, nullable=False, server_default="0"),
    # Hot accounts keep their balance in balance_shards, so postings do not queue on them.
    Column("is_hot", Boolean, nullable=False, server_default="0"),
    Column("balance_minor", Minor, nullable=False, server_default="0"),
    Column("held_minor", Minor, nullable=False, server_default="0"),
    Column("debit_total_minor", Minor, nullable=False, server_default="0"),
    Column("entry_count", Minor, nullable=False, server_default="0"),
    Column("last_posted_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "code"),
    Index(None, "tenant_id", "owner_type", "owner_id"),
    CheckConstraint("policy IN ('non_negative', 'credit_limit', 'unlimited')", name="policy"),
    CheckConstraint("credit_limit_minor >= 0", name="credit_limit"),
    CheckConstraint("held_minor >= 0", name="held"),
    CheckConstraint("policy <> 'non_negative' OR balance_minor >= 0", name="non_negative"),
    CheckConstraint("NOT (is_hot AND policy <> 'unlimited')", name="hot_unlimited"),
    CheckConstraint("NOT (uses_lots AND policy <> 'non_negative')", name="lots_non_negative"),
)

account_limits = Table(
    "account_limits",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("credit_limit_minor", Minor, nullable=False),
    Column("effective_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Index(None, "account_id", "effective_at"),
    CheckConstraint("credit_limit_minor >= 0", name="credit_limit"),
)

balance_shards = Table(
    "balance_shards",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("shard", SmallInteger, nullable=False),
    Column("balance_minor", Minor, nullable=False, server_default="0"),
    Column("debit_total_minor", Minor, nullable=False, server_default="0"),
    Column("entry_count", Minor, nullable=False, server_default="0"),
    PrimaryKeyConstraint("account_id", "shard"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("corrects_transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("hold_id", Id, nullable=True),
    Column("posted_at", UtcDateTime, nullable=False),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("meta", Json, nullable=True),
    UniqueConstraint("tenant_id", "idempotency_key"),
    Index(None, "tenant_id", "posted_at"),
    Index(None, "corrects_transfer_id"),
)

entries = Table(
    "entries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("unit_id", Id, ForeignKey("units.id"), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("posted_at", UtcDateTime, nullable=False),
    # Running figures of the account after this entry; NULL on hot accounts.
    Column("account_seq", Minor, nullable=True),
    Column("balance_after_minor", Minor, nullable=True),
    Column("debit_total_after_minor", Minor, nullable=True),
    Index(None, "transfer_id"),
    Index(None, "account_id", "posted_at", "account_seq"),
    CheckConstraint("amount_minor <> 0", name="amount_nonzero"),
)

holds = Table(
    "holds",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("debit_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("credit_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("unit_id", Id, ForeignKey("units.id"), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("meta", Json, nullable=True),
    UniqueConstraint("tenant_id", "idempotency_key"),
    Index(None, "debit_account_id", "expires_at"),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
)

hold_resolutions = Table(
    "hold_resolutions",
    metadata,
    # One row per hold, ever: the primary key is what makes "captured or voided, once".
    Column("hold_id", Id, ForeignKey("holds.id"), primary_key=True, autoincrement=False),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("resolved_at", UtcDateTime, nullable=False),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("source_ip", String(64), nullable=True),
    CheckConstraint("status IN ('captured', 'voided', 'expired')", name="status"),
    CheckConstraint("amount_minor >= 0", name="amount"),
)

lots = Table(
    "lots",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("remaining_minor", Minor, nullable=False),
    Column("available_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index(
        "ix_lots_open",
        "account_id",
        "expires_at",
        sqlite_where=text("remaining_minor > 0"),
        postgresql_where=text("remaining_minor > 0"),
    ),
    Index(
        "ix_lots_expiring",
        "expires_at",
        sqlite_where=text("remaining_minor > 0"),
        postgresql_where=text("remaining_minor > 0"),
    ),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("remaining_minor >= 0 AND remaining_minor <= amount_minor", name="remaining"),
)

lot_consumptions = Table(
    "lot_consumptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("lot_id", Id, ForeignKey("lots.id"), nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Index(None, "lot_id"),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
)

account_snapshots = Table(
    "account_snapshots",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    # The figures of all entries with posted_at <= as_of.
    Column("as_of", UtcDateTime, nullable=False),
    Column("balance_minor", Minor, nullable=False),
    Column("debit_total_minor", Minor, nullable=False),
    Column("entry_count", Minor, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "as_of"),
)

APPEND_ONLY_TABLES = (
    "transfers",
    "entries",
    "account_limits",
    "hold_resolutions",
    "lot_consumptions",
    "account_snapshots",
    "audit_events",
)
