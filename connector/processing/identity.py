"""Identity resolution: which profile a message belongs to, and merges.

A message resolves to the profile holding any of its identifiers, or creates one.
A message that links several profiles merges them into one, except where that
would join two different user_ids: those are never merged and a conflict is audited.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncConnection

from connector import activity
from connector.computed import merge_users as merge_computed
from connector.db import insert
from connector.models import DeliveryState, Event, IdentityAudit, Segment, SegmentMembership, User, UserIdentifier
from connector.processing.accounts import stronger_link
from connector.processing.traits import merge_traits
from connector.spec import clean_id

USER_ID, ANONYMOUS_ID, EMAIL = "user_id", "anonymous_id", "email"
PREVIOUS_USER_ID = "previous_user_id"  # a user_id the profile was renamed from by an alias: still resolves to it
Claim = tuple[str, str]

users = User.__table__
identifiers = UserIdentifier.__table__
events = Event.__table__
audit = IdentityAudit.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
delivered = DeliveryState.__table__


def normalise_email(value: Any) -> str | None:
    if not isinstance(value, str) or "@" not in value:
        return None
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def message_email(message: dict[str, Any]) -> str | None:
    traits = message.get("traits") or (message.get("context") or {}).get("traits") or {}
    return normalise_email(traits.get("email")) if isinstance(traits, dict) else None


def claims_of(message: dict[str, Any], identify_by_email: bool) -> list[Claim]:
    claims: list[Claim] = []
    if user_id := clean_id(message.get("userId")):
        claims.append((USER_ID, user_id))
    if anonymous_id := clean_id(message.get("anonymousId")):
        claims.append((ANONYMOUS_ID, anonymous_id))
    if identify_by_email and (email := message_email(message)):
        claims.append((EMAIL, email))
    return claims


async def lookup(conn: AsyncConnection, claims: list[Claim]) -> dict[Claim, int]:
    """The owner of each claim that has one; a user_id claim also finds the profile renamed from it."""
    if not claims:
        return {}
    wanted = claims + [(PREVIOUS_USER_ID, value) for kind, value in claims if kind == USER_ID]
    rows = await conn.execute(
        sa.select(identifiers.c.kind, identifiers.c.value, identifiers.c.user_id).where(
            sa.tuple_(identifiers.c.kind, identifiers.c.value).in_(wanted)
        )
    )
    found: dict[Claim, int] = {}
    renamed: dict[Claim, int] = {}
    for row in rows:
        if row.kind == PREVIOUS_USER_ID:
            renamed[(USER_ID, row.value)] = row.user_id
        else:
            found[(row.kind, row.value)] = row.user_id
    return {**renamed, **found}


async def rename_user_id(
    conn: AsyncConnection, user_id: int, previous: str, new: str, message_id: str, now: datetime
) -> bool:
    """The Spec's way to change a user's id: alias from the profile's userId to one nobody holds.

    The profile takes the new user_id and keeps the old one as previous_user_id, so messages
    for the old id still reach it. False (nothing done) unless `previous` is its current user_id.
    """
    renamed = await conn.execute(
        identifiers.update()
        .where(identifiers.c.user_id == user_id, identifiers.c.kind == USER_ID, identifiers.c.value == previous)
        .values(kind=PREVIOUS_USER_ID)
    )
    if renamed.rowcount != 1:
        return False
    await conn.execute(identifiers.insert().values(user_id=user_id, kind=USER_ID, value=new, created_at=now))
    await conn.execute(
        audit.insert().values(
            action="rename",
            kept_user_id=user_id,
            merged_user_id=None,
            message_id=message_id,
            details={"previous_user_id": previous, "user_id": new},
            created_at=now,
        )
    )
    return True


async def resolve(
    conn: AsyncConnection,
    claims: list[Claim],
    now: datetime,
    message_id: str,
    found: dict[Claim, int] | None = None,
    before_merge: Callable[[], Awaitable[None]] | None = None,
) -> tuple[int, set[int]]:
    """Return (the profile for these claims, the profiles merged away into it).

    `found` is the owners of the claims when the caller already knows them (a claim
    missing from it has no owner); `before_merge` runs once before the first merge, for
    a caller that buffers writes the merge must see.
    """
    if found is None:
        found = await lookup(conn, claims)
    owners = list(dict.fromkeys(found[claim] for claim in claims if claim in found))
    claimed_user_id = next((value for kind, value in claims if kind == USER_ID), None)
    held = await _held_user_ids(conn, owners)

    if claimed_user_id and (USER_ID, claimed_user_id) in found:
        target: int | None = found[(USER_ID, claimed_user_id)]
    elif claimed_user_id:
        free = [owner for owner in owners if owner not in held]
        target = min(free) if free else None
    else:
        holders = [owner for owner in owners if owner in held]
        target = holders[0] if holders else (min(owners) if owners else None)
    if target is None:
        target = await create_user(conn, now)

    effective = held.get(target) or claimed_user_id
    merged, conflicts = [], []
    for owner in owners:
        if owner == target:
            continue
        (conflicts if owner in held and held[owner] != effective else merged).append(owner)
    if merged and before_merge is not None:
        await before_merge()
    for loser in merged:
        await merge_users(conn, target, loser, message_id, now)
    if conflicts:
        await conn.execute(
            audit.insert().values(
                action="conflict",
                kept_user_id=target,
                merged_user_id=None,
                message_id=message_id,
                details={
                    "reason": "different user_ids",
                    "user_ids": sorted({held[c] for c in conflicts} | {effective}),
                    "profiles": sorted(conflicts),
                },
                created_at=now,
            )
        )
    missing = [claim for claim in claims if claim not in found]
    if missing:
        await conn.execute(
            insert(identifiers, conn.dialect.name).on_conflict_do_nothing(),
            [{"user_id": target, "kind": kind, "value": value, "created_at": now} for kind, value in missing],
        )
    return target, set(merged)


async def _held_user_ids(conn: AsyncConnection, owners: list[int]) -> dict[int, str]:
    if not owners:
        return {}
    rows = await conn.execute(
        sa.select(identifiers.c.user_id, identifiers.c.value).where(
            identifiers.c.user_id.in_(owners), identifiers.c.kind == USER_ID
        )
    )
    return {row.user_id: row.value for row in rows}


async def create_user(conn: AsyncConnection, now: datetime) -> int:
    result = await conn.execute(
        users.insert().values(traits={}, trait_timestamps={}, created_at=now, updated_at=now).returning(users.c.id)
    )
    return result.scalar_one()


async def _move_memberships(conn: AsyncConnection, target: int, loser: int) -> None:
    """The survivor takes over the loser's user-segment memberships (the earliest entry wins).

    The batch then re-evaluates the survivor, so each one it does not qualify for ends with an
    `exited` transition: a Segment Entered sent for the loser is always followed by its exit.
    """
    user_segments = sa.select(segments.c.id).where(segments.c.entity == "user")
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


async def _merge_delivered(conn: AsyncConnection, target: int, loser: int) -> None:
    """What Segment was told about the loser is now told about the survivor (Segment merges them too):
    the survivor's next identify or group says `false` for whatever the loser was last sent in."""
    rows = {
        row.key: row
        for row in await conn.execute(
            sa.select(delivered).where(
                delivered.c.key.in_(
                    [f"{kind}:{user_id}" for kind in ("identify", "group") for user_id in (target, loser)]
                )
            )
        )
    }
    for kind in ("identify", "group"):
        gone = rows.get(f"{kind}:{loser}")
        if gone is None:
            continue
        kept = rows.get(f"{kind}:{target}")
        told = sorted(set(gone.segments) | set(kept.segments if kept else []))
        in_filter = gone.in_filter or (kept is not None and kept.in_filter)
        # An empty hash matches no payload: the survivor's next call is sent.
        values = {"payload_hash": "", "segments": told, "in_filter": in_filter, "delivered_at": gone.delivered_at}
        if kept is None:
            await conn.execute(delivered.insert().values(key=f"{kind}:{target}", **values))
        else:
            await conn.execute(delivered.update().where(delivered.c.key == f"{kind}:{target}").values(**values))
        await conn.execute(delivered.delete().where(delivered.c.key == gone.key))


