"""news kept until Slack takes it: what each piece already posted, why it waits; Slack's pace shared by all processes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("slack_news", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_json", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.String(length=64), nullable=True))
    op.create_table(
        "slack_pace",
        sa.Column("key", sa.String(length=200), primary_key=True),
        sa.Column("next_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("slack_pace")
    with op.batch_alter_table("slack_news", schema=None) as batch_op:
        batch_op.drop_column("last_error")
        batch_op.drop_column("sent_json")
