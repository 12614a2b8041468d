"""Tables of events and outgoing webhooks (SPEC X-3).

* ``events``: what happened in a tenant that its other systems may act on ("subscriber
  status changed", "promised payment taken", "membership sold"), written in the same
  transaction as the change itself (an outbox): an event exists exactly when its change
  does. Read as a feed by cursor (``id``), and delivered to webhooks.
* ``webhook_endpoints``: where a tenant wants events sent (an HTTPS or HTTP URL), which
  types (empty: every type), and the secret the deliveries are signed with. A rotated
  secret stays valid beside the new one until ``previous_secret_expires_at``: deliveries
  are signed with both meanwhile, so the receiver can switch without losing one.
* ``webhook_deliveries``: one event to one endpoint, retried with back-off until the
  endpoint answers 2xx or the attempts run out; ``webhook_attempts`` the log of each try.
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

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("payload", Json, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Index("ix_events_tenant_id_id", "tenant_id", "id"),
    Index("ix_events_tenant_type_id", "tenant_id", "type", "id"),
    Index("ix_events_tenant_subject", "tenant_id", "subject_type", "subject_id"),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("url", String(500), nullable=False),
    Column("description", String(200), nullable=False, server_default=""),
    # The event types sent; an empty list: every type.
    Column("event_types", Json, nullable=False),
    # The signing secret (it must be kept readable: each delivery is signed with it).
    Column("secret", String(100), nullable=False),
    Column("previous_secret", String(100), nullable=True),
    Column("previous_secret_expires_at", UtcDateTime, nullable=True),
    Column("is_active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_webhook_endpoints_tenant_id", "tenant_id"),
    CheckConstraint(
        "(previous_secret IS NULL) = (previous_secret_expires_at IS NULL)",
        name="previous_secret",
    ),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("endpoint_id", Id, ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("event_id", Id, ForeignKey("events.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_attempt_at", UtcDateTime, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("endpoint_id", "event_id"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_tenant_id_id", "tenant_id", "id"),
    CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
    CheckConstraint("attempts >= 0", name="attempts"),
    # Delivered exactly when it has its moment; a pending one always has its next try.
    CheckConstraint("(status = 'delivered') = (delivered_at IS NOT NULL)", name="delivered_at"),
    CheckConstraint("status <> 'pending' OR next_attempt_at IS NOT NULL", name="next_attempt"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("delivery_id", Id, ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=False, server_default=""),
    Column("duration_ms", Integer, nullable=False),
    Column("response_excerpt", Text, nullable=False, server_default=""),
    Index("ix_webhook_attempts_delivery_id", "delivery_id"),
    CheckConstraint("duration_ms >= 0", name="duration"),
)
