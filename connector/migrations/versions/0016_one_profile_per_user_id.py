"""A userId names one profile, as its `user_id` or as the `previous_user_id` it was renamed from

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 15:45:00

Two batches of different journal partitions could claim one userId at the same moment, one as a user_id (the
person's first identify) and the other as a previous_user_id (an alias renaming the person): the (kind, value)
unique key did not see the two as one, and the person was left on two profiles. This index makes the second
claim a unique violation, and the batch that lost the race is retried (service/batch.py, contention).

A previous_user_id that another profile already holds as its user_id is deleted first: lookups prefer the
user_id (processing/identity.py, lookup), so no message resolved through such a row, and none will.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER_ID_KINDS = sa.text("kind IN ('user_id', 'previous_user_id')")


def upgrade() -> None:
    op.execute(
        "DELETE FROM user_identifiers WHERE kind = 'previous_user_id' AND EXISTS "
        "(SELECT 1 FROM user_identifiers AS held WHERE held.kind = 'user_id' AND held.value = user_identifiers.value)"
    )
    op.create_index(
        "uq_user_identifiers_user_id_value",
        "user_identifiers",
        ["value"],
        unique=True,
        sqlite_where=USER_ID_KINDS,
        postgresql_where=USER_ID_KINDS,
    )


def downgrade() -> None:
    op.drop_index("uq_user_identifiers_user_id_value", table_name="user_identifiers")
