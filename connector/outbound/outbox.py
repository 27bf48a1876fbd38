"""The outbox: what must be sent, coalesced per user and per account, one row per event.

Rows only say *what* changed; the sender builds the message from current data when
it sends, so ten changes to one user become one identify. A change to a row that is
already waiting bumps its `version`, and the sender deletes a row only if its version
is unchanged since it was claimed: no change is lost to a race.
"""

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from connector.db import insert
from connector.models import OutboxItem, utcnow

outbox = OutboxItem.__table__
USER, ACCOUNT, EVENT, TRANSITION = "user", "account", "event", "transition"


def outbox_key(kind: str, entity_id: int) -> str:
    return f"{kind}:{entity_id}"


async def enqueue(conn: AsyncConnection, kind: str, ids: Iterable[int]) -> None:
    now = utcnow()
    rows = [{"key": outbox_key(kind, entity_id), "version": 1, "attempts": 0, "available_at": now,
             "created_at": now} for entity_id in sorted(set(ids))]
    if not rows:
        return
    statement = insert(outbox, conn.dialect.name)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=["key"], set_={"version": outbox.c.version + 1}), rows)
