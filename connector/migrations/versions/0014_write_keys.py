"""Browser write keys: `write_keys` (public keys good on /v1 only, kept as their SHA-256) and
`inbound_journal.write_key_id` (which key sent each message)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 12:30:00

A website sends analytics.js calls straight to /v1 with a write key that is not the API key; the overview
counts each key's messages by the journal's new column. The column is nullable and has no default, so adding
it rewrites nothing on either backend.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import connector.core.models

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "write_keys",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_hint", sa.String(16), nullable=False),
        sa.Column("allowed_origins", JSON, nullable=False),
        sa.Column("created_at", connector.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", connector.core.models.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column("inbound_journal", sa.Column("write_key_id", BIG_ID, nullable=True))


def downgrade() -> None:
    # Not batch_alter_table: on SQLite it would copy the journal and lose its queueing trigger (0008).
    op.drop_column("inbound_journal", "write_key_id")
    op.drop_table("write_keys")
