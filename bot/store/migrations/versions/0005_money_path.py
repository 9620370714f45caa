"""the money path: the price quoted before approval, and the cloud's candidates after an unknown create

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("price_json", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("candidates_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("candidates_json")
        batch_op.drop_column("price_json")
