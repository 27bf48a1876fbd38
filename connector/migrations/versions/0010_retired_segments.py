"""Retired segments, followed accounts, forwarded routing: what a deleted segment's transitions are sent with,
which account a group call (or an account segment's events) was about, and each event's `integrations`

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 07:00:00

Deleting a segment now takes its name out of the settings that named it; its members' exits are still sent as
those settings said, from `segment_transitions.retired`. `delivery_state.account_id` lets a user who moved to
an account outside the filter get no group call naming that account, and follows account segment members
through their account. `events.integrations` keeps the sender's routing, which a forwarded event carries out
again. The columns are nullable and added without a rewrite of the tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("segment_transitions", sa.Column("retired", JSON, nullable=True))
    op.add_column("delivery_state", sa.Column("account_id", BIG_ID, nullable=True))
    op.add_column("events", sa.Column("integrations", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("integrations")
    with op.batch_alter_table("delivery_state") as batch:
        batch.drop_column("account_id")
    with op.batch_alter_table("segment_transitions") as batch:
        batch.drop_column("retired")
