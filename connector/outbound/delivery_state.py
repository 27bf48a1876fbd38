"""What Segment was last told about each user (the delivery_state table), kept across merges and erasures.

The sender records it as it delivers; a merge gives the survivor what the merged profile was told, and an
erasure forgets it. The keys (delivery_key, segment_state_key) name what was sent: a user's
identify, its group call, and the segment events of one membership.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import any_of, insert, insert_rows
from connector.core.kinds import MessageType
from connector.core.models import DeliveryState

delivered = DeliveryState.__table__
# The keys: what Segment last received in a user's identify and group calls, and in the segment events of one
# membership. The builders read them, the sender records them, merges and erasures move and forget them.
IDENTIFY_STATE, GROUP_STATE = MessageType.IDENTIFY, MessageType.GROUP
SEGMENT_EVENT_STATE = "segment_event"


def delivery_key(kind: MessageType, user_id: int) -> str:
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


async def merge_users(conn: AsyncConnection, target: int, loser: int) -> None:
    """What Segment was told about the loser is now told about the survivor (Segment merges them too):
    the survivor's next identify or group says `false` for whatever the loser was last sent in."""
    rows = {
        row.key: row
        for row in await conn.execute(sa.select(delivered).where(delivered.c.key.in_(delivery_keys([target, loser]))))
    }
    for kind in (IDENTIFY_STATE, GROUP_STATE):
        gone = rows.get(delivery_key(kind, loser))
        if gone is None:
            continue
        kept = rows.get(delivery_key(kind, target))
        told = sorted(set(gone.segments) | set(kept.segments if kept else []))
        in_filter = gone.in_filter or (kept is not None and kept.in_filter)
        # An empty hash matches no payload: the survivor's next call is sent.
        values = {"payload_hash": "", "segments": told, "in_filter": in_filter, "delivered_at": gone.delivered_at}
        if kept is None:
            await conn.execute(delivered.insert().values(key=delivery_key(kind, target), **values))
        else:
            await conn.execute(delivered.update().where(delivered.c.key == delivery_key(kind, target)).values(**values))
        await conn.execute(delivered.delete().where(delivered.c.key == gone.key))
    await _merge_segment_event_records(conn, target, loser)


async def _merge_segment_event_records(conn: AsyncConnection, target: int, loser: int) -> None:
    """The loser's record of what Segment last received for a segment's events (segment_state_key) becomes
    the survivor's where the survivor has none of its own, and goes otherwise: none is left under a profile that
    no longer exists, where an erasure of the survivor would not find it."""

    async def segments_recorded(user_id: int) -> list[int]:
        prefix = segment_state_prefix(user_id)
        keys = await conn.scalars(sa.select(delivered.c.key).where(delivered.c.key.startswith(prefix, autoescape=True)))
        return [int(key.removeprefix(prefix)) for key in keys.all()]

    kept = set(await segments_recorded(target))
    for segment_id in await segments_recorded(loser):
        key = delivered.c.key == segment_state_key(loser, segment_id)
        if segment_id in kept:
            await conn.execute(delivered.delete().where(key))
        else:
            await conn.execute(delivered.update().where(key).values(key=segment_state_key(target, segment_id)))


async def forget_users(conn: AsyncConnection, user_ids: list[int]) -> int:
    """Erased users: nothing of what they were sent is kept. Returns how many records went."""
    count = 0
    for user_id in user_ids:
        mine = sa.or_(
            delivered.c.key.in_(delivery_keys([user_id])),
            delivered.c.key.startswith(segment_state_prefix(user_id), autoescape=True),
        )
        count += (await conn.execute(delivered.delete().where(mine))).rowcount
    return count


async def record(conn: AsyncConnection, states: dict[str, dict[str, Any]], forgotten: list[str], now: datetime) -> None:
    """What Segment now holds after a round: `states` (key -> payload_hash, segments, in_filter, account_id)
    written, `forgotten` records gone. Keys are written in sorted order so that concurrent senders never
    deadlock on PostgreSQL."""
    if forgotten:
        await conn.execute(delivered.delete().where(any_of(conn, delivered.c.key, sorted(forgotten))))
    if not states:
        return

    def upsert(statement: Any) -> Any:
        return statement.on_conflict_do_update(
            index_elements=["key"],
            set_={
                name: statement.excluded[name]
                for name in ("payload_hash", "segments", "in_filter", "delivered_at", "account_id")
            },
        )

    rows = [{"key": key, **states[key], "delivered_at": now} for key in sorted(states)]
    await insert_rows(conn, delivered, rows, adapt=upsert)


async def record_baselines(conn: AsyncConnection, states: dict[str, dict[str, Any]], now: datetime) -> int:
    """Records written where none exists (a record already there is kept); returns how many were written."""
    if not states:
        return 0
    statement = insert(delivered, conn.dialect.name).on_conflict_do_nothing(index_elements=["key"])
    rows = [{"key": key, **states[key], "delivered_at": now} for key in sorted(states)]
    return int((await conn.execute(statement, rows)).rowcount)


async def forget_hashes(conn: AsyncConnection, keys: list[str]) -> None:
    """The next identify or group of these keys is sent, changed or not. Only the hash goes: what Segment was
    told (its segments, whether in the filter) still holds."""
    await conn.execute(delivered.update().where(delivered.c.key.in_(keys)).values(payload_hash=""))
