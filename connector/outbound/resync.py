"""Initial sync: put everyone in the outbound filter (or in one segment) in the outbox; when asked, also the
`added` event of segment_events for every current member of the segments it follows (`member:` rows). And when
segment_events starts following a segment's changes, what its current members hold then (`follow_members`).

First sync: a settings save that adds segments (or `ALL`) to `synchronized_segments` or
`synchronized_account_segments` queues their current members in its own transaction (`queue_added`): users for
user segments, accounts (a group call from each linked user) for account segments. Members already in the filter
through another segment are queued too and cost nothing: the outbox coalesces, and a payload Segment already
holds is not sent again. Each sync (that one, or a resync) is a `sync_runs` row: what was queued and when; its
progress is read from the activity log since then (`progress`)."""

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.kinds import Entity, OutboxKind, Outcome, outgoing_action
from connector.core.models import Account, ActivityEntry, OutboxItem, Segment, SegmentMembership, SyncRun, User, utcnow
from connector.core.settings import ALL, ConnectorSettings
from connector.flow import outbox
from connector.outbound import delivery_state

users = User.__table__
accounts = Account.__table__
sync_runs = SyncRun.__table__
activity_log = ActivityEntry.__table__
outbox_rows = OutboxItem.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
CHUNK = 1_000
SETTINGS, RESYNC = "settings", "resync"  # what started a sync run


class UnknownSegment(LookupError):
    pass


def _selection(settings: ConnectorSettings, segment: tuple[int, str] | None) -> sa.Select[int]:
    """The ids to enqueue: members of one segment, or the users in the outbound filter."""
    if segment is not None:
        return sa.select(memberships.c.entity_id).where(memberships.c.segment_id == segment[0])
    return _members(Entity.USER, settings.synchronized_segments)


def _members(entity: Entity, names: list[str]) -> sa.Select[int]:
    """The users (or accounts) in segments of these names: all of them with `ALL`."""
    if ALL in names:
        return sa.select((users if entity == Entity.USER else accounts).c.id)
    return (
        sa.select(memberships.c.entity_id)
        .distinct()
        .join(segments, segments.c.id == memberships.c.segment_id)
        .where(segments.c.entity == entity, segments.c.name.in_(names))
    )


async def queue_added(conn: AsyncConnection, before: ConnectorSettings, after: ConnectorSettings) -> dict[str, int]:
    """In the caller's transaction (the settings save): queue the current members of the segments the save adds
    to the outbound filters, and record the sync run when it queued anyone. Nothing is new to a filter that held
    `ALL` already. Returns how many users and accounts were queued."""
    queued = {"users": 0, "accounts": 0}
    names: list[str] = []
    filters = (
        (Entity.USER, OutboxKind.USER, "users", before.synchronized_segments, after.synchronized_segments),
        (
            Entity.ACCOUNT,
            OutboxKind.ACCOUNT,
            "accounts",
            before.synchronized_account_segments,
            after.synchronized_account_segments,
        ),
    )
    for entity, kind, counted, was, now in filters:
        added = [ALL] if ALL in now else [name for name in now if name not in was]
        if ALL in was or not added:
            continue
        selection = _members(entity, added)
        queued[counted] = (
            await conn.execute(sa.select(sa.func.count()).select_from(selection.subquery()))
        ).scalar_one()
        await outbox.enqueue_select(conn, kind, selection)
        names += added
    if queued["users"] or queued["accounts"]:
        await _record_run(conn, SETTINGS, names, queued["users"], queued["accounts"])
    return queued


async def _record_run(conn: AsyncConnection, trigger: str, names: list[str], users: int, accounts: int) -> None:
    await conn.execute(
        sync_runs.insert().values(trigger=trigger, segments=names, users=users, accounts=accounts, started_at=utcnow())
    )


async def progress(conn: AsyncConnection) -> dict[str, Any] | None:
    """The latest sync run and how far it got: what it queued; the users the sender sent to, skipped (unchanged,
    not in the filter) and failed for (retried or dead-lettered) since it began, from the activity log (whatever
    else was sent meanwhile counts too: the log does not say which run queued a row); the outbox rows waiting now.
    None before the first run."""
    run = (await conn.execute(sa.select(sync_runs).order_by(sync_runs.c.id.desc()).limit(1))).first()
    if run is None:
        return None
    outcomes = {
        outgoing_action(Entity.USER, Outcome.SUCCESS): "sent",
        outgoing_action(Entity.USER, Outcome.SKIP): "skipped",
        outgoing_action(Entity.USER, Outcome.ERROR): "failed",
        outgoing_action(Entity.USER, Outcome.DEAD_LETTER): "failed",
    }
    outcome = sa.case(outcomes, value=activity_log.c.action).label("outcome")
    counted = dict.fromkeys(outcomes.values(), 0)
    rows = await conn.execute(
        sa.select(outcome, sa.func.count(sa.distinct(activity_log.c.entity_id)))
        .where(activity_log.c.created_at >= run.started_at, activity_log.c.action.in_(outcomes))
        .group_by(outcome)
    )
    counted.update({name: int(count) for name, count in rows})
    waiting = (await conn.execute(sa.select(sa.func.count()).select_from(outbox_rows))).scalar_one()
    return {
        "id": run.id,
        "trigger": run.trigger,
        "segments": run.segments,
        "started_at": run.started_at,
        "queued": {"users": run.users, "accounts": run.accounts},
        **counted,
        "waiting": waiting,
    }


async def resync(
    engine: AsyncEngine,
    settings: ConnectorSettings,
    segment_name: str | None = None,
    force: bool = False,
    progress: Callable[[int], object] = lambda n: None,
    started: Callable[[int], object] = lambda total: None,
) -> int:
    """Enqueue users (or a segment's accounts); with force, everything is sent again, unchanged or not.

    The sync run is recorded with how many there are (`started` is told too), then the ids are read and queued a
    chunk a transaction, in id order: the first rows are queued as soon as the run is recorded, however many
    follow, and no list of every id is held."""
    async with engine.begin() as conn:
        segment = await _segment(conn, segment_name)
        selected = _selection(settings, segment).subquery()
        total = (await conn.execute(sa.select(sa.func.count()).select_from(selected))).scalar_one()
        kind = OutboxKind.ACCOUNT if segment is not None and segment[1] == Entity.ACCOUNT else OutboxKind.USER
        names = [segment_name] if segment_name is not None else settings.synchronized_segments
        accounts_queued = total if kind == OutboxKind.ACCOUNT else 0
        await _record_run(conn, RESYNC, names, total - accounts_queued, accounts_queued)
    started(total)
    entity_id, queued, last = selected.c[0], 0, 0  # ids are positive
    while True:
        async with engine.begin() as conn:
            following = sa.select(entity_id).where(entity_id > last).order_by(entity_id).limit(CHUNK)
            chunk = list((await conn.execute(following)).scalars())
            if not chunk:
                return queued
            if force:
                await _forget_delivered(conn, kind, chunk)
            await outbox.enqueue(conn, kind, chunk)
        last, queued = chunk[-1], queued + len(chunk)
        progress(len(chunk))


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
    # Here, not at the top: `connector resync` need not load the message builders to queue its rows.
    from connector.outbound.build import build

    following = after.model_copy(update={"segment_events": entries})
    written, now = 0, utcnow()
    for start in range(0, len(keys), CHUNK):
        built = await build(conn, following, keys[start : start + CHUNK], quiet=True)
        decided = built.event_records
        written += await delivery_state.record_baselines(conn, decided.rows(decided.digests), now)
    return written
