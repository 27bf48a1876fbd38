"""The activity log (Hull's user log): what happened to a user or an account, and why.

Shared by processing/, segments/ and outbound/, which write to it in the transactions that
did the work, so an entry exists exactly when what it reports committed. Writes are
set-based: `append` takes every entry of a batch and writes them with one statement (on
PostgreSQL an INSERT ... SELECT FROM unnest of one array per column; on SQLite SQLAlchemy's
"insertmanyvalues", one multi-row INSERT per 1,000 rows, which it uses only for an INSERT
with RETURNING: without, the driver would run one statement per row).
The log is read newest first by id, the order the work was done in.
"""

from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.models import ActivityEntry, UTCDateTime, utcnow

activity_log = ActivityEntry.__table__
USER, ACCOUNT = "user", "account"


def entry(
    entity: str, entity_id: int, action: str, details: dict[str, Any], message_id: str | None = None
) -> dict[str, Any]:
    """One row of the log: `action` is its event name (`incoming.user.success`, ...)."""
    return {"entity": entity, "entity_id": entity_id, "action": action, "message_id": message_id, "details": details}


async def append(conn: AsyncConnection, entries: list[dict[str, Any]], now: datetime | None = None) -> None:
    """Write entries in their order (ids follow it), all stamped `now`: one statement (on SQLite one per
    1,000 rows)."""
    if not entries:
        return
    at = now or utcnow()
    if conn.dialect.name == "postgresql":
        await conn.execute(
            _UNNEST_INSERT,
            {
                "at": at,
                "entities": [row["entity"] for row in entries],
                "ids": [row["entity_id"] for row in entries],
                "actions": [row["action"] for row in entries],
                "message_ids": [row["message_id"] for row in entries],
                "details": [orjson.dumps(row["details"]).decode() for row in entries],
            },
        )
    else:
        await conn.execute(
            activity_log.insert().returning(activity_log.c.id), [{**row, "created_at": at} for row in entries]
        )


# One parameter per column, whatever the number of rows: three times faster than the same rows
# as VALUES lists, and the statement is prepared once. WITH ORDINALITY keeps the ids in order.
_UNNEST_INSERT = sa.text(
    "INSERT INTO activity_log (entity, entity_id, action, message_id, details, created_at) "
    "SELECT entity, entity_id, action, message_id, CAST(details AS jsonb), :at FROM unnest("
    "CAST(:entities AS text[]), CAST(:ids AS bigint[]), CAST(:actions AS text[]), CAST(:message_ids AS text[]), "
    "CAST(:details AS text[])) WITH ORDINALITY AS rows (entity, entity_id, action, message_id, details, n) "
    "ORDER BY n"
).bindparams(sa.bindparam("at", type_=UTCDateTime()))


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


async def move(conn: AsyncConnection, entity: str, from_id: int, to_id: int) -> None:
    """A merged profile's history becomes the survivor's."""
    await conn.execute(
        activity_log.update()
        .where(activity_log.c.entity == entity, activity_log.c.entity_id == from_id)
        .values(entity_id=to_id)
    )
