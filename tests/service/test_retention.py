"""Data lifecycle: what the retention settings say has expired is deleted, a batch at a time, and nothing else."""

import asyncio
import contextlib
import functools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.cli import main
from connector.core.db import create_engine
from connector.core.environment import get_environment
from connector.core.models import ActivityEntry, DeadLetter, Event, JournalEntry, User
from connector.core.runtime import Runtime
from connector.core.settings import ConnectorSettings
from connector.core.spec import format_timestamp
from connector.service import worker
from connector.service.retention import purge
from tests.support.app import admin_auth, basic_auth, drain, make_env, wait_until

journal = JournalEntry.__table__
events = Event.__table__
users = User.__table__
activity_log = ActivityEntry.__table__
dead_letters = DeadLetter.__table__
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


async def add_journal(engine, status, received_at):
    """A journal row in `status`, as the inbound writes it and a worker leaves it (raw SQL for the outcome)."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                journal.insert()
                .values(message_id=str(uuid.uuid4()), type="track", payload={"type": "track"}, received_at=received_at)
                .returning(journal.c.id)
            )
        ).scalar_one()
        if status != "pending":
            await conn.execute(sa.text("DELETE FROM journal_queue WHERE id = :id"), {"id": row})
        if status == "failed":
            await conn.execute(
                sa.text("UPDATE inbound_journal SET error = 'RuntimeError: a bug' WHERE id = :id"), {"id": row}
            )
    return row


async def add_user(engine):
    async with engine.begin() as conn:
        return (
            await conn.execute(
                users.insert()
                .values(traits={}, trait_timestamps={}, created_at=NOW, updated_at=NOW)
                .returning(users.c.id)
            )
        ).scalar_one()


async def add_event(engine, user_id, received_at, timestamp=None):
    async with engine.begin() as conn:
        return (
            await conn.execute(
                events.insert()
                .values(
                    user_id=user_id,
                    message_id=str(uuid.uuid4()),
                    type="track",
                    event="Order Completed",
                    timestamp=timestamp or received_at,
                    received_at=received_at,
                    properties={},
                    context={},
                )
                .returning(events.c.id)
            )
        ).scalar_one()


async def add_activity(engine, created_at):
    async with engine.begin() as conn:
        return (
            await conn.execute(
                activity_log.insert()
                .values(
                    entity="user",
                    entity_id=1,
                    action="incoming.user.success",
                    details={},
                    created_at=created_at,
                )
                .returning(activity_log.c.id)
            )
        ).scalar_one()


async def add_dead_letter(engine, created_at, replayed_at=None):
    async with engine.begin() as conn:
        return (
            await conn.execute(
                dead_letters.insert()
                .values(
                    message={"type": "track"},
                    reason="too big",
                    created_at=created_at,
                    replayed_at=replayed_at,
                )
                .returning(dead_letters.c.id)
            )
        ).scalar_one()


async def ids_in(engine, table):
    async with engine.connect() as conn:
        return set((await conn.execute(sa.select(table.c.id))).scalars())


def purged_metric(table):
    return REGISTRY.get_sample_value("connector_retention_purged_total", {"table": table}) or 0.0


async def test_processed_journal_rows_go_seven_days_after_they_were_received_and_younger_ones_stay(runtime):
    engine = runtime.engine
    expired = await add_journal(engine, "processed", NOW - timedelta(days=7) - MINUTE)
    young = await add_journal(engine, "processed", NOW - timedelta(days=7) + MINUTE)
    before = purged_metric("inbound_journal")

    purged = await purge(engine, ConnectorSettings(), now=NOW)

    assert await ids_in(engine, journal) == {young}
    assert purged["inbound_journal"] == 1
    assert purged_metric("inbound_journal") - before == 1
    assert expired != young


async def test_failed_and_pending_journal_rows_are_never_removed_however_old(runtime):
    engine = runtime.engine
    ancient = NOW - timedelta(days=3650)
    kept = {
        await add_journal(engine, "failed", ancient),
        await add_journal(engine, "failed", NOW - timedelta(days=2)),
        await add_journal(engine, "pending", ancient),
        await add_journal(engine, "pending", NOW - timedelta(days=2)),
    }
    expired = await add_journal(engine, "processed", NOW - timedelta(days=2))

    purged = await purge(engine, ConnectorSettings(journal_retention_days=1), now=NOW)

    assert await ids_in(engine, journal) == kept
    assert purged["inbound_journal"] == 1 and expired not in kept


class QueuedAgainAfterTheSelect:
    """The engine as a pass uses it, but once the first batch has selected its ids, `queue_again` runs (in a
    transaction of its own, committed) before the batch deletes them."""

    def __init__(self, engine, queue_again):
        self.engine, self.queue_again, self.done = engine, queue_again, False

    @contextlib.asynccontextmanager
    async def begin(self):
        async with self.engine.begin() as conn:
            yield self._Connection(conn, self)

    class _Connection:
        def __init__(self, conn, outer):
            self.conn, self.outer = conn, outer

        async def execute(self, statement, *args, **kwargs):
            result = await self.conn.execute(statement, *args, **kwargs)
            if isinstance(statement, sa.Select) and not self.outer.done:
                self.outer.done = True
                await self.outer.queue_again()
            return result


async def test_a_journal_row_queued_again_between_the_select_and_the_delete_stays(runtime):
    engine = runtime.engine
    requeued = await add_journal(engine, "processed", NOW - timedelta(days=8))
    expired = await add_journal(engine, "processed", NOW - timedelta(days=8))

    async def queue_again():
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO journal_queue (id, partition) SELECT id, partition FROM inbound_journal WHERE id = :id"
                ),
                {"id": requeued},
            )

    purged = await purge(
        cast(AsyncEngine, QueuedAgainAfterTheSelect(engine, queue_again)), ConnectorSettings(), now=NOW
    )

    assert await ids_in(engine, journal) == {requeued}
    assert purged["inbound_journal"] == 1 and expired != requeued


async def test_each_table_keeps_a_row_exactly_its_retention_old_and_deletes_it_a_second_older(runtime):
    """The README: deleted N days "after they were received" (or written): at N days exactly a row is kept."""
    engine = runtime.engine
    now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    user = await add_user(engine)
    kept = {
        "inbound_journal": await add_journal(engine, "processed", datetime(2026, 6, 8, 12, 0, tzinfo=UTC)),
        "events": await add_event(engine, user, datetime(2026, 5, 16, 12, 0, tzinfo=UTC)),
        "activity_log": await add_activity(engine, datetime(2026, 5, 16, 12, 0, tzinfo=UTC)),
        "dead_letters": await add_dead_letter(engine, datetime(2026, 5, 16, 12, 0, tzinfo=UTC)),
    }
    await add_journal(engine, "processed", datetime(2026, 6, 8, 11, 59, 59, tzinfo=UTC))
    await add_event(engine, user, datetime(2026, 5, 16, 11, 59, 59, tzinfo=UTC))
    await add_activity(engine, datetime(2026, 5, 16, 11, 59, 59, tzinfo=UTC))
    await add_dead_letter(engine, datetime(2026, 5, 16, 11, 59, 59, tzinfo=UTC))
    settings = ConnectorSettings(
        journal_retention_days=7, event_retention_days=30, activity_retention_days=30, dead_letter_retention_days=30
    )

    purged = await purge(engine, settings, now=now)

    assert purged == {"inbound_journal": 1, "events": 1, "activity_log": 1, "dead_letters": 1}
    for table in (journal, events, activity_log, dead_letters):
        assert await ids_in(engine, table) == {kept[table.name]}, table.name


journal_rows = st.lists(
    st.tuples(
        st.sampled_from(["pending", "processed", "failed"]), st.integers(min_value=-3 * 24 * 60, max_value=3 * 24 * 60)
    ),
    max_size=12,
)


@given(days=st.integers(min_value=1, max_value=30), rows=journal_rows, batch_size=st.integers(min_value=1, max_value=5))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_exactly_the_processed_rows_older_than_the_limit_go(runtime, days, rows, batch_size):
    engine = runtime.engine
    async with engine.begin() as conn:
        await conn.execute(journal.delete())
        await conn.execute(sa.text("DELETE FROM journal_queue"))
    expected_kept = set()
    for status, minutes_past_limit in rows:
        age = timedelta(days=days, minutes=minutes_past_limit)
        row = await add_journal(engine, status, NOW - age)
        if status != "processed" or minutes_past_limit <= 0:
            expected_kept.add(row)

    await purge(engine, ConnectorSettings(journal_retention_days=days), now=NOW, batch_size=batch_size)

    assert await ids_in(engine, journal) == expected_kept


async def test_events_go_by_when_they_were_received_once_their_retention_is_set(runtime):
    engine = runtime.engine
    user = await add_user(engine)
    expired = await add_event(engine, user, NOW - timedelta(days=90) - MINUTE)
    young = await add_event(engine, user, NOW - timedelta(days=90) + MINUTE)
    # a backfill: happened five years ago, received today; it is kept for 90 days from today
    backfilled = await add_event(engine, user, NOW - timedelta(hours=1), timestamp=NOW - timedelta(days=5 * 365))

    purged = await purge(engine, ConnectorSettings(event_retention_days=90), now=NOW)

    assert await ids_in(engine, events) == {young, backfilled}
    assert purged["events"] == 1 and expired not in {young, backfilled}


async def test_event_retention_zero_keeps_events_forever(runtime):
    engine = runtime.engine
    user = await add_user(engine)
    old = {
        await add_event(engine, user, NOW - timedelta(days=20 * 365)),
        await add_event(engine, user, NOW - timedelta(days=8)),
    }

    purged = await purge(engine, ConnectorSettings(event_retention_days=0), now=NOW)

    assert await ids_in(engine, events) == old
    assert "events" not in purged


async def test_activity_and_dead_letters_go_thirty_days_after_they_were_written(runtime):
    engine = runtime.engine
    await add_activity(engine, NOW - timedelta(days=30) - MINUTE)
    young_activity = await add_activity(engine, NOW - timedelta(days=30) + MINUTE)
    await add_dead_letter(engine, NOW - timedelta(days=30) - MINUTE)
    await add_dead_letter(engine, NOW - timedelta(days=30) - MINUTE, replayed_at=NOW - timedelta(days=1))
    young_letter = await add_dead_letter(engine, NOW - timedelta(days=30) + MINUTE)

    purged = await purge(engine, ConnectorSettings(), now=NOW)

    assert await ids_in(engine, activity_log) == {young_activity}
    assert await ids_in(engine, dead_letters) == {young_letter}
    assert (purged["activity_log"], purged["dead_letters"]) == (1, 2)


async def test_settings_choose_each_tables_limit(runtime):
    engine = runtime.engine
    activity = await add_activity(engine, NOW - timedelta(days=3))
    await add_dead_letter(engine, NOW - timedelta(days=3))
    await add_journal(engine, "processed", NOW - timedelta(days=3))
    settings = ConnectorSettings(journal_retention_days=2, activity_retention_days=4, dead_letter_retention_days=2)

    await purge(engine, settings, now=NOW)

    assert await ids_in(engine, activity_log) == {activity}
    assert await ids_in(engine, dead_letters) == set()
    assert await ids_in(engine, journal) == set()


async def test_a_backlog_larger_than_a_batch_is_removed_over_several_batches(runtime):
    engine = runtime.engine
    expired = [await add_journal(engine, "processed", NOW - timedelta(days=8, minutes=i)) for i in range(25)]
    failed = {await add_journal(engine, "failed", NOW - timedelta(days=9, minutes=i)) for i in range(12)}
    young = await add_journal(engine, "processed", NOW - timedelta(days=1))
    batches: list[Any] = []

    purged = await purge(engine, ConnectorSettings(), now=NOW, batch_size=10, on_batch=batches.append)

    assert await ids_in(engine, journal) == failed | {young}
    assert purged["inbound_journal"] == 25 and len(expired) == 25
    assert batches[:3] == [10, 10, 5]


async def test_usage_figures_stay_after_their_events_are_purged(client, runtime):
    today = datetime.now(UTC)
    for flag in ("positive", "positive", "negative"):
        response = await client.post(
            "/v1/track",
            headers=basic_auth(),
            json={
                "userId": "ada",
                "messageId": str(uuid.uuid4()),
                "event": "Feature Used",
                "timestamp": format_timestamp(today),
                "properties": {"feature": "export", "eventFlag": flag},
            },
        )
        assert response.status_code == 200, response.text
    await drain(runtime)
    ada = (await client.get("/api/users", params={"user_id": "ada"}, headers=admin_auth())).json()["id"]
    before = (await client.get(f"/api/users/{ada}/usage", headers=admin_auth())).json()
    assert before["totals"] == {"count": 3, "score": 1, "features": 1}
    response = await client.put("/api/settings", headers=admin_auth(), json={"event_retention_days": 30})
    assert response.status_code == 200, response.text

    purged = await purge(runtime.engine, await runtime.settings.current(), now=today + timedelta(days=31))

    assert purged["events"] == 3 and await ids_in(runtime.engine, events) == set()
    after = (await client.get(f"/api/users/{ada}/usage", headers=admin_auth())).json()
    assert after["totals"] == {"count": 3, "score": 1, "features": 1}
    assert after["features"] == before["features"]


async def test_the_worker_purges_on_its_own_every_interval(database_url):
    runtime = await Runtime.start(make_env(database_url, retention_interval_seconds=0.2))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(runtime, stop))
    try:
        now = datetime.now(UTC)
        for _ in range(2):  # the second round is only removed by a later pass than the first
            # The kept row first: SQLite gives a new row the largest id + 1, so an expired row the pass deleted
            # before the next insert would hand its id on, and the test would wait for the wrong row.
            failed = await add_journal(runtime.engine, "failed", now - timedelta(days=8))
            expired = await add_journal(runtime.engine, "processed", now - timedelta(days=8))
            await wait_until(functools.partial(_gone, runtime.engine, expired), timeout=10)
            assert failed in await ids_in(runtime.engine, journal)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await runtime.stop()


async def _gone(engine, journal_id):
    return journal_id not in await ids_in(engine, journal)


def test_the_retention_command_deletes_what_has_expired_now(database_url, monkeypatch):
    async def prepare(engine):
        now = datetime.now(UTC)
        kept = {
            await add_journal(engine, "processed", now - timedelta(days=6)),
            await add_journal(engine, "failed", now - timedelta(days=60)),
        }
        for days in (8, 9, 10):
            await add_journal(engine, "processed", now - timedelta(days=days))
        await add_dead_letter(engine, now - timedelta(days=31))
        return kept

    kept = asyncio.run(_with_engine(database_url, prepare))
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_environment.cache_clear()
    try:
        result = CliRunner().invoke(main, ["retention", "run"])
    finally:
        get_environment.cache_clear()

    assert result.exit_code == 0, result.output
    assert "deleted: 3 inbound_journal, 0 activity_log, 1 dead_letters" in result.output
    assert asyncio.run(_with_engine(database_url, lambda engine: ids_in(engine, journal))) == kept


async def _with_engine(database_url, work):
    engine = create_engine(database_url)
    try:
        return await work(engine)
    finally:
        await engine.dispose()
