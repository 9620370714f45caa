"""an order or a job is linked to one request at most; where the expiry warning was posted

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _refuse_duplicates(column: str) -> None:
    """A unique index cannot be made over rows that share an id: say which, rather than fail in SQL."""
    requests = sa.table("requests", sa.column(column))
    linked = requests.c[column]
    shared = op.get_bind().execute(
        sa.select(linked).where(linked.is_not(None)).group_by(linked).having(sa.func.count() > 1)).fetchall()
    if shared:
        ids = ", ".join(str(row[0]) for row in shared[:10])
        raise RuntimeError(f"Requests share a {column} ({ids}): settle which request each belongs to in the "
                           "audit log, clear the other link, then migrate again.")


def upgrade() -> None:
    _refuse_duplicates("job_id")
    _refuse_duplicates("order_id")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expiry_warning_channel", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("expiry_warning_ts", sa.String(length=32), nullable=True))
        batch_op.create_index("uq_requests_job_id", ["job_id"], unique=True)
        batch_op.create_index("uq_requests_order_id", ["order_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("uq_requests_order_id")
        batch_op.drop_index("uq_requests_job_id")
        batch_op.drop_column("expiry_warning_ts")
        batch_op.drop_column("expiry_warning_channel")
