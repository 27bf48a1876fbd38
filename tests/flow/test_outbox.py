"""A claim leases at most its limit of outbox rows, however the database plans it."""

import sqlalchemy as sa

from connector.core.kinds import OutboxKind
from connector.core.models import OutboxItem
from connector.flow import outbox as outbox_module

outbox = OutboxItem.__table__


async def test_a_claim_takes_at_most_its_limit_oldest_first_from_an_outbox_analyzed_empty(runtime):
    async with runtime.engine.connect() as conn:  # the statistics of an empty outbox, as after a quiet period
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("ANALYZE outbox"))
    async with runtime.engine.begin() as conn:
        await outbox_module.enqueue(conn, OutboxKind.USER, range(1, 5001))

    async with runtime.engine.connect() as conn:
        rows = await outbox_module.claim(conn, 100)

    async with runtime.engine.connect() as conn:
        leased = await conn.scalar(sa.select(sa.func.count()).where(outbox.c.claimed_until.is_not(None)))
    assert (len(rows), leased) == (100, 100)
    assert [row.key for row in rows] == [f"user:{n}" for n in range(1, 101)]  # the oldest first
