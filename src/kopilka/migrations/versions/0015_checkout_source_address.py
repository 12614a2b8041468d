"""The address a membership checkout came from, so that one address begins only so many.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("membership_orders") as batch:
        batch.add_column(sa.Column("source_ip", sa.String(length=64), nullable=True))
        batch.create_index(
            "ix_membership_orders_source", ["tenant_id", "source_ip", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("membership_orders") as batch:
        batch.drop_index("ix_membership_orders_source")
        batch.drop_column("source_ip")
