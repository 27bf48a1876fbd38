"""Indexes for retention: journal rows by status and processed_at, events by received_at

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 21:08:34.275611

On PostgreSQL both are built CONCURRENTLY, outside the migration's transaction: a release on a
large events table must not hold the processor's writes for the length of the build.
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index('ix_events_received_at', 'events', ['received_at'], unique=False,
                        postgresql_concurrently=True)
        op.create_index('ix_inbound_journal_status_processed_at', 'inbound_journal', ['status', 'processed_at'],
                        unique=False, postgresql_concurrently=True)


def downgrade() -> None:
    op.drop_index('ix_inbound_journal_status_processed_at', table_name='inbound_journal')
    op.drop_index('ix_events_received_at', table_name='events')
