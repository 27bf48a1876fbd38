"""The journal writer on its own: concurrent appends share commits and each returns once its rows are
stored and queued; a messageId stored twice in one group is kept once; on PostgreSQL, a held connection
the server closed while it was idle is replaced without a failed request."""

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
import sqlalchemy as sa

from connector.core import spec
from connector.core.models import JournalEntry, JournalQueueEntry
from connector.inbound.writer import journal_row, open_journal
from tests.support.app import POSTGRES_URL

RECEIVED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def rows(*message_ids: str) -> list[dict[str, object]]:
    return [
        journal_row(
            spec.normalise_message({"type": "track", "userId": "u1", "event": "E", "messageId": mid}, RECEIVED),
            RECEIVED,
            "api",
        )
        for mid in message_ids
    ]


async def stored(engine) -> tuple[list[str], int]:
    async with engine.connect() as conn:
        ids = (await conn.execute(sa.select(JournalEntry.__table__.c.message_id).order_by("id"))).scalars().all()
        queued = (await conn.execute(sa.select(sa.func.count()).select_from(JournalQueueEntry.__table__))).scalar()
    return list(ids), int(queued or 0)


async def test_concurrent_appends_each_return_once_their_rows_are_stored_and_queued(runtime):
    journal = open_journal(runtime.engine, pooler=False)
    try:
        await asyncio.gather(*(journal.append(rows(f"m-{n}-a", f"m-{n}-b")) for n in range(20)))
        ids, queued = await stored(runtime.engine)
    finally:
        await journal.close()
    assert sorted(ids) == sorted(f"m-{n}-{part}" for n in range(20) for part in "ab")
    assert queued == 40  # the database queued every row with it


async def test_a_message_id_sent_twice_in_one_group_and_again_later_is_stored_once(runtime):
    journal = open_journal(runtime.engine, pooler=False)
    try:
        await asyncio.gather(journal.append(rows("dup", "other")), journal.append(rows("dup")))
        await journal.append(rows("dup"))
        ids, queued = await stored(runtime.engine)
    finally:
        await journal.close()
    assert sorted(ids) == ["dup", "other"]
    assert queued == 2


@pytest.mark.postgres_only
async def test_a_held_connection_the_server_closed_is_replaced_without_a_failed_append(runtime, database_url):
    journal = open_journal(runtime.engine, pooler=False)
    try:
        await journal.append(rows("before"))
        admin = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                database_url.rsplit("/", 1)[1],
            )
        finally:
            await admin.close()
        await journal.append(rows("after"))
        ids, _ = await stored(runtime.engine)
    finally:
        await journal.close()
    assert ids == ["before", "after"]
