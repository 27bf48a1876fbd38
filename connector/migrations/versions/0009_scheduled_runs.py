"""Scheduled runs: when shared scheduled work (the ICP rescore) last ran

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 14:10:00

Each worker process rescored every account on the segment schedule, counted from its own start: with N
workers, N times the work. The last run is now a row that the workers claim under its lock.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import connector.core.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduled_runs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ran_at", connector.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("scheduled_runs")
