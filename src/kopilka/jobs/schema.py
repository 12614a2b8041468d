"""The jobs table: one row per piece of long work, with how far it has got."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Integer, String, Table, Text

from kopilka.core.db import Id, Json, UtcDateTime, metadata

JOB_STATUSES = ("queued", "running", "done", "failed")

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("done", Integer, nullable=False, server_default="0"),
    Column("total", Integer, nullable=True),
    Column("message", Text, nullable=False, server_default=""),
    Column("params", Json, nullable=True),
    Column("result", Json, nullable=True),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
    Index("ix_jobs_tenant_id_created_at", "tenant_id", "created_at"),
)
