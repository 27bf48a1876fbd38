"""The SQLite journal writer (the web process's, on its own connection to the file): a 200 only once the
row is committed, a messageId stored once, another writer holding the file waited for, a database that
stays locked past the busy timeout answered 503 and used again once free, and what is in flight at
shutdown committed before the thread ends.
"""

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from connector.core import spec
from connector.core.models import JournalEntry
from connector.core.runtime import Runtime
from connector.inbound.sqlite_writer import SqliteJournalWriter
from connector.inbound.writer import journal_row
from tests.support.app import basic_auth, drain
from tests.support.database import journal_statuses, stored_counts

journal = JournalEntry.__table__


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only (this writer's backend): overrides the conftest fixture that runs every backend."""
    path = tmp_path / "connector.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def database_file(database_url: str) -> str:
    return database_url.removeprefix("sqlite+aiosqlite:///")


def message(message_id: str, user: str = "u1") -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "Order Completed", "messageId": message_id}


def rows(*message_ids: str) -> list[dict[str, Any]]:
    received = datetime(2026, 12, 6, 12, 30, 15, 123456, tzinfo=UTC)
    return [journal_row(spec.normalise_message(message(id_), received), received, "api") for id_ in message_ids]


class LockHolder:
    """Another connection to the file holding its write lock (as the worker does while it commits a batch)."""

    def __init__(self, path: str):
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("BEGIN IMMEDIATE")
        self.held = True

    def release(self) -> None:
        self.connection.execute("COMMIT")
        self.connection.close()
        self.held = False


@pytest.fixture
def lock_holder(database_file: str) -> Iterator[Any]:
    holders: list[LockHolder] = []

    def hold() -> LockHolder:
        holders.append(LockHolder(database_file))
        return holders[-1]

    yield hold
    for holder in holders:
        if holder.held:  # the test failed before releasing it
            holder.release()


async def test_app_on_sqlite_appends_through_the_sqlite_writer(app):
    assert isinstance(app.state.journal, SqliteJournalWriter)


async def test_a_message_id_is_stored_once_whether_repeated_in_one_commit_or_across_commits(runtime: Runtime):
    writer = SqliteJournalWriter(runtime.engine)
    try:
        await writer.append(rows("m-1", "m-2", "m-1"))
        await writer.append(rows("m-2", "m-3"))
        await asyncio.gather(*(writer.append(rows("m-3", "m-4")) for _ in range(5)))
    finally:
        await writer.close()
    statuses = await journal_statuses(runtime.engine)
    assert [(row.message_id, row.status) for row in statuses] == [
        ("m-1", "pending"),
        ("m-2", "pending"),
        ("m-3", "pending"),
        ("m-4", "pending"),
    ]
    async with runtime.engine.connect() as conn:
        stored = (await conn.execute(sa.select(journal).where(journal.c.message_id == "m-1"))).one()
    assert stored.received_at == datetime(2026, 12, 6, 12, 30, 15, 123456, tzinfo=UTC)
    assert stored.payload["messageId"] == "m-1" and stored.payload["event"] == "Order Completed"
    assert stored.source == "api"
    await drain(runtime)
    assert (await stored_counts(runtime))["events"] == 4


async def test_appends_whose_rows_name_different_columns_are_all_stored_in_their_order(
    runtime: Runtime, lock_holder: Any
):
    writer = SqliteJournalWriter(runtime.engine)
    holder = lock_holder()  # the three appends queue up behind it (one commit, or the first alone and two)
    try:
        keyed = [{**row, "write_key_id": 7} for row in rows("k-1", "k-2")]
        appends = [writer.append(rows("a-1", "a-2")), writer.append(keyed), writer.append(rows("a-3"))]
        pending = asyncio.gather(*appends)
        await asyncio.sleep(0.1)
        holder.release()
        await pending
    finally:
        await writer.close()
    async with runtime.engine.connect() as conn:
        stored = (
            await conn.execute(sa.select(journal.c.message_id, journal.c.write_key_id).order_by(journal.c.id))
        ).all()
    assert [tuple(row) for row in stored] == [("a-1", None), ("a-2", None), ("k-1", 7), ("k-2", 7), ("a-3", None)]


async def test_a_request_waits_for_another_writer_holding_the_file_and_gets_its_200_after(
    client: httpx.AsyncClient, runtime: Runtime, lock_holder: Any
):
    holder = lock_holder()
    request = asyncio.create_task(client.post("/segment", headers=basic_auth(), json=message("held-1")))
    await asyncio.sleep(0.5)
    assert not request.done()  # no 200 while the row cannot be committed
    holder.release()
    response = await request
    assert response.status_code == 200, response.text
    assert [row.message_id for row in await journal_statuses(runtime.engine)] == ["held-1"]


async def test_a_lock_held_past_the_busy_timeout_is_a_503_and_the_writer_recovers_once_it_is_free(
    app: Any, client: httpx.AsyncClient, runtime: Runtime, lock_holder: Any
):
    app.state.journal = SqliteJournalWriter(runtime.engine, busy_timeout_seconds=0.2)
    try:
        holder = lock_holder()
        response = await client.post("/segment", headers=basic_auth(), json=message("busy-1"))
        assert response.status_code == 503, response.text
        assert "retry" in response.json()["message"]
        holder.release()
        assert (await stored_counts(runtime))["inbound_journal"] == 0
        # Segment retries a 5xx: the same message is then stored, once.
        for _ in range(2):
            response = await client.post("/segment", headers=basic_auth(), json=message("busy-1"))
            assert response.status_code == 200, response.text
    finally:
        await app.state.journal.close()
    assert [row.message_id for row in await journal_statuses(runtime.engine)] == ["busy-1"]


async def test_close_commits_every_append_in_flight_then_ends_the_thread(runtime: Runtime, lock_holder: Any):
    writer = SqliteJournalWriter(runtime.engine)
    holder = lock_holder()  # the appends queue up behind it, as requests do during a worker's commit
    appends = [asyncio.create_task(writer.append(rows(f"drain-{n}"))) for n in range(50)]
    await asyncio.sleep(0.1)
    closing = asyncio.create_task(writer.close())
    await asyncio.sleep(0.1)
    assert not any(task.done() for task in appends) and not closing.done()
    holder.release()
    await asyncio.wait_for(asyncio.gather(*appends, closing), timeout=30)
    assert len(await journal_statuses(runtime.engine)) == 50
    assert "journal-sqlite" not in [thread.name for thread in threading.enumerate()]
