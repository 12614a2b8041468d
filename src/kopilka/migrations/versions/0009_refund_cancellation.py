"""A POS refund can be taken back (a return rolled back at the terminal, FarCards chmode 4).

``pos_refunds.cancelled_at`` marks a refund taken back and ``cancel_transfer_ids`` lists
the transfers that undid it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pos_refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cancel_transfer_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pos_refunds", schema=None) as batch_op:
        batch_op.drop_column("cancel_transfer_ids")
        batch_op.drop_column("cancelled_at")
