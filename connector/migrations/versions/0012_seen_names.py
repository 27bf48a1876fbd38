"""Seen names: every trait key of users and accounts and every event name the connector has seen

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 10:30:00

Processing adds the names of each batch (profile/names.py); the dashboard's pickers, the segment editor's
"never seen" marks and the settings' warnings read them, where they read the keys of the 2,000 most recent
profiles before. The upgrade fills the table from the data already stored (one pass over users, accounts and
the events' name index).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The top-level keys of every profile's traits, and the distinct event names: the table's first contents.
_POSTGRESQL = """
INSERT INTO seen_names (entity, kind, name)
SELECT DISTINCT 'user', 'trait', key FROM users, jsonb_object_keys(traits) AS key WHERE length(key) <= 255
UNION SELECT DISTINCT 'account', 'trait', key FROM accounts, jsonb_object_keys(traits) AS key WHERE length(key) <= 255
UNION SELECT DISTINCT 'user', 'event', event FROM events
ON CONFLICT DO NOTHING
"""
_SQLITE = """
INSERT OR IGNORE INTO seen_names (entity, kind, name)
SELECT DISTINCT 'user', 'trait', key FROM users, json_each(users.traits) WHERE length(key) <= 255
UNION SELECT DISTINCT 'account', 'trait', key FROM accounts, json_each(accounts.traits) WHERE length(key) <= 255
UNION SELECT DISTINCT 'user', 'event', event FROM events
"""


def upgrade() -> None:
    op.create_table(
        "seen_names",
        sa.Column("entity", sa.String(16), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
    )
    op.execute(_POSTGRESQL if op.get_bind().dialect.name == "postgresql" else _SQLITE)


def downgrade() -> None:
    op.drop_table("seen_names")
