"""Read models for the admin API: a user's or an account's profile as JSON.

A profile carries its computed attributes under the names segment rules and outbound mappings use:
`usage` (with `pattern`) on both, `persona` (seniority, department) and `audiences` on a user, `icp`
(score, fit) on an account; a scanner's value is null when absent.
"""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.kinds import Entity
from connector.core.models import (
    Account,
    AfterAt,
    EmailTrait,
    Event,
    Segment,
    SegmentMembership,
    User,
    UserIdentifier,
)
from connector.core.spec import format_timestamp
from connector.processing.identity import ANONYMOUS_ID, EMAIL, PREVIOUS_USER_ID, USER_ID
from connector.profile.computed import computed_attributes

users = User.__table__
identifiers = UserIdentifier.__table__
accounts = Account.__table__
events = Event.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
RECENT_EVENTS = 20
SEARCH_LIMIT = 20
TABLES = {Entity.USER: users, Entity.ACCOUNT: accounts}
# The highest code point: `value < prefix + LAST` holds for every string starting with prefix, so a prefix
# search is a range of the (kind, value) index on both backends (SQLite's LIKE would ignore the index).
LAST = "\U0010ffff"


async def exists(conn: AsyncConnection, entity: Entity, entity_id: int) -> bool:
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


async def segment_memberships(conn: AsyncConnection, entity: Entity, entity_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(segments.c.id, segments.c.name, memberships.c.entered_at)
        .join(memberships, memberships.c.segment_id == segments.c.id)
        .where(segments.c.entity == entity, memberships.c.entity_id == entity_id)
        .order_by(segments.c.name)
    )
    return [{"id": row.id, "name": row.name, "entered_at": format_timestamp(row.entered_at)} for row in rows]


def _profile_times(row: Any) -> dict[str, Any]:
    return {
        "traits": row.traits,
        # When each trait was set: its message's normalised timestamp, already in the API's one format.
        "trait_timestamps": row.trait_timestamps,
        "created_at": format_timestamp(row.created_at),
        "updated_at": format_timestamp(row.updated_at),
    }


