"""First sync and skipped calls: `sync_runs` (what a settings save or a resync queued, and when) and
`inbound_journal.skipped` (why a processed message was not applied: a kind of call the settings turn off)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 10:30:00

Saving settings that add segments to the outbound filter queues their members at once and records a sync run;
the dashboard shows its progress. A group call received while "Handle group calls" is off is marked skipped with
that reason, so the overview and the status count it as ignored rather than processed. The column is nullable
(added without a rewrite); its partial index holds the skipped rows only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import connector.core.models

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inbound_journal", sa.Column("skipped", sa.Text(), nullable=True))
    op.create_index(
        "ix_inbound_journal_skipped",
        "inbound_journal",
        ["type"],
        sqlite_where=sa.text("skipped IS NOT NULL"),
        postgresql_where=sa.text("skipped IS NOT NULL"),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("segments", JSON, nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("started_at", connector.core.models.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sync_runs_started_at", "sync_runs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_runs_started_at", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_index("ix_inbound_journal_skipped", table_name="inbound_journal")
    # Not batch_alter_table: on SQLite it would copy the journal and lose its queueing trigger (0008).
    op.drop_column("inbound_journal", "skipped")
