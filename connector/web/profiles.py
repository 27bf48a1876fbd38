"""Read models for the admin API: a user's or an account's profile as JSON.

A profile carries its computed attributes under the names segment rules and outbound mappings use:
`usage` (with `pattern`) on both, `persona` (seniority, department) and `audiences` on a user, `icp`
(score, fit) on an account; a scanner's value is null when absent.
"""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.computed import computed_attributes
from connector.models import Account, Event, Segment, SegmentMembership, User, UserIdentifier
from connector.processing.identity import PREVIOUS_USER_ID, USER_ID
from connector.spec import format_timestamp

users = User.__table__
identifiers = UserIdentifier.__table__
accounts = Account.__table__
events = Event.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
RECENT_EVENTS = 20
TABLES = {"user": users, "account": accounts}


async def exists(conn: AsyncConnection, entity: str, entity_id: int) -> bool:
    table = TABLES[entity]
    return await conn.scalar(sa.select(table.c.id).where(table.c.id == entity_id)) is not None


async def find_user(conn: AsyncConnection, kind: str, value: str) -> int | None:
    """The profile holding the identifier; a user_id also finds the profile an alias renamed from it."""
    kinds = (kind, PREVIOUS_USER_ID) if kind == USER_ID else (kind,)
    found = await conn.scalar(
        sa.select(identifiers.c.user_id)
        .where(identifiers.c.kind.in_(kinds), identifiers.c.value == value)
        .order_by(sa.case((identifiers.c.kind == kind, 0), else_=1))
        .limit(1)
    )
    if found is None and kind == "email":
        found = await conn.scalar(
            sa.select(users.c.id)
            .where(sa.func.lower(users.c.traits["email"].as_string()) == value.lower())
            .order_by(users.c.id)
            .limit(1)
        )
    return found


async def find_account(conn: AsyncConnection, kind: str, value: str) -> int | None:
    column = accounts.c.group_id if kind == "group_id" else accounts.c.domain
    return await conn.scalar(sa.select(accounts.c.id).where(column == value))


async def segment_names(conn: AsyncConnection, entity: str, entity_id: int) -> list[str]:
    rows = await conn.execute(
        sa.select(segments.c.name)
        .join(memberships, memberships.c.segment_id == segments.c.id)
        .where(segments.c.entity == entity, memberships.c.entity_id == entity_id)
        .order_by(segments.c.name)
    )
    return [row.name for row in rows]


async def account_profile(conn: AsyncConnection, account_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(accounts).where(accounts.c.id == account_id))).first()
    if row is None:
        return None
    computed = await computed_attributes(conn, "account", row.id)
    return {
        "id": row.id,
        "group_id": row.group_id,
        "domain": row.domain,
        "traits": row.traits,
        "icp": computed["icp"],
        "usage": computed["usage"],
        "created_at": format_timestamp(row.created_at),
        "updated_at": format_timestamp(row.updated_at),
        "segments": await segment_names(conn, "account", row.id),
    }


async def user_profile(conn: AsyncConnection, user_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
    if row is None:
        return None
    ids: dict[str, list[str]] = {"user_id": [], "anonymous_id": [], "email": []}
    for ident in await conn.execute(
        sa.select(identifiers.c.kind, identifiers.c.value)
        .where(identifiers.c.user_id == user_id)
        .order_by(identifiers.c.id)
    ):
        ids.setdefault(ident.kind, []).append(ident.value)
    computed = await computed_attributes(conn, "user", row.id)
    return {
        "id": row.id,
        "user_id": ids["user_id"][0] if ids["user_id"] else None,
        "identifiers": ids,
        "traits": row.traits,
        "persona": computed["persona"],
        "usage": computed["usage"],
        "audiences": computed["audiences"],
        "account": await account_profile(conn, row.account_id) if row.account_id else None,
        "account_link": row.account_link,
        "segments": await segment_names(conn, "user", row.id),
        "created_at": format_timestamp(row.created_at),
        "updated_at": format_timestamp(row.updated_at),
        "last_seen_at": format_timestamp(row.last_seen_at) if row.last_seen_at else None,
        "recent_events": await user_events(conn, user_id, RECENT_EVENTS),
    }


async def user_events(
    conn: AsyncConnection, user_id: int, limit: int, before_id: int | None = None
) -> list[dict[str, Any]]:
    query = sa.select(events).where(events.c.user_id == user_id)
    if before_id is not None:
        # Pages follow the sort order (timestamp, then id), so late-arriving events are neither skipped nor repeated.
        cursor = sa.select(events.c.timestamp).where(events.c.id == before_id).scalar_subquery()
        query = query.where(
            sa.or_(events.c.timestamp < cursor, sa.and_(events.c.timestamp == cursor, events.c.id < before_id))
        )
    rows = await conn.execute(query.order_by(events.c.timestamp.desc(), events.c.id.desc()).limit(limit))
    return [serialise_event(row) for row in rows]


def serialise_event(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "message_id": row.message_id,
        "type": row.type,
        "event": row.event,
        "source": row.source,
        "timestamp": format_timestamp(row.timestamp),
        "received_at": format_timestamp(row.received_at),
        "properties": row.properties,
        "context": row.context,
    }
