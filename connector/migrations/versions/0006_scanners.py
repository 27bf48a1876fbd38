"""Scanners: a user's persona (seniority, department) and an account's ideal-customer-profile score and fit

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 07:00:00

Nullable columns without a default: adding them rewrites no table on PostgreSQL. Existing users get
their persona from `connector persona rebuild`; accounts get their score when the `icp` setting is
saved.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("persona_seniority", sa.String(length=16), nullable=True))
    op.add_column("users", sa.Column("persona_department", sa.String(length=32), nullable=True))
    op.add_column("accounts", sa.Column("icp_score", sa.BigInteger(), nullable=True))
    op.add_column("accounts", sa.Column("icp_fit", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("icp_fit")
        batch.drop_column("icp_score")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("persona_department")
        batch.drop_column("persona_seniority")
