"""Dashboard: indexes on the journal's received_at and the segment transitions' time

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 07:30:00

The overview counts the last 24 hours of journal messages by received_at, and the segment list the
last 24 hours of transitions by their time: each reads a range of one index instead of the whole
table. Both are built CONCURRENTLY on PostgreSQL, outside the migration's transaction, so a release
does not hold the inbound's writes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_inbound_journal_received_at", "inbound_journal", "received_at"),
    ("ix_segment_transitions_at", "segment_transitions", "at"),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, column in INDEXES:
            op.create_index(name, table, [column], unique=False, postgresql_concurrently=True)


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
