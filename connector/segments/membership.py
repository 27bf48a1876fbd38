"""Who is in which segment: incremental updates, full recomputes, and their transitions.

Every change of membership is an `entered` or `exited` row in segment_transitions, and
both the transition and the user (or account) go to the outbox in the same transaction,
with a `segment.entered` or `segment.exited` entry in the activity log.
The incremental path evaluates in Python only the profiles a batch touched; the full
recompute is set-based SQL (no loop over users): the matching ids go to a temporary
table, and the differences with the current members become transitions, memberships
and outbox rows, each with one INSERT ... SELECT or DELETE.

On PostgreSQL a recompute locks its segment row (FOR UPDATE) and the incremental path
shares the lock (FOR SHARE), so the two never race on the same memberships.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import any_of
from connector.core.kinds import Entity, OutboxKind, Transition, segment_action
from connector.core.logs import get_logger
from connector.core.models import (
    Account,
    Event,
    Segment,
    SegmentMembership,
    SegmentTransition,
    User,
    UTCDateTime,
    utcnow,
)
from connector.flow import activity, outbox
from connector.flow.changes import Changes
from connector.profile.attributes import load_profiles
from connector.segments.compile import Compiler
from connector.segments.evaluate import evaluate
from connector.segments.rules import conditions, event_needs, uses_computed

segments = Segment.__table__
memberships = SegmentMembership.__table__
transitions = SegmentTransition.__table__
users = User.__table__
accounts = Account.__table__
events = Event.__table__
OUTBOX_KIND = {Entity.USER: OutboxKind.USER, Entity.ACCOUNT: OutboxKind.ACCOUNT}
# Created and dropped in the recompute's transaction; ON COMMIT DROP (PostgreSQL) makes sure of it even if that
# code changes, as behind a transaction-mode pooler the next transaction may run on another server connection.
matches = sa.Table(
    "segment_matches",
    sa.MetaData(),
    sa.Column("entity_id", sa.BigInteger, primary_key=True),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
log = get_logger()


@dataclass
class Recomputed:
    entered: int
    exited: int


async def _segments(conn: AsyncConnection, segment_id: int | None = None) -> list[Any]:
    query = sa.select(segments.c.id, segments.c.name, segments.c.entity, segments.c.rule).order_by(segments.c.id)
    if segment_id is not None:
        query = query.where(segments.c.id == segment_id)
    return list(await conn.execute(query.with_for_update(read=segment_id is None)))


async def create(conn: AsyncConnection, values: dict[str, Any], now: datetime) -> int:
    """A new segment (name, entity, rule); its members come from `recompute`."""
    segment_id: int = await conn.scalar(
        segments.insert().values(**values, created_at=now, updated_at=now).returning(segments.c.id)
    )
    return segment_id


async def locked(conn: AsyncConnection, segment_id: int) -> Any | None:
    """A segment's id, name, entity and rule, locked for the caller's transaction; None if there is none."""
    found = await _segments(conn, segment_id)
    return found[0] if found else None


# --- full recompute --------------------------------------------------------------


async def recompute(
    conn: AsyncConnection, segment_id: int, now: datetime | None = None, initial: bool = False
) -> Recomputed | None:
    """Re-evaluate one segment over every user (or account), in the caller's transaction."""
    now = now or utcnow()
    found = await _segments(conn, segment_id)
    if not found:
        return None
    segment = found[0]
    matching = Compiler(conn.dialect.name, segment.entity, now).select_ids(segment.rule)
    watermark = await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(transitions.c.id), 0)))
    await conn.run_sync(matches.create)
    await conn.execute(matches.insert().from_select(["entity_id"], matching))
    members = sa.select(memberships.c.entity_id).where(memberships.c.segment_id == segment_id)
    candidates = sa.select(matches.c.entity_id)
    for kind, difference in (
        (Transition.ENTERED, candidates.except_(members)),
        (Transition.EXITED, members.except_(candidates)),
    ):
        await _insert_transitions(conn, segment, kind, difference.subquery(), initial, now)
    await conn.run_sync(matches.drop)

    recorded = sa.and_(transitions.c.segment_id == segment_id, transitions.c.id > watermark)
    exited = sa.select(transitions.c.entity_id).where(recorded, transitions.c.transition == Transition.EXITED)
    await conn.execute(
        memberships.delete().where(memberships.c.segment_id == segment_id, memberships.c.entity_id.in_(exited))
    )
    await conn.execute(
        memberships.insert().from_select(
            ["segment_id", "entity_id", "entered_at"],
            sa.select(transitions.c.segment_id, transitions.c.entity_id, transitions.c.at).where(
                recorded, transitions.c.transition == Transition.ENTERED
            ),
        )
    )
    await _enqueue_recorded(conn, segment, recorded)
    await conn.execute(segments.update().where(segments.c.id == segment_id).values(computed_at=now))
    counts: dict[str, int] = dict(
        (
            await conn.execute(
                sa.select(transitions.c.transition, sa.func.count()).where(recorded).group_by(transitions.c.transition)
            )
        ).all()
    )
    result = Recomputed(entered=counts.get(Transition.ENTERED, 0), exited=counts.get(Transition.EXITED, 0))
    log.info(
        "segment.recompute.done", segment_id=segment_id, entered=result.entered, exited=result.exited, initial=initial
    )
    return result


