"""What Segment was last told, transitions that outlive their segment, account link times, event sources

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 02:03:28.184730
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy import Text
import sqlmodel.sql.sqltypes  # the AutoString columns autogenerate writes
import connector.core.models
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# SQLite's foreign keys are unnamed: batch mode names them by this convention so one can be dropped.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _transition_fk() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "segment_transitions_segment_id_fkey"
    return "fk_segment_transitions_segment_id_segments"


def upgrade() -> None:
    with op.batch_alter_table('delivery_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('segments', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), server_default=sa.text("'[]'"), nullable=False))
        batch_op.add_column(sa.Column('in_filter', sa.Boolean(), server_default=sa.true(), nullable=False))

    with op.batch_alter_table('inbound_journal', schema=None) as batch_op:
        # Rows journaled before sources were recorded count as Segment's: forward_events keeps holding them.
        batch_op.add_column(sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), server_default='segment', nullable=False))

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failing_since', connector.core.models.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('segment_transitions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('segment_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('entity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    op.execute("UPDATE segment_transitions SET "
               "segment_name = (SELECT name FROM segments WHERE segments.id = segment_transitions.segment_id), "
               "entity = (SELECT entity FROM segments WHERE segments.id = segment_transitions.segment_id)")
    with op.batch_alter_table('segment_transitions', schema=None, naming_convention=NAMING) as batch_op:
        batch_op.alter_column('segment_name', existing_type=sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False)
        batch_op.alter_column('entity', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False)
        batch_op.alter_column('segment_id', existing_type=BIG_ID, nullable=True)
        batch_op.drop_constraint(_transition_fk(), type_='foreignkey')
        batch_op.create_foreign_key(_transition_fk(), 'segments', ['segment_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_linked_at', connector.core.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('account_linked_at')

    op.execute("DELETE FROM segment_transitions WHERE segment_id IS NULL")
    with op.batch_alter_table('segment_transitions', schema=None, naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint(_transition_fk(), type_='foreignkey')
        batch_op.create_foreign_key(_transition_fk(), 'segments', ['segment_id'], ['id'], ondelete='CASCADE')
        batch_op.alter_column('segment_id', existing_type=BIG_ID, nullable=False)
        batch_op.drop_column('entity')
        batch_op.drop_column('segment_name')

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('failing_since')

    with op.batch_alter_table('inbound_journal', schema=None) as batch_op:
        batch_op.drop_column('source')

    with op.batch_alter_table('delivery_state', schema=None) as batch_op:
        batch_op.drop_column('in_filter')
        batch_op.drop_column('segments')
