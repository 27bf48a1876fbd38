"""Journal partitions: each row's partition, an index of pending rows by partition; no index on status alone

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 03:10:00

Rows journaled before this revision get partition 0: they are applied in journal order as
before, by whichever worker leases partition 0. The column has a constant default, so adding it
does not rewrite the table on PostgreSQL; the index is built CONCURRENTLY, outside the
migration's transaction, so a release does not hold the inbound's writes. The index on status alone
goes: (status, processed_at) serves what it served, and each processed row updates one index fewer.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_inbound_journal_status", table_name="inbound_journal")
    op.add_column("inbound_journal", sa.Column("partition", sa.SmallInteger(), server_default="0", nullable=False))
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_inbound_journal_pending_partition",
            "inbound_journal",
            ["partition", "id"],
            unique=False,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.create_index("ix_inbound_journal_status", "inbound_journal", ["status"], unique=False)
    op.drop_index("ix_inbound_journal_pending_partition", table_name="inbound_journal")
    with op.batch_alter_table("inbound_journal") as batch:
        batch.drop_column("partition")