async def _insert_transitions(
    conn: AsyncConnection, segment: Any, kind: Transition, entity_ids: Any, initial: bool, now: datetime
) -> None:
    """One `kind` transition of `segment` for each id the subquery returns, with one INSERT ... SELECT."""
    await conn.execute(
        transitions.insert().from_select(
            ["segment_id", "segment_name", "entity", "entity_id", "transition", "initial", "at"],
            sa.select(
                sa.literal(segment.id, sa.BigInteger),
                sa.literal(segment.name),
                sa.literal(segment.entity),
                entity_ids.c.entity_id,
                sa.literal(kind),
                sa.literal(initial, sa.Boolean),
                sa.literal(now, UTCDateTime()),
            )
            .select_from(entity_ids)
            .where(sa.true()),
        )
    )


async def _enqueue_recorded(conn: AsyncConnection, segment: Any, recorded: Any) -> None:
    """The transitions just recorded, and the profiles they concern, go to the outbox and the activity log."""
    await outbox.enqueue_select(conn, OutboxKind.TRANSITION, sa.select(transitions.c.id).where(recorded))
    await outbox.enqueue_select(conn, OUTBOX_KIND[segment.entity], sa.select(transitions.c.entity_id).where(recorded))
    await activity.append_select(
        conn,
        sa.select(
            transitions.c.entity,
            transitions.c.entity_id,
            sa.literal("segment.").concat(transitions.c.transition),
            sa.null(),
            activity.details_literal(_details(segment.id, segment.name)),
            transitions.c.at,
        )
        .where(recorded)
        .order_by(transitions.c.id),
    )


def _details(segment_id: int, name: str) -> dict[str, Any]:
    return {"segment": name, "segment_id": segment_id}


async def end(conn: AsyncConnection, segment_id: int, retired: dict[str, Any], now: datetime | None = None) -> int:
    """Delete a segment: every member exits, with a transition (for Segment Exited) and an outbox row (for the
    identify or group that drops it); its transitions keep its name, and `retired` (what the settings said of it
    before the deletion took it out of them) for the exits and any of its transitions not yet sent."""
    now = now or utcnow()
    segment = await locked(conn, segment_id)
    if segment is None:
        return 0
    watermark = await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(transitions.c.id), 0)))
    members = sa.select(memberships.c.entity_id).where(memberships.c.segment_id == segment_id)
    await _insert_transitions(conn, segment, Transition.EXITED, members.subquery(), False, now)
    await _enqueue_recorded(
        conn, segment, sa.and_(transitions.c.segment_id == segment_id, transitions.c.id > watermark)
    )
    await conn.execute(transitions.update().where(transitions.c.segment_id == segment_id).values(retired=retired))
    deleted = await conn.execute(memberships.delete().where(memberships.c.segment_id == segment_id))
    await conn.execute(segments.delete().where(segments.c.id == segment_id))
    log.info("segment.ended", segment_id=segment_id, exited=deleted.rowcount)
    return deleted.rowcount


