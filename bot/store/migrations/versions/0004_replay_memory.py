"""replay memory shared by replicas

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_signatures",
        sa.Column("signature", sa.String(length=64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False)  # Unix seconds,
    )
    op.create_index("ix_seen_signatures_expires_at", "seen_signatures", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_signatures_expires_at", table_name="seen_signatures")
    op.drop_table("seen_signatures")
