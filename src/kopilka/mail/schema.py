"""The outgoing e-mail queue: a message is written in the same transaction as what it
tells of (a sale), and sent after it, retried until the SMTP server takes it; a message
that keeps failing is marked failed and shown, never lost."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Integer, String, Table, Text

from kopilka.core.db import Id, UtcDateTime, metadata

mail_outbox = Table(
    "mail_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("kind", String(32), nullable=False),  # "membership_sold", ...
    Column("ref", String(64), nullable=False, server_default=""),  # what it is about
    Column("to_addr", String(254), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body_text", Text, nullable=False),
    Column("body_html", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_mail_outbox_due", "status", "next_attempt_at"),
    Index("ix_mail_outbox_tenant_id_id", "tenant_id", "id"),
    CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
    CheckConstraint("attempts >= 0", name="attempts"),
)
