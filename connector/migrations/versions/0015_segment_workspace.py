"""Segment workspace setup: `segment_workspace` (the workspace connected through Segment's Public API, the
destinations the connector manages there, the source it sends back through) and `round_trips` (round-trip
tests: sent, refused, arrived)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 12:30:00

The Public API token is a credential (`credentials`, name `segment_public_api_token`), not a column here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import connector.core.models

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = connector.core.models.UTCDateTime(timezone=True)

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_workspace",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace", JSON, nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("source_ids", JSON, nullable=False),
        sa.Column("destinations", JSON, nullable=False),
        sa.Column("back_source", JSON, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_table(
        "round_trips",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("nonce", sa.String(64), nullable=False, unique=True),
        sa.Column("sent_at", TIME, nullable=False),
        sa.Column("refused", sa.Text(), nullable=True),
        sa.Column("arrived_at", TIME, nullable=True),
    )
    op.create_index("ix_round_trips_sent_at", "round_trips", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_round_trips_sent_at", table_name="round_trips")
    op.drop_table("round_trips")
    op.drop_table("segment_workspace")
