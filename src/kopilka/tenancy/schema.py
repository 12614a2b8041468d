"""Tables of tenancy. Every row of every table in Kopilka carries its ``tenant_id``."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kopilka.core.db import Id, Json, UtcDateTime, metadata

ROLES = ("owner", "administrator", "cashier", "front_desk")

tenants = Table(
    "tenants",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("slug", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("locale", String(16), nullable=False, server_default="ru"),
    Column("timezone", String(64), nullable=False, server_default="Europe/Moscow"),
    Column("currency", String(3), nullable=False, server_default="RUB"),
    Column("created_at", UtcDateTime, nullable=False),
    # The loyalty module (SPEC P-9): off, the POS gateway refuses every card request.
    Column("loyalty_enabled", Boolean, nullable=False, server_default="1"),
)

branches = Table(
    "branches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("login", String(100), nullable=False),
    Column("full_name", String(200), nullable=False, server_default=""),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("locale", String(16), nullable=True),
    Column("is_active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "login"),
    CheckConstraint("role IN ('owner', 'administrator', 'cashier', 'front_desk')", name="role"),
)

staff_tokens = Table(
    "staff_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    # SHA-256 of a 256-bit random secret: a slow hash adds nothing for such a secret.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

terminals = Table(
    "terminals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("branch_id", Id, ForeignKey("branches.id"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("key_prefix", String(32), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    UniqueConstraint("tenant_id", "name"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("actor_label", String(200), nullable=False, server_default=""),
    Column("source_ip", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(64), nullable=True),
    Column("details", Json, nullable=True),
    Column("note", Text, nullable=True),
    Index(None, "tenant_id", "at"),
)

# Sign-in sessions of the web UI. The cookie holds a 256-bit secret; only its SHA-256 is
# kept. The CSRF token is per session (synchronizer token), sent back in every form.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("csrf_token", String(64), nullable=False),
    Column("branch_id", Id, ForeignKey("branches.id"), nullable=True),
    Column("flash", Json, nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("user_agent", String(300), nullable=False, server_default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_web_sessions_user_id", "user_id"),
)

# Failed sign-ins, for throttling (web and API). The tenant may be unknown, so it is kept
# by the slug that was typed.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_slug", String(64), nullable=False),
    Column("login", String(100), nullable=False),
    Column("source_ip", String(64), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_login_failures_account", "tenant_slug", "login", "at"),
    Index("ix_login_failures_source_ip", "source_ip", "at"),
)

# Purging a tenant's data (SPEC C-7) is the one way rows leave the append-only tables.
# PostgreSQL's trigger reads the transaction's ``kopilka.purge_tenant`` setting; SQLite's
# triggers cannot see settings or temporary tables, so the purge writes a permit here at
# the start of its transaction and deletes it before the commit: no other connection
# ever sees one.
purge_permits = Table(
    "purge_permits",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# The first step of a two-step purge: a short-lived secret (only its SHA-256 is kept),
# good once, which the second step must bring back with the tenant's short name typed.
purge_requests = Table(
    "purge_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    CheckConstraint("scope IN ('loyalty')", name="scope"),
)
