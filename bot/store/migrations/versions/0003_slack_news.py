"""slack news outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("news_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("news_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "slack_news",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(length=16), sa.ForeignKey("requests.id"), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )
    op.create_index("ix_slack_news_request_id", "slack_news", ["request_id"])
    op.create_index("ix_slack_news_due", "slack_news", ["available_at", "request_id"])


def downgrade() -> None:
    op.drop_index("ix_slack_news_due", table_name="slack_news")
    op.drop_index("ix_slack_news_request_id", table_name="slack_news")
    op.drop_table("slack_news")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("news_until")
        batch_op.drop_column("news_owner")
