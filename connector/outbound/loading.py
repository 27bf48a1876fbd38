"""Everything one claim's messages are built from, loaded into rows.ClaimRows with one query per table, so
building keeps up with sending. Membership is read straight from segments / segment_memberships /
segment_transitions."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import any_of
from connector.core.kinds import Entity, OutboxKind
from connector.core.models import (
    Account,
    DeliveryState,
    Event,
    Segment,
    SegmentMembership,
    SegmentTransition,
    User,
    UserIdentifier,
    utcnow,
)
from connector.core.settings import COMPUTED_ROOTS, ConnectorSettings, Mapping, Property, source_of
from connector.outbound.delivery_state import SEGMENT_EVENT_STATE, delivery_keys, segment_state_key
from connector.outbound.rows import ClaimRows, Delivered, rule_attribute
from connector.outbound.segment_events import followed_by, timestamp_entries
from connector.outbound.traits import membership_traits
from connector.profile import computed
from connector.profile.attributes import EventNeeds, load_profiles

users = User.__table__
identifiers = UserIdentifier.__table__
accounts = Account.__table__
events = Event.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
transitions = SegmentTransition.__table__
delivery_state = DeliveryState.__table__


async def load(
    conn: AsyncConnection, settings: ConnectorSettings, ids: dict[str, list[int]], members: list[tuple[int, int]]
) -> ClaimRows:
    """The rows of the outbox rows `ids` (entity ids by outbox kind) and of a resync's `members` ((segment id,
    entity id) pairs), with the profiles, memberships and delivery state their messages read."""
    data = ClaimRows()
    await _load_claimed(conn, settings, data, ids, members)
    user_ids, account_ids = _concerned(settings, data, ids, members)
    if account_ids:
        await _load_account_users(conn, data, account_ids)
        user_ids |= {user_id for linked in data.account_users.values() for user_id in linked}
    if user_ids:
        await _load_users(conn, data, user_ids)
    account_ids |= {row.account_id for row in data.users.values() if row.account_id}
    if account_ids:
        data.accounts = await _accounts(conn, account_ids)
    await _load_segments_of(conn, settings, data, user_ids, account_ids)
    await _load_delivered(conn, data)
    await _load_followed_accounts(conn, data)
    await _load_computed(conn, settings, data)
    await _load_profiles(conn, settings, data)
    return data


async def _load_claimed(
    conn: AsyncConnection,
    settings: ConnectorSettings,
    data: ClaimRows,
    ids: dict[str, list[int]],
    members: list[tuple[int, int]],
) -> None:
    """The events, transitions and resync memberships claimed, and the segments segment_events follow."""
    if ids[OutboxKind.EVENT]:
        query = sa.select(events).where(any_of(conn, events.c.id, ids[OutboxKind.EVENT]))
        data.events = {row.id: row for row in await conn.execute(query)}
    if ids[OutboxKind.TRANSITION]:
        query = sa.select(transitions).where(any_of(conn, transitions.c.id, ids[OutboxKind.TRANSITION]))
        data.transitions = {row.id: row for row in await conn.execute(query)}
    if settings.segment_events:
        query = sa.select(segments.c.id, segments.c.name, segments.c.entity).where(
            any_of(conn, segments.c.name, [entry.segment for entry in settings.segment_events])
        )
        data.segments = {row.name: row for row in await conn.execute(query)}
    if members:
        # The segments' rows of these entities, then the pairs asked for: array parameters, where a
        # (segment, entity) IN list would be a statement text of its own for each claim's size.
        wanted = set(members)
        query = sa.select(memberships.c.segment_id, memberships.c.entity_id, memberships.c.entered_at).where(
            any_of(conn, memberships.c.segment_id, sorted({segment_id for segment_id, _ in wanted})),
            any_of(conn, memberships.c.entity_id, sorted({entity_id for _, entity_id in wanted})),
        )
        data.members = {
            (row.segment_id, row.entity_id): row.entered_at
            for row in await conn.execute(query)
            if (row.segment_id, row.entity_id) in wanted
        }


def _concerned(
    settings: ConnectorSettings, data: ClaimRows, ids: dict[str, list[int]], members: list[tuple[int, int]]
) -> tuple[set[int], set[int]]:
    """The users and accounts the claimed rows are about (before the users of those accounts)."""
    entity_of = {row.id: row.entity for row in data.segments.values()}
    user_ids = set(ids[OutboxKind.USER]) | {row.user_id for row in data.events.values()}
    user_ids |= {row.entity_id for row in data.transitions.values() if row.entity == Entity.USER}
    user_ids |= {entity_id for segment_id, entity_id in members if entity_of.get(segment_id) == Entity.USER}
    # Segment events of an account segment go to each user of the account.
    account_ids = set(ids[OutboxKind.ACCOUNT])
    if settings.segment_events or any(row.retired for row in data.transitions.values()):
        account_ids |= {row.entity_id for row in data.transitions.values() if row.entity == Entity.ACCOUNT}
        account_ids |= {entity_id for segment_id, entity_id in members if entity_of.get(segment_id) == Entity.ACCOUNT}
    return user_ids, account_ids


async def _load_account_users(conn: AsyncConnection, data: ClaimRows, account_ids: set[int]) -> None:
    query = sa.select(users.c.id, users.c.account_id).where(any_of(conn, users.c.account_id, sorted(account_ids)))
    for row in await conn.execute(query):
        data.account_users[row.account_id].append(row.id)


async def _load_users(conn: AsyncConnection, data: ClaimRows, user_ids: set[int]) -> None:
    """The users, and the first user_id and anonymous_id of each (the ids its messages name it by)."""
    query = sa.select(
        users.c.id, users.c.traits, users.c.account_id, users.c.account_linked_at, users.c.updated_at
    ).where(any_of(conn, users.c.id, sorted(user_ids)))
    data.users = {row.id: row for row in await conn.execute(query)}
    for identifier in await conn.execute(
        sa.select(identifiers.c.user_id, identifiers.c.kind, identifiers.c.value)
        .where(
            any_of(conn, identifiers.c.user_id, sorted(user_ids)), identifiers.c.kind.in_(("user_id", "anonymous_id"))
        )
        .order_by(identifiers.c.id)
    ):
        target = data.user_ids if identifier.kind == "user_id" else data.anonymous_ids
        target.setdefault(identifier.user_id, identifier.value)


async def _accounts(conn: AsyncConnection, account_ids: set[int]) -> dict[int, Any]:
    query = sa.select(
        accounts.c.id, accounts.c.group_id, accounts.c.domain, accounts.c.traits, accounts.c.updated_at
    ).where(any_of(conn, accounts.c.id, sorted(account_ids)))
    return {row.id: row for row in await conn.execute(query)}


async def _load_segments_of(
    conn: AsyncConnection, settings: ConnectorSettings, data: ClaimRows, user_ids: set[int], account_ids: set[int]
) -> None:
    """The segments each profile is in, the membership traits when they are sent, and whether any account
    segment exists (a group call carries hull_segments only then)."""
    for entity, entity_ids in ((Entity.USER, user_ids), (Entity.ACCOUNT, account_ids)):
        if entity_ids:
            for row in await conn.execute(
                sa.select(memberships.c.entity_id, segments.c.name)
                .join(segments, segments.c.id == memberships.c.segment_id)
                .where(segments.c.entity == entity, any_of(conn, memberships.c.entity_id, sorted(entity_ids)))
            ):
                data.segment_names[(entity, row.entity_id)].add(row.name)
    if settings.segment_membership_traits:
        query = sa.select(segments.c.id, segments.c.name).where(segments.c.entity == Entity.USER)
        data.membership_traits = membership_traits((row.id, row.name) for row in await conn.execute(query))
    data.account_segments_known = bool(
        await conn.scalar(sa.select(sa.func.count()).select_from(segments).where(segments.c.entity == Entity.ACCOUNT))
    )


async def _load_delivered(conn: AsyncConnection, data: ClaimRows) -> None:
    """What Segment last received: each user's identify and group, and its followed memberships' events."""
    state_keys = delivery_keys(list(data.users))
    state_keys += [segment_state_key(user_id, row.id) for user_id in data.users for row in data.segments.values()]
    if not state_keys:
        return
    query = sa.select(
        delivery_state.c.key,
        delivery_state.c.payload_hash,
        delivery_state.c.segments,
        delivery_state.c.in_filter,
        delivery_state.c.delivered_at,
        delivery_state.c.account_id,
    ).where(any_of(conn, delivery_state.c.key, state_keys))
    data.delivered = {
        row.key: Delivered(row.payload_hash, row.segments, row.in_filter, row.delivered_at, row.account_id)
        for row in await conn.execute(query)
    }


async def _load_followed_accounts(conn: AsyncConnection, data: ClaimRows) -> None:
    """For the account segments segment_events follow: the accounts users were last followed through (a user who
    moved away is sent its removed with that account's properties) and when each account entered them."""
    account_segments = [row.id for row in data.segments.values() if row.entity == Entity.ACCOUNT]
    if not account_segments:
        return
    through = {
        state.account_id
        for key, state in data.delivered.items()
        if key.startswith(SEGMENT_EVENT_STATE)
        and state.account_id is not None
        and state.account_id not in data.accounts
    }
    if through:
        data.accounts |= await _accounts(conn, through)
    if data.accounts:
        data.entered = {
            (row.segment_id, row.entity_id): row.entered_at
            for row in await conn.execute(
                sa.select(memberships.c.segment_id, memberships.c.entity_id, memberships.c.entered_at).where(
                    any_of(conn, memberships.c.segment_id, account_segments),
                    any_of(conn, memberships.c.entity_id, sorted(data.accounts)),
                )
            )
        }


def _wanted(settings: ConnectorSettings, data: ClaimRows) -> dict[Entity, list[Property]]:
    """The entries read per entity: synchronized properties and the segment events' properties and timestamps."""
    wanted: dict[Entity, list[Property]] = {
        Entity.USER: list(settings.synchronized_properties),
        Entity.ACCOUNT: settings.synchronized_account_properties
        + [source_of(entry).removeprefix("account.") for entry in settings.synchronized_properties],
    }
    followed = [
        (segment.entity, entry)
        for entry in settings.segment_events
        if (segment := data.segments.get(entry.segment)) is not None
    ]
    # A deleted segment is known only by its transitions (they keep its name, entity and retired entry).
    entries = {entry.segment: entry for entry in settings.segment_events}
    for row in data.transitions.values():
        if (entry := followed_by(row, entries)) is not None and (row.entity, entry) not in followed:
            followed.append((row.entity, entry))
    for entity, entry in followed:
        wanted[entity] += entry.properties + timestamp_entries(entry)
    return wanted


def wants_computed(entries: list[Property]) -> bool:
    """Whether any entry reads a computed attribute (usage.*, audiences.*, persona.*, icp.*)."""
    return any(source_of(entry).startswith(COMPUTED_ROOTS) for entry in entries)


async def _load_computed(conn: AsyncConnection, settings: ConnectorSettings, data: ClaimRows) -> None:
    """Computed attributes (usage.*, audiences.*, persona.*, icp.*), only when the outbound settings ask for them."""
    wanted = _wanted(settings, data)
    for entity, entity_ids in ((Entity.USER, sorted(data.users)), (Entity.ACCOUNT, sorted(data.accounts))):
        if entity_ids and wants_computed(wanted[entity]):
            for entity_id, values in (await computed.computed_attributes_of(conn, entity, entity_ids)).items():
                data.computed[(entity, entity_id)] = computed.as_json(values)


async def _load_profiles(conn: AsyncConnection, settings: ConnectorSettings, data: ClaimRows) -> None:
    """The profiles as segment rules see them, only when a mapping reads an attribute that way."""
    for entity, entries in _wanted(settings, data).items():
        read = [
            found
            for entry in entries
            if isinstance(entry, Mapping) and (found := rule_attribute(entity, entry.source)) is not None
        ]
        entity_ids = data.users if entity == Entity.USER else data.accounts
        if read and entity_ids:
            profiles = await load_profiles(
                conn,
                entity,
                entity_ids,
                EventNeeds(),
                utcnow(),
                computed=any(attribute.computed for attribute, _ in read),
            )
            data.profiles.update({(entity, entity_id): profile for entity_id, profile in profiles.items()})
