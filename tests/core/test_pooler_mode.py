"""Pooler mode (core/db.py: create_engine(pooler=True)) leaves no named prepared statement on the server connection
once a transaction ends, whatever the statement: a query, a multi-row insert, asyncpg's COPY; so a transaction-mode
pooler may hand the connection to anyone next. Without it the statements stay, named, for the next execution.
"""

import pytest
import sqlalchemy as sa

from connector.core.db import any_of, copy_rows, create_engine, insert_rows
from connector.core.models import ActivityEntry, Credential, utcnow

pytestmark = pytest.mark.postgres_only

credentials = Credential.__table__
activity_log = ActivityEntry.__table__
NAMED_STATEMENTS = sa.text("SELECT count(*) FROM pg_prepared_statements")


async def named_statements_after_a_transaction(database_url: str, pooler: bool) -> int:
    engine = create_engine(database_url, pooler=pooler)
    try:
        async with engine.connect() as conn:
            for round_ in range(2):  # the second round is where a cache would reuse its statements
                await insert_rows(
                    conn,
                    credentials,
                    [{"name": f"pooler-{round_}-{n}", "value": "v", "created_at": utcnow()} for n in range(3)],
                )
                await conn.execute(
                    sa.select(credentials.c.name).where(any_of(conn, credentials.c.name, ["pooler-0-1"]))
                )
                entry = {"entity": "user", "entity_id": round_, "action": "a", "details": {}, "created_at": utcnow()}
                await copy_rows(conn, activity_log, [entry])  # asyncpg's COPY prepares its own introspection query
                await conn.commit()
            count: int = await conn.scalar(NAMED_STATEMENTS)  # the next transaction, on the same server connection
            await conn.rollback()
            return count
    finally:
        await engine.dispose()


async def test_in_pooler_mode_no_named_prepared_statement_outlives_its_transaction(database_url):
    assert await named_statements_after_a_transaction(database_url, pooler=True) == 0


async def test_on_a_direct_connection_statements_stay_prepared_for_the_next_execution(database_url):
    assert await named_statements_after_a_transaction(database_url, pooler=False) >= 2
