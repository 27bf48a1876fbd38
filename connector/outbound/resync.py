"""Initial sync: put everyone in the outbound filter (or in one segment) in the outbox; when asked, also the
`added` event of segment_events for every current member of the segments it follows (`member:` rows). And when
segment_events starts following a segment's changes, what its current members hold then (`follow_members`)."""

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.kinds import Entity, OutboxKind
from connector.core.models import Segment, SegmentMembership, User, utcnow
from connector.core.settings import ALL, ConnectorSettings
from connector.flow import outbox
from connector.outbound import delivery_state
from connector.outbound.build import build

users = User.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
CHUNK = 1_000


class UnknownSegment(LookupError):
    pass


def _selection(settings: ConnectorSettings, segment: tuple[int, str] | None) -> sa.Select[int]:
    """The ids to enqueue: members of one segment, or the users in the outbound filter."""
    if segment is not None:
        return sa.select(memberships.c.entity_id).where(memberships.c.segment_id == segment[0])
    if ALL in settings.synchronized_segments:
        return sa.select(users.c.id)
    return (
        sa.select(memberships.c.entity_id)
        .distinct()
        .join(segments, segments.c.id == memberships.c.segment_id)
        .where(segments.c.entity == Entity.USER, segments.c.name.in_(settings.synchronized_segments))
    )


async def count(engine: AsyncEngine, settings: ConnectorSettings, segment_name: str | None = None) -> int:
    async with engine.connect() as conn:
        segment = await _segment(conn, segment_name)
        return (
            await conn.execute(sa.select(sa.func.count()).select_from(_selection(settings, segment).subquery()))
        ).scalar_one()


async def resync(
    engine: AsyncEngine,
    settings: ConnectorSettings,
    segment_name: str | None = None,
    force: bool = False,
    progress: Callable[[int], object] = lambda n: None,
) -> int:
    """Enqueue users (or a segment's accounts); with force, everything is sent again, unchanged or not."""
    async with engine.connect() as conn:
        segment = await _segment(conn, segment_name)
        ids = list((await conn.execute(_selection(settings, segment).order_by(sa.text("1")))).scalars())
    kind = OutboxKind.ACCOUNT if segment is not None and segment[1] == Entity.ACCOUNT else OutboxKind.USER
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        async with engine.begin() as conn:
            if force:
                await _forget_delivered(conn, kind, chunk)
            await outbox.enqueue(conn, kind, chunk)
        progress(len(chunk))
    return len(ids)


async def _forget_delivered(conn: AsyncConnection, kind: OutboxKind, ids: list[int]) -> None:
    if kind == OutboxKind.ACCOUNT:
        linked = (await conn.execute(sa.select(users.c.id).where(users.c.account_id.in_(ids)))).scalars()
        keys = [delivery_state.delivery_key(delivery_state.GROUP_STATE, user_id) for user_id in linked]
    else:
        keys = delivery_state.delivery_keys(ids)
    await delivery_state.forget_hashes(conn, keys)


async def _segment(conn: AsyncConnection, name: str | None) -> tuple[int, str] | None:
    if name is None:
        return None
    row = (await conn.execute(sa.select(segments.c.id, segments.c.entity).where(segments.c.name == name))).first()
    if row is None:
        raise UnknownSegment(f"no segment named {name!r}")
    return row.id, row.entity


def _followed_members(settings: ConnectorSettings, segment_name: str | None) -> sa.Select[tuple[int, int]]:
    """The memberships of the segments whose segment_events entry has an added event (or of one of them)."""
    names = [entry.segment for entry in settings.segment_events if entry.added]
    if segment_name is not None:
        names = [name for name in names if name == segment_name]
    return (
        sa.select(memberships.c.segment_id, memberships.c.entity_id)
        .join(segments, segments.c.id == memberships.c.segment_id)
        .where(segments.c.name.in_(names))
    )


async def count_added(engine: AsyncEngine, settings: ConnectorSettings, segment_name: str | None = None) -> int:
    async with engine.connect() as conn:
        query = _followed_members(settings, segment_name).subquery()
        return (await conn.execute(sa.select(sa.func.count()).select_from(query))).scalar_one()


async def resync_added(
    engine: AsyncEngine,
    settings: ConnectorSettings,
    segment_name: str | None = None,
    progress: Callable[[int], object] = lambda n: None,
) -> int:
    """Enqueue the added event of every current member of the followed segments; each goes out with the messageId
    of the added its membership was (or would have been) sent with, so Segment drops what it already holds."""
    async with engine.connect() as conn:
        found = (
            await conn.execute(_followed_members(settings, segment_name).order_by(sa.text("1"), sa.text("2")))
        ).all()
    for start in range(0, len(found), CHUNK):
        chunk = found[start : start + CHUNK]
        async with engine.begin() as conn:
            await outbox.enqueue(
                conn, OutboxKind.MEMBER, [outbox.member_key(row.segment_id, row.entity_id) for row in chunk]
            )
        progress(len(chunk))
    return len(found)


async def follow_members(conn: AsyncConnection, before: ConnectorSettings, after: ConnectorSettings) -> int:
    """Record, in the caller's transaction (the settings save), the mapped properties of every current member of the
    segments segment_events starts following: a member from before the entry then gets `changed` for its next
    mapped change, measured from what it held when the entry was saved (and, in an account segment, `removed` when
    it leaves its account). A member that already has a record keeps it. Returns how many records were written."""
    followed_before = {entry.segment for entry in before.segment_events}
    entries = [entry for entry in after.segment_events if entry.segment not in followed_before]
    if not entries:
        return 0
    members = (
        await conn.execute(
            sa.select(segments.c.entity, memberships.c.entity_id)
            .join(segments, segments.c.id == memberships.c.segment_id)
            .where(segments.c.name.in_([entry.segment for entry in entries]))
            .distinct()
            .order_by(sa.text("1"), sa.text("2"))
        )
    ).all()
    keys = [
        outbox.outbox_key(OutboxKind.USER if row.entity == Entity.USER else OutboxKind.ACCOUNT, row.entity_id)
        for row in members
    ]
    following = after.model_copy(update={"segment_events": entries})
    written, now = 0, utcnow()
    for start in range(0, len(keys), CHUNK):
        built = await build(conn, following, keys[start : start + CHUNK], quiet=True)
        decided = built.event_records
        written += await delivery_state.record_baselines(conn, decided.rows(decided.digests), now)
    return written