async def redefine(conn: AsyncConnection, segment_id: int, values: dict[str, Any], now: datetime) -> Any | None:
    """Rename a segment or change its rule; a changed rule recomputes its members, a new name queues every
    member (hull_segments carries names). Returns the segment as it was, or None if there is none."""
    before = await locked(conn, segment_id)
    if before is None:
        return None
    await conn.execute(segments.update().where(segments.c.id == segment_id).values(**values, updated_at=now))
    if values.get("rule", before.rule) != before.rule:
        await recompute(conn, segment_id, now)
    if values.get("name", before.name) != before.name:
        members = sa.select(memberships.c.entity_id).where(memberships.c.segment_id == segment_id)
        await outbox.enqueue_select(conn, OUTBOX_KIND[before.entity], members)
    return before


# --- incremental ------------------------------------------------------------------


async def refresh(conn: AsyncConnection, changes: Changes, now: datetime | None = None) -> None:
    """Re-evaluate, in Python, the profiles a processed batch changed, in its transaction."""
    now = now or utcnow()
    found = await _segments(conn)
    if not found:
        return
    by_entity = {entity: [segment for segment in found if segment.entity == entity] for entity in OUTBOX_KIND}
    user_ids = set(changes.users) - changes.merged_away
    if changes.accounts and any(
        node.get("attribute", "").startswith("account.")
        for segment in by_entity[Entity.USER]
        for node in conditions(segment.rule)
    ):
        user_ids |= set(
            (
                await conn.execute(
                    sa.select(users.c.id).where(any_of(conn, users.c.account_id, sorted(changes.accounts)))
                )
            ).scalars()
        )
    await _refresh_entity(conn, Entity.USER, by_entity[Entity.USER], user_ids, now)
    await _refresh_entity(conn, Entity.ACCOUNT, by_entity[Entity.ACCOUNT], set(changes.accounts), now)


async def _refresh_entity(
    conn: AsyncConnection, entity: Entity, found: list[Any], ids: set[int], now: datetime
) -> None:
    if not found or not ids:
        return
    profiles = await load_profiles(
        conn,
        entity,
        ids,
        event_needs(segment.rule for segment in found),
        now,
        computed=any(uses_computed(segment.rule, entity) for segment in found),
    )
    current = {
        tuple(row)
        for row in await conn.execute(
            sa.select(memberships.c.segment_id, memberships.c.entity_id).where(
                any_of(conn, memberships.c.segment_id, [segment.id for segment in found]),
                any_of(conn, memberships.c.entity_id, sorted(profiles)),
            )
        )
    }
    entered: list[tuple[int, int]] = []
    exited: list[tuple[int, int]] = []
    for segment in found:
        for entity_id, profile in profiles.items():
            member = evaluate(segment.rule, entity, profile, now)
            if member != ((segment.id, entity_id) in current):
                (entered if member else exited).append((segment.id, entity_id))
    await record(conn, entity, {segment.id: segment.name for segment in found}, entered, exited, now)


