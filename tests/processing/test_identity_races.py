"""Two batches of different journal partitions resolving one person at the same moment, on PostgreSQL.

A person's messages spread over several partitions (one per anonymousId, and the userId's own), and two
batches apply different partitions at once, each in its own transaction, neither seeing what the other has
not committed. Whatever they race to claim, the person ends on one profile: a claim the other batch made
first is a unique violation, and the batch that lost is retried (`db.is_contention`) and then sees it.
"""

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from connector.core import spec
from connector.core.db import is_contention
from connector.core.models import UserIdentifier
from connector.flow import journal
from connector.inbound.writer import journal_row
from connector.processing.processor import apply_journal
from tests.support.app import drain, wait_until
from tests.support.database import append_to_journal

pytestmark = pytest.mark.postgres_only

identifiers = UserIdentifier.__table__
RECEIVED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def journal_ids(runtime, *messages):
    rows = [journal_row(spec.normalise_message(message, RECEIVED), RECEIVED, "segment") for message in messages]
    await append_to_journal(runtime.engine, rows)
    async with runtime.engine.connect() as conn:
        wanted = [row["message_id"] for row in rows]
        found = dict((await conn.execute(sa.select(journal.journal.c.message_id, journal.journal.c.id))).all())
    return [found[message_id] for message_id in wanted]


async def apply_leased(conn, runtime, ids):
    rows = [row for journal_id in ids for row in await journal.lease_row(conn, journal_id)]
    await apply_journal(conn, rows, await runtime.settings.current())
    await journal.settle(conn, ids)


async def waiting_on_a_lock(runtime, pid: int) -> bool:
    """Whether that connection's statement waits on a lock (the other batch's uncommitted row)."""
    async with runtime.engine.connect() as conn:
        query = sa.text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid")
        return bool(await conn.scalar(query, {"pid": pid}))


async def profiles_by_identifier(runtime):
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(identifiers.c.user_id, identifiers.c.kind, identifiers.c.value))).all()
    profiles: dict[int, set[tuple[str, str]]] = {}
    for row in rows:
        profiles.setdefault(row.user_id, set()).add((row.kind, row.value))
    return list(profiles.values())


async def test_a_rename_racing_the_old_user_id_s_first_identify_ends_on_one_profile(runtime):
    identify = {"type": "identify", "anonymousId": "visit-7", "userId": "old-7", "messageId": "m-identify"}
    rename = {"type": "alias", "previousId": "old-7", "userId": "new-7", "messageId": "m-rename"}
    assert journal.partition_of(identify) != journal.partition_of(rename)  # two batches may hold them at once
    identify_id, rename_id = await journal_ids(runtime, identify, rename)

    async with runtime.engine.connect() as first, runtime.engine.connect() as second:
        await first.begin()
        await apply_leased(first, runtime, [identify_id])  # claims user_id old-7, not committed yet
        await second.begin()
        second_pid = await second.scalar(sa.text("SELECT pg_backend_pid()"))
        renaming = asyncio.create_task(apply_leased(second, runtime, [rename_id]))  # sees no old-7 yet
        await wait_until(lambda: renaming.done() or waiting_on_a_lock(runtime, second_pid), interval=0.01)
        await first.commit()
        try:
            await renaming
            await second.commit()
        except Exception as error:  # the batch that lost the race: its worker retries it
            assert is_contention(error), error
            await second.rollback()

    await drain(runtime)
    # As one after the other: the alias renames the profile, and old-7 still names it (both ways an alias's
    # previousId may come back: as a userId and as an anonymousId).
    assert await profiles_by_identifier(runtime) == [
        {("anonymous_id", "visit-7"), ("user_id", "new-7"), ("previous_user_id", "old-7"), ("anonymous_id", "old-7")}
    ]
