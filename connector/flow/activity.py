"""The activity log (Hull's user log): what happened to a user or an account, and why.

Shared by processing/, segments/ and outbound/, which write to it in the transactions that
did the work, so an entry exists exactly when what it reports committed. Writes are
set-based: `append` takes every entry of a batch and writes them with one statement
(db.copy_rows: a COPY on PostgreSQL).
The log is read newest first by id, the order the work was done in.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import copy_rows
from connector.core.kinds import Action, Entity
from connector.core.models import ActivityEntry, utcnow

activity_log = ActivityEntry.__table__
CHUNK = 1000


def entry(
    entity: Entity, entity_id: int, action: Action | str, details: dict[str, Any], message_id: str | None = None
) -> dict[str, Any]:
    """One row of the log: `action` is its event name (an `Action`, or kinds.outgoing_action's)."""
    return {"entity": entity, "entity_id": entity_id, "action": action, "message_id": message_id, "details": details}


async def append(conn: AsyncConnection, entries: list[dict[str, Any]], now: datetime | None = None) -> None:
    """Write entries in their order (ids follow it), all stamped `now` (in place: entries are built to be
    appended), with one statement (db.copy_rows)."""
    at = now or utcnow()
    for row in entries:
        row["created_at"] = at
    await copy_rows(conn, activity_log, entries)


async def append_select(conn: AsyncConnection, select: Any) -> None:
    """Write the entries a SELECT returns, without fetching them: its columns are entity, entity_id,
    action, message_id, details and created_at, in that order."""
    await conn.execute(
        activity_log.insert().from_select(
            ["entity", "entity_id", "action", "message_id", "details", "created_at"], select
        )
    )


def details_literal(details: dict[str, Any]) -> Any:
    """A JSON value as a literal of a SELECT for `append_select`."""
    return sa.literal(details, activity_log.c.details.type)


async def move(conn: AsyncConnection, entity: Entity, from_id: int, to_id: int) -> None:
    """A merged profile's history becomes the survivor's."""
    await conn.execute(
        activity_log.update()
        .where(activity_log.c.entity == entity, activity_log.c.entity_id == from_id)
        .values(entity_id=to_id)
    )


async def forget(conn: AsyncConnection, entity: Entity, entity_id: int) -> int:
    """An erased profile's history goes; returns how many entries."""
    deleted = await conn.execute(
        activity_log.delete().where(activity_log.c.entity == entity, activity_log.c.entity_id == entity_id)
    )
    return deleted.rowcount


async def forget_messages(conn: AsyncConnection, message_ids: list[str]) -> int:
    """The entries about these messages go (an erased person's, logged on accounts too); returns how many."""
    count = 0
    for start in range(0, len(message_ids), CHUNK):
        chunk = message_ids[start : start + CHUNK]
        count += (await conn.execute(activity_log.delete().where(activity_log.c.message_id.in_(chunk)))).rowcount
    return count
