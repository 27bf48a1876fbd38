"""Profile search: indexes on the email trait, its domain, and the domain of email identifiers

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 07:00:00

The dashboard finds users by the start of their email (a trait, or an identifier with identify_by_email) and
by the start of the part after its @ ("acme" finds bob@acme.com). Each search reads a range of one of these
expression indexes (core/models.py: EmailTrait, AfterAt), written here as each backend stores them. They are
built CONCURRENTLY on PostgreSQL, outside the migration's transaction, so a release does not hold the
inbound's writes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMAIL = {"postgresql": "lower(traits ->> 'email')", "sqlite": "lower(json_extract(traits, '$.email'))"}
POSITION = {"postgresql": "strpos", "sqlite": "instr"}


def _after_at(dialect: str, text: str) -> str:
    return f"substr({text}, {POSITION[dialect]}({text}, '@') + 1)"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    email_kind = sa.text("kind = 'email'")
    with op.get_context().autocommit_block():
        op.create_index("ix_users_email_trait", "users", [sa.text(EMAIL[dialect])], postgresql_concurrently=True)
        op.create_index(
            "ix_users_email_trait_domain",
            "users",
            [sa.text(_after_at(dialect, EMAIL[dialect]))],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_user_identifiers_email_domain",
            "user_identifiers",
            ["kind", sa.text(_after_at(dialect, "value"))],
            postgresql_concurrently=True,
            postgresql_where=email_kind,
            sqlite_where=email_kind,
        )


def downgrade() -> None:
    op.drop_index("ix_user_identifiers_email_domain", table_name="user_identifiers")
    op.drop_index("ix_users_email_trait_domain", table_name="users")
    op.drop_index("ix_users_email_trait", table_name="users")