async def account_profile(conn: AsyncConnection, account_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(accounts).where(accounts.c.id == account_id))).first()
    if row is None:
        return None
    joined = await segment_memberships(conn, Entity.ACCOUNT, row.id)
    computed = await computed_attributes(conn, Entity.ACCOUNT, row.id)
    return {
        "id": row.id,
        "group_id": row.group_id,
        "domain": row.domain,
        **_profile_times(row),
        "segments": [membership["name"] for membership in joined],
        "memberships": joined,
        "icp": computed["icp"],
        "usage": computed["usage"],
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
    joined = await segment_memberships(conn, Entity.USER, row.id)
    computed = await computed_attributes(conn, Entity.USER, row.id)
    return {
        "id": row.id,
        "user_id": ids["user_id"][0] if ids["user_id"] else None,
        "identifiers": ids,
        **_profile_times(row),
        "persona": computed["persona"],
        "usage": computed["usage"],
        "audiences": computed["audiences"],
        "account": await account_profile(conn, row.account_id) if row.account_id else None,
        "account_link": row.account_link,
        "segments": [membership["name"] for membership in joined],
        "memberships": joined,
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


async def search_users(conn: AsyncConnection, text: str) -> list[dict[str, Any]]:
    """Users holding a user_id or anonymous_id that starts with `text`, or an email (an identifier, or the email
    trait when identify_by_email is off) that starts with it or whose part after the @ does (emails in any case;
    a leading @ names the domain only: "acme" and "@acme" find bob@acme.com). Each way is a range of one index
    (the identifiers' (kind, value), ix_users_email_trait, ix_users_email_trait_domain,
    ix_user_identifiers_email_domain), read in its order up to SEARCH_LIMIT; the first SEARCH_LIMIT users by id
    of what they found."""
    lowered = text.lower()
    kinds = ((USER_ID, text), (PREVIOUS_USER_ID, text), (ANONYMOUS_ID, text), (EMAIL, lowered))
    value = identifiers.c.value
    starting = [sa.and_(identifiers.c.kind == kind, value >= start, value < start + LAST) for kind, start in kinds]
    found = set(
        await conn.scalars(
            sa.select(identifiers.c.user_id)
            .where(sa.or_(*starting))
            .group_by(identifiers.c.user_id)
            .order_by(identifiers.c.user_id)
            .limit(SEARCH_LIMIT)
        )
    )
    email_trait = EmailTrait(users.c.traits)
    ranges: list[tuple[sa.Select[Any], Any, str]] = [(sa.select(users.c.id), email_trait, lowered)]
    domain = lowered.removeprefix("@")
    if domain and "@" not in domain:
        # The kind as a literal: the partial index's own condition, which each backend's planner must see.
        email_identifiers = sa.select(identifiers.c.user_id).where(identifiers.c.kind == sa.literal_column("'email'"))
        ranges += [(sa.select(users.c.id), AfterAt(email_trait), domain), (email_identifiers, AfterAt(value), domain)]
    for query, indexed, start in ranges:
        found |= set(
            await conn.scalars(
                query.where(indexed >= start, indexed < start + LAST).order_by(indexed).limit(SEARCH_LIMIT)
            )
        )
    return await user_summaries(conn, sorted(found)[:SEARCH_LIMIT])


async def user_summaries(conn: AsyncConnection, user_ids: list[int]) -> list[dict[str, Any]]:
    """A line per user for lists: id, user_id, anonymous_id, email (the first of each; the email trait when
    no email is an identifier), last seen."""
    held: dict[int, dict[str, str]] = {user_id: {} for user_id in user_ids}
    for row in await conn.execute(
        sa.select(identifiers.c.user_id, identifiers.c.kind, identifiers.c.value)
        .where(identifiers.c.user_id.in_(user_ids), identifiers.c.kind.in_((USER_ID, ANONYMOUS_ID, EMAIL)))
        .order_by(identifiers.c.id)
    ):
        held[row.user_id].setdefault(row.kind, row.value)
    email = users.c.traits["email"].as_string()
    rows = {
        row.id: row
        for row in await conn.execute(
            sa.select(users.c.id, users.c.last_seen_at, email.label("email")).where(users.c.id.in_(user_ids))
        )
    }
    return [
        {
            "id": user_id,
            "user_id": held[user_id].get(USER_ID),
            "anonymous_id": held[user_id].get(ANONYMOUS_ID),
            "email": held[user_id].get(EMAIL) or rows[user_id].email,
            "last_seen_at": format_timestamp(rows[user_id].last_seen_at) if rows[user_id].last_seen_at else None,
        }
        for user_id in user_ids
        if user_id in rows
    ]


async def account_users(
    conn: AsyncConnection, account_id: int, limit: int, before_id: int | None
) -> list[dict[str, Any]]:
    """The users linked to an account, newest profile first (by id, below `before_id` when given), as lines
    of user_summaries: a range of ix_users_account_id."""
    query = sa.select(users.c.id).where(users.c.account_id == account_id)
    if before_id is not None:
        query = query.where(users.c.id < before_id)
    found = list(await conn.scalars(query.order_by(users.c.id.desc()).limit(limit)))
    return await user_summaries(conn, found)


async def search_accounts(conn: AsyncConnection, text: str) -> list[dict[str, Any]]:
    """Accounts whose group_id starts with `text` or whose domain starts with it (in any case)."""
    domain = text.lower()
    found = await conn.scalars(
        sa.select(accounts.c.id)
        .where(
            sa.or_(
                sa.and_(accounts.c.group_id >= text, accounts.c.group_id < text + LAST),
                sa.and_(accounts.c.domain >= domain, accounts.c.domain < domain + LAST),
            )
        )
        .order_by(accounts.c.id)
        .limit(SEARCH_LIMIT)
    )
    return await account_summaries(conn, list(found))


async def account_summaries(conn: AsyncConnection, account_ids: list[int]) -> list[dict[str, Any]]:
    """A line per account for lists: id, group_id, domain, its name trait."""
    rows = await conn.execute(
        sa.select(accounts.c.id, accounts.c.group_id, accounts.c.domain, accounts.c.traits)
        .where(accounts.c.id.in_(account_ids))
        .order_by(accounts.c.id)
    )
    return [
        {"id": row.id, "group_id": row.group_id, "domain": row.domain, "name": row.traits.get("name")} for row in rows
    ]
