"""How a POS check's money part was paid, when the terminal says (SPEC P-8).

``pos_checks.payments``: the payment lines, each a terminal payment code with the
payment type it meant and the amount.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 16:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pos_checks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payments", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pos_checks", schema=None) as batch_op:
        batch_op.drop_column("payments")