async def merge_users(conn: AsyncConnection, target: int, loser: int, message_id: str, now: datetime) -> None:
    """Fold `loser` into `target` in the caller's transaction, and audit it."""
    rows = {row.id: row for row in await conn.execute(sa.select(users).where(users.c.id.in_([target, loser])))}
    kept, gone = rows[target], rows[loser]
    traits, stamps = dict(kept.traits), dict(kept.trait_timestamps)
    merge_traits(traits, stamps, gone.traits, gone.trait_timestamps)
    moved = [
        f"{row.kind}:{row.value}"
        for row in await conn.execute(
            sa.select(identifiers.c.kind, identifiers.c.value).where(identifiers.c.user_id == loser)
        )
    ]
    await conn.execute(identifiers.update().where(identifiers.c.user_id == loser).values(user_id=target))
    await conn.execute(events.update().where(events.c.user_id == loser).values(user_id=target))
    await activity.move(conn, activity.USER, loser, target)
    await _move_memberships(conn, target, loser)
    await _merge_delivered(conn, target, loser)
    last_seen = max((t for t in (kept.last_seen_at, gone.last_seen_at) if t is not None), default=None)
    link = stronger_link(kept, gone)
    await conn.execute(
        users.update()
        .where(users.c.id == target)
        .values(
            traits=traits,
            trait_timestamps=stamps,
            created_at=min(kept.created_at, gone.created_at),
            updated_at=now,
            last_seen_at=last_seen,
            account_id=link.account_id,
            account_link=link.account_link,
            account_linked_at=link.account_linked_at,
        )
    )
    await merge_computed(conn, target, loser)
    await conn.execute(users.delete().where(users.c.id == loser))
    await conn.execute(
        audit.insert().values(
            action="merge",
            kept_user_id=target,
            merged_user_id=loser,
            message_id=message_id,
            details={"identifiers": moved},
            created_at=now,
        )
    )
