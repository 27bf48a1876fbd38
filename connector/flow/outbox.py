"""The outbox: what must be sent, coalesced per user and per account, one row per event.

Rows only say *what* changed; the sender builds the message from current data when
it sends, so ten changes to one user become one identify. A change to a row that is
already waiting bumps its `version`, and the sender deletes a row only if its version
is unchanged since it was claimed: no change is lost to a race.
"""

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import insert, insert_rows
from connector.core.kinds import OutboxKind
from connector.core.models import OutboxItem, UTCDateTime, utcnow

outbox = OutboxItem.__table__


# The delivery_state keys, which processing/ (merges, erasure) and outbound/ (builders, resync) both use: what
# Segment last received in a user's identify and group calls, and in the segment events of one membership.
IDENTIFY_STATE, GROUP_STATE = "identify", "group"
SEGMENT_EVENT_STATE = "segment_event"


def outbox_key(kind: OutboxKind, entity_id: int | str) -> str:
    return f"{kind}:{entity_id}"


def delivery_key(kind: str, user_id: int) -> str:
    """The delivery_state key of what Segment last received in a user's identify (IDENTIFY_STATE) or group call."""
    return f"{kind}:{user_id}"


def delivery_keys(user_ids: list[int]) -> list[str]:
    """The identify and group delivery_state keys of these users."""
    return [delivery_key(kind, user_id) for user_id in user_ids for kind in (IDENTIFY_STATE, GROUP_STATE)]


def segment_state_prefix(user_id: int) -> str:
    """What the delivery_state keys of one user's segment-event records begin with."""
    return f"{SEGMENT_EVENT_STATE}:{user_id}:"


def segment_state_key(user_id: int, segment_id: int) -> str:
    """The delivery_state key of what Segment last received in the segment events of one membership."""
    return f"{segment_state_prefix(user_id)}{segment_id}"


async def enqueue(conn: AsyncConnection, kind: OutboxKind, ids: Iterable[int | str]) -> None:
    now = utcnow()
    rows = [
        {"key": outbox_key(kind, entity_id), "version": 1, "attempts": 0, "available_at": now, "created_at": now}
        for entity_id in sorted(set(ids))
    ]
    await insert_rows(conn, outbox, rows, adapt=_coalescing)


async def enqueue_select(conn: AsyncConnection, kind: OutboxKind, ids: Any) -> None:
    """enqueue for the ids a SELECT returns, without fetching them (same keys, same coalescing)."""
    selected = ids.subquery()
    now = utcnow()
    # The SELECT needs a WHERE: SQLite cannot parse INSERT ... SELECT ... ON CONFLICT without one.
    rows = (
        sa.select(
            sa.literal(outbox_key(kind, "")).concat(sa.cast(selected.c[0], sa.String)),
            sa.literal(1),
            sa.literal(0),
            sa.literal(now, UTCDateTime()),
            sa.literal(now, UTCDateTime()),
        )
        .select_from(selected)
        .where(sa.true())
    )
    statement = insert(outbox, conn.dialect.name).from_select(
        ["key", "version", "attempts", "available_at", "created_at"], rows
    )
    await conn.execute(_coalescing(statement))


def _coalescing(statement: Any) -> Any:
    """A change to a row already waiting bumps its version instead of adding a row."""
    return statement.on_conflict_do_update(index_elements=["key"], set_={"version": outbox.c.version + 1})
