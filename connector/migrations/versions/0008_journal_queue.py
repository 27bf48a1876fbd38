"""Journal queue: pending rows listed in a narrow table of their own; the journal's status columns go

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:30:00

A batch used to mark each message it applied by updating its journal row's status, which rewrote
the whole message (~1 KB) and added an entry to each of the journal's indexes: ~13 µs a message of
PostgreSQL, a tenth of processing. Now a row is pending while a `journal_queue` row (id, partition)
exists, and applying it deletes that row (~1 µs). A failed row keeps its `error`; a processed one is
neither queued nor failed. The database queues every journal row inserted (a trigger: the inbound,
`COPY`, anything), so no writer can forget it.

Everything but the index of failed rows runs in one transaction: on PostgreSQL CREATE TRIGGER locks
the journal against inserts until the commit, so no row arrives between filling the queue and the
trigger taking over; the statements in it read the pending and failed rows by their indexes, not the
whole journal (0.57 s for a journal of 1,000,000 rows). The index of failed rows is then built
CONCURRENTLY. Web dynos of the previous release still name `status` when they insert: from the commit
until they are replaced, their inbound writes fail and are answered 503, which Segment and its
libraries retry. SQLite recreates the table to drop the columns (batch mode), which drops its
triggers: the trigger is created after.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import connector.core.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRESQL_TRIGGER = (
    """
    CREATE FUNCTION queue_journal_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO journal_queue (id, partition) SELECT id, partition FROM added;
        RETURN NULL;
    END
    $$
    """,
    # One INSERT per statement (a transition table), not one per row: the inbound writes thousands at once.
    """
    CREATE TRIGGER queue_journal_rows AFTER INSERT ON inbound_journal
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION queue_journal_rows()
    """,
)
SQLITE_TRIGGER = """
    CREATE TRIGGER queue_journal_rows AFTER INSERT ON inbound_journal
    BEGIN INSERT INTO journal_queue (id, partition) VALUES (NEW.id, NEW.partition); END
"""
PENDING_INDEXES = ("ix_inbound_journal_pending", "ix_inbound_journal_pending_partition")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "journal_queue",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("partition", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_journal_queue_partition_id", "journal_queue", ["partition", "id"], unique=False)
    if postgres:
        for statement in POSTGRESQL_TRIGGER:
            op.execute(statement)
    op.execute(
        "INSERT INTO journal_queue (id, partition) SELECT id, partition FROM inbound_journal WHERE status = 'pending'"
    )
    # A failed row is told by its error from now on (the previous code always gave one, and cleared it otherwise).
    op.execute("UPDATE inbound_journal SET error = 'failed' WHERE status = 'failed' AND error IS NULL")
    for name in (*PENDING_INDEXES, "ix_inbound_journal_status_processed_at"):
        op.drop_index(name, table_name="inbound_journal")
    with op.batch_alter_table("inbound_journal") as batch:
        batch.drop_column("status")
        batch.drop_column("processed_at")
    if not postgres:
        op.execute(SQLITE_TRIGGER)
    failed = sa.text("error IS NOT NULL")
    with op.get_context().autocommit_block():  # after the commit: the build does not hold the inbound's writes
        op.create_index(
            "ix_inbound_journal_failed",
            "inbound_journal",
            ["id"],
            sqlite_where=failed,
            postgresql_where=failed,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute("DROP TRIGGER queue_journal_rows" + (" ON inbound_journal" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION queue_journal_rows()")
    op.drop_index("ix_inbound_journal_failed", table_name="inbound_journal")
    with op.batch_alter_table("inbound_journal") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="processed"))
        batch.add_column(sa.Column("processed_at", connector.core.models.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE inbound_journal SET status = 'failed' WHERE error IS NOT NULL")
    op.execute("UPDATE inbound_journal SET status = 'pending' WHERE id IN (SELECT id FROM journal_queue)")
    op.execute("UPDATE inbound_journal SET processed_at = received_at WHERE status = 'processed'")
    with op.batch_alter_table("inbound_journal") as batch:
        batch.alter_column("status", server_default=None)
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_inbound_journal_pending", "inbound_journal", ["id"], sqlite_where=pending, postgresql_where=pending
    )
    op.create_index(
        "ix_inbound_journal_pending_partition",
        "inbound_journal",
        ["partition", "id"],
        sqlite_where=pending,
        postgresql_where=pending,
    )
    op.create_index("ix_inbound_journal_status_processed_at", "inbound_journal", ["status", "processed_at"])
    op.drop_index("ix_journal_queue_partition_id", table_name="journal_queue")
    op.drop_table("journal_queue")