async def record(
    conn: AsyncConnection,
    entity: Entity,
    names: dict[int, str],
    entered: list[tuple[int, int]],
    exited: list[tuple[int, int]],
    now: datetime,
) -> None:
    """Apply membership changes of (segment id, entity id); write their transitions and outbox rows.

    Safe beside a concurrent refresh of the same profile (another worker's batch, on PostgreSQL): an entry
    already made there fails this insert (a unique violation: the batch is retried and sees it), and an exit
    already made there removes nothing here, so no transition is recorded twice."""
    if exited:  # only what this transaction removed exits: a concurrent refresh may have removed it first
        removed = await conn.execute(
            memberships.delete()
            .where(sa.tuple_(memberships.c.segment_id, memberships.c.entity_id).in_(exited))
            .returning(memberships.c.segment_id, memberships.c.entity_id)
        )
        exited = [(row.segment_id, row.entity_id) for row in removed]
    if not entered and not exited:
        return
    if entered:
        await conn.execute(
            memberships.insert(),
            [
                {"segment_id": segment_id, "entity_id": entity_id, "entered_at": now}
                for segment_id, entity_id in entered
            ],
        )
    rows: list[dict[str, Any]] = [
        {
            "segment_id": segment_id,
            "segment_name": names[segment_id],
            "entity": entity,
            "entity_id": entity_id,
            "transition": kind,
            "initial": False,
            "at": now,
        }
        for kind, pairs in ((Transition.ENTERED, entered), (Transition.EXITED, exited))
        for segment_id, entity_id in pairs
    ]
    ids = (await conn.execute(transitions.insert().returning(transitions.c.id), rows)).scalars().all()
    await activity.append(
        conn,
        [
            activity.entry(
                entity,
                row["entity_id"],
                segment_action(row["transition"]),
                _details(row["segment_id"], row["segment_name"]),
            )
            for row in rows
        ],
        now,
    )
    await outbox.enqueue(conn, OutboxKind.TRANSITION, ids)
    await outbox.enqueue(conn, OUTBOX_KIND[entity], {entity_id for _, entity_id in entered + exited})
    log.info("segment.membership.changed", entity=entity, entered=len(entered), exited=len(exited))


async def merge_users(conn: AsyncConnection, target: int, loser: int) -> None:
    """The survivor takes over the loser's user-segment memberships (the earliest entry wins).

    The batch then re-evaluates the survivor, so each one it does not qualify for ends with an
    `exited` transition: a Segment Entered sent for the loser is always followed by its exit.
    """
    user_segments = sa.select(segments.c.id).where(segments.c.entity == Entity.USER)
    held = sa.select(memberships.c.segment_id).where(memberships.c.entity_id == target)
    await conn.execute(
        memberships.insert().from_select(
            ["segment_id", "entity_id", "entered_at"],
            sa.select(memberships.c.segment_id, sa.literal(target, sa.BigInteger), memberships.c.entered_at).where(
                memberships.c.entity_id == loser,
                memberships.c.segment_id.in_(user_segments),
                memberships.c.segment_id.not_in(held),
            ),
        )
    )
    await conn.execute(
        memberships.delete().where(memberships.c.entity_id == loser, memberships.c.segment_id.in_(user_segments))
    )


async def forget_users(conn: AsyncConnection, user_ids: list[int]) -> dict[str, int]:
    """Erased users leave their segments silently: no transition, nothing sent (processing/privacy.py says why);
    their transitions and the outbox rows of those and of their memberships go too. Counts by what went."""
    user_segments = sa.select(segments.c.id).where(segments.c.entity == Entity.USER)
    mine = sa.and_(memberships.c.entity_id.in_(user_ids), memberships.c.segment_id.in_(user_segments))
    their_transitions = sa.and_(transitions.c.entity == Entity.USER, transitions.c.entity_id.in_(user_ids))
    held = (await conn.execute(sa.select(memberships.c.segment_id, memberships.c.entity_id).where(mine))).all()
    ended = (await conn.execute(sa.select(transitions.c.id).where(their_transitions))).scalars().all()
    keys = [outbox.outbox_key(OutboxKind.TRANSITION, transition_id) for transition_id in ended]
    keys += [outbox.outbox_key(OutboxKind.MEMBER, outbox.member_key(*row)) for row in held]
    return {
        "segments": (await conn.execute(memberships.delete().where(mine))).rowcount,
        "transitions": (await conn.execute(transitions.delete().where(their_transitions))).rowcount,
        "outbox": await outbox.discard(conn, keys),
    }
