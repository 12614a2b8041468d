"""Tables of gift certificates (SPEC C-9): the certificates, payments made with them, and
refunds of those payments.

The money itself lives in the ledger: every certificate has an account in the tenant's
currency (``non_negative``), so its balance and history are the ledger's. What is kept
here is what the ledger does not know: the certificate's number and state, how it was
sold (once, by an operation id), and which payment a refund gives back to (never more
than that payment took).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from kopilka.core.db import Id, Minor, UtcDateTime, metadata

CERTIFICATE_STATUSES = ("issued", "active", "blocked", "expired")

# issued: printed, not sold, nothing on it; active: sold, its nominal on its account;
# blocked: by a person, with a reason; expired: past its date, the rest written off.
certificates = Table(
    "certificates",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("number", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default="issued"),
    Column("blocked_reason", String(200), nullable=True),
    Column("currency", String(3), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False, unique=True),
    # Days a sold certificate stays valid when the sale names no date (None: for ever).
    Column("validity_days", Integer, nullable=True),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("nominal_minor", Minor, nullable=True),
    Column("sold_at", UtcDateTime, nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("sale_operation_id", String(100), nullable=True),
    Column("sale_request_hash", String(64), nullable=True),
    Column("sale_transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("expired_at", UtcDateTime, nullable=True),
    Column("expiry_transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "number"),
    Index("ix_certificates_tenant_id_status_expires_at", "tenant_id", "status", "expires_at"),
    CheckConstraint("status IN ('issued', 'active', 'blocked', 'expired')", name="status"),
    CheckConstraint("nominal_minor IS NULL OR nominal_minor > 0", name="nominal"),
    CheckConstraint("validity_days IS NULL OR validity_days > 0", name="validity_days"),
    CheckConstraint("(sold_at IS NULL) = (nominal_minor IS NULL)", name="sold_with_nominal"),
)

# A payment with a certificate, once per (channel, operation id): the channel is
# ``terminal:<id>`` for a POS, ``staff`` for the admin side.
certificate_payments = Table(
    "certificate_payments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("certificate_id", Id, ForeignKey("certificates.id"), nullable=False),
    Column("channel", String(40), nullable=False),
    Column("terminal_id", Id, ForeignKey("terminals.id"), nullable=True),
    Column("operation_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("check_id", String(100), nullable=True),
    Column("amount_minor", Minor, nullable=False),
    Column("refunded_minor", Minor, nullable=False, server_default="0"),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "channel", "operation_id"),
    Index("ix_certificate_payments_certificate_id", "certificate_id"),
    CheckConstraint("amount_minor > 0", name="amount"),
    CheckConstraint("refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refunded"),
)

# Refunds of a payment back to its certificate, each once by its own id.
certificate_refunds = Table(
    "certificate_refunds",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("payment_id", Id, ForeignKey("certificate_payments.id"), nullable=False),
    Column("refund_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("payment_id", "refund_id"),
    CheckConstraint("amount_minor > 0", name="amount"),
)
