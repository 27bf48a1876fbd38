"""What the database holds: emptying tables, counting stored rows, the journal's statuses, appending to it; a message
made to fail."""

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from connector.core import models
from connector.core.runtime import Runtime
from connector.inbound.writer import open_journal
from connector.processing import apply
from tests.support.app import basic_auth


async def empty_tables(engine: Any, keep: set[str]) -> None:
    """Delete every row of every table but those named in `keep`: a fresh start between hypothesis examples."""
    async with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name not in keep:
                await conn.execute(table.delete())


async def append_to_journal(engine: Any, rows: list[dict[str, Any]]) -> None:
    """Commit journal rows as the web process does (its journal writer), then release the writer's connection."""
    journal = open_journal(engine, pooler=False)
    try:
        await journal.append(rows)
    finally:
        await journal.close()


async def stored_counts(runtime: Runtime) -> dict[str, int]:
    """Rows in the inbound and profile tables: what a refused request must leave untouched."""
    tables = [
        models.JournalEntry.__table__,
        models.User.__table__,
        models.UserIdentifier.__table__,
        models.Event.__table__,
        models.Account.__table__,
    ]
    counts: dict[str, int] = {}
    async with runtime.engine.connect() as conn:
        for table in tables:
            counts[table.name] = (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
    return counts


def fail_for(monkeypatch: pytest.MonkeyPatch, message_id: str) -> None:
    """Make event storage raise for one messageId only, as a bug or a bad row would."""
    event_properties = apply.event_properties

    def failing(message: dict[str, Any]) -> Any:
        if message["messageId"] == message_id:
            raise RuntimeError(f"cannot store {message_id}")
        return event_properties(message)

    monkeypatch.setattr(apply, "event_properties", failing)


async def post_with_poison(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three tracks of three users in one /v1/batch, the middle one ("poison") failing in processing (fail_for)."""
    fail_for(monkeypatch, "poison")
    batch = [
        {"type": "track", "userId": "u1", "event": "A", "messageId": "before"},
        {"type": "track", "userId": "u2", "event": "B", "messageId": "poison"},
        {"type": "track", "userId": "u3", "event": "C", "messageId": "after"},
    ]
    assert (await client.post("/v1/batch", headers=basic_auth(), json={"batch": batch})).status_code == 200


# Written out here rather than taken from connector.flow.journal: a message is pending while its queue row exists,
# failed when parked with a reason, processed otherwise.
JOURNAL_STATUS = sa.text(
    "SELECT message_id, type, error, CASE WHEN id IN (SELECT id FROM journal_queue) THEN 'pending' "
    "WHEN error IS NOT NULL THEN 'failed' ELSE 'processed' END AS status FROM inbound_journal ORDER BY id"
)


async def journal_statuses(engine: Any) -> list[Any]:
    """Every journal row's message_id, type, error and status, in journal order."""
    async with engine.connect() as conn:
        return list((await conn.execute(JOURNAL_STATUS)).all())


async def journal_status_counts(engine: Any) -> dict[str, int]:
    """How many journal rows are pending, processed and failed (absent: none); cheap enough to poll."""
    async with engine.connect() as conn:
        total, pending, failed = (
            await conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM inbound_journal), (SELECT count(*) FROM journal_queue), "
                    "(SELECT count(*) FROM inbound_journal WHERE error IS NOT NULL)"
                )
            )
        ).one()
    counts = {"pending": pending, "processed": total - pending - failed, "failed": failed}
    return {status: count for status, count in counts.items() if count}
