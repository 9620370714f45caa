"""reminders of a pending approval: when the next is due, how many went out, the requester warned of expiry

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remind_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reminders_sent", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("expiry_warned", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index("ix_requests_state_remind", ["state", "remind_at"])


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_state_remind")
        batch_op.drop_column("expiry_warned")
        batch_op.drop_column("reminders_sent")
        batch_op.drop_column("remind_at")
