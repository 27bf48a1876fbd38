"""Build the Segment messages for a claim of outbox rows, from the data as it is now.

Everything a claim needs is loaded with one query per table, so building keeps up
with sending. Membership is read straight from segments / segment_memberships /
segment_transitions.

What Segment holds is what we last delivered (delivery_state), so membership there
stays true: a segment that Segment was told about and that the user is no longer in
(left, renamed or deleted) is sent as `false`; a user (or account) who leaves the
outbound filter gets one last identify (group) saying so, and nothing more until back.

Each message and each skipped outbox row names the profile it concerns (the user, and
for a group the account too), for the activity log the sender writes; the admin API's
"what would be sent" is `build` itself.

A property entry is an attribute name read by Hull's rule, or a mapping whose `from` is read
as segment rules read it (connector/profile/attributes.py: any root there is mappable) and, when it
names no such attribute, by Hull's rule.

Segment events (`segment_events`, Hightouch's generic track) follow a member of a segment:
`added` from its `entered` transition (or a resync's `member:` row), `removed` from its
`exited` one, `changed` when the mapped properties differ from those Segment last received for
that membership. That last payload is a delivery_state row `segment_event:<user>:<segment>`,
written when an added or changed is delivered, and for every current member when an entry is
saved (resync.follow_members: a member from before the entry is measured from what it held
then); a member seen with no such row (an initial member) gets it as a baseline without an
event, and an exit forgets it, so a member never gets `changed` for what came before it was
followed. In an account segment the row also names the account the user is followed through:
a user who joins a member account gets `added`, one who leaves it `removed`, one who moves
between member accounts `changed` (_Followed._through_account).
Message ids are derived from the transition (segment, user, kind, time of the membership
change; in an account segment, the later of the account's entry and the user's link, and for
a removed the record it ends), so a resend is the same message and enter, leave, enter are
three; a `changed` from the payloads before and after and the time the one before was recorded.
"""

import functools
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.kinds import OutboxKind
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
from connector.core.settings import (
    ALL,
    COMPUTED_ROOTS,
    ConnectorSettings,
    Mapping,
    Property,
    SegmentEvents,
    sent_name,
    source_of,
)
from connector.core.spec import SpecError, format_timestamp, parse_timestamp
from connector.flow.outbox import (
    GROUP_STATE,
    IDENTIFY_STATE,
    SEGMENT_EVENT_STATE,
    delivery_key,
    delivery_keys,
    segment_state_key,
)
from connector.outbound.guard import payload_hash, stamp
from connector.outbound.traits import membership_traits, trait_of
from connector.profile import computed
from connector.profile.attributes import MISSING, Attribute, EventNeeds, load_profiles, resolve_attribute

users = User.__table__
identifiers = UserIdentifier.__table__
accounts = Account.__table__
events = Event.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
transitions = SegmentTransition.__table__
delivery_state = DeliveryState.__table__

MESSAGE_ID_PREFIX = "hsc"
UNCHANGED = "unchanged"  # the reason skipped names when Segment already holds the message


@dataclass
class Outgoing:
    """One message to send, and the outbox row it answers for."""

    key: str
    message: dict[str, Any]
    state_key: str | None = None  # identify and group remember what they delivered
    payload_hash: str | None = None
    segments: list[str] = field(default_factory=list)  # the hull_segments it carries
    in_filter: bool = True  # False for the last call to a user or account that left the filter
    user_id: int | None = None  # the profile it is about (a group's user)
    account_id: int | None = None  # a group's account


@dataclass
class Delivered:
    """What Segment holds for an identify or group target (a delivery_state row)."""

    payload_hash: str
    segments: list[str]
    in_filter: bool
    delivered_at: datetime
    account_id: int | None = None  # a group call's account (None: recorded before it was kept, the user's)


class Target(NamedTuple):
    """The profile an outbox row concerns, and what the row is when that is not the profile itself."""

    entity: str  # user, account
    entity_id: int
    about: dict[str, Any]


@dataclass
class Built:
    messages: list[Outgoing] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # outbox key -> reason nothing was sent
    targets: dict[str, Target] = field(default_factory=dict)  # outbox key -> its profile, when it still exists
    # Segment event states written whether or not anything is sent: a baseline's payload hash, or None to forget
    states: dict[str, str | None] = field(default_factory=dict)
    state_users: dict[str, int] = field(default_factory=dict)  # state key -> its user (an erased one is skipped)
    state_accounts: dict[str, int | None] = field(default_factory=dict)  # state key -> the account it follows through

    def records(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The delivery_state rows (without key and time) of the segment-event records decided for these keys."""
        return {
            key: {"payload_hash": digest, "segments": [], "in_filter": True, "account_id": self.state_accounts.get(key)}
            for key in keys
            if (digest := self.states[key]) is not None
        }


def wants_computed(entries: list[Property]) -> bool:
    return any(source_of(entry).startswith(COMPUTED_ROOTS) for entry in entries)


@functools.cache
def rule_attribute(entity: str, name: str) -> tuple[Attribute, tuple[str, ...]] | None:
    """The attribute a segment rule would read under `name`, or None when rules know no such name."""
    try:
        return resolve_attribute(entity, name)
    except KeyError:
        return None


def read_attribute(traits: dict[str, Any], attribute: str) -> Any:
    """A trait by its attribute name: the key as written, without traits_, or a / or . path."""
    for name in (attribute, attribute.removeprefix("traits_")):
        if name in traits:
            return traits[name]
    value: Any = traits
    for part in re.split(r"[/.]", attribute.removeprefix("traits_")):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def in_filter(names: set[str], wanted: list[str]) -> bool:
    return ALL in wanted or not names.isdisjoint(wanted)


def member_key(segment_id: int, entity_id: int) -> str:
    """The outbox id of a resync's added event for one membership (`member:<segment>-<entity>`)."""
    return f"{segment_id}-{entity_id}"


def _membership(member: str) -> tuple[int, int]:
    segment_id, _, entity_id = member.partition("-")
    return int(segment_id), int(entity_id)


async def build(conn: AsyncConnection, settings: ConnectorSettings, keys: list[str], quiet: bool = False) -> Built:
    """The messages the outbox rows `keys` owe now; with `quiet`, only the segment-event records (see _Followed)."""
    ids: dict[str, list[int]] = defaultdict(list)
    members: list[tuple[int, int]] = []
    for key in keys:
        kind, _, entity_id = key.partition(":")
        if kind == OutboxKind.MEMBER:
            members.append(_membership(entity_id))
        else:
            ids[kind].append(int(entity_id))
    data = await _load(conn, settings, ids, members)
    await _load_computed(conn, settings, data)
    await _load_profiles(conn, settings, data)
    built = Built()
    followed = _Followed(data, settings, built, quiet)
    for key in keys:
        kind, _, entity_id = key.partition(":")
        if kind == OutboxKind.MEMBER:
            messages, reason = followed.resynced(*_membership(entity_id))
        else:
            messages, reason = _build_one(data, settings, kind, int(entity_id))
            if events := followed.for_row(kind, int(entity_id)):
                messages, reason = messages + events, ""
        for message in messages:
            message.key = key
        built.messages += messages
        if reason:
            built.skipped[key] = reason
        if kind != OutboxKind.MEMBER and (target := _target(data, kind, int(entity_id))) is not None:
            built.targets[key] = target
    _drop_unchanged(built, data.delivered)
    return built


def _target(data: "_Data", kind: str, entity_id: int) -> Target | None:
    if (kind == OutboxKind.USER and entity_id in data.users) or (
        kind == OutboxKind.ACCOUNT and entity_id in data.accounts
    ):
        return Target(kind, entity_id, {})
    if kind == OutboxKind.EVENT and (event := data.events.get(entity_id)) is not None:
        return Target(OutboxKind.USER, event.user_id, {"event_id": event.id, "event": event.event})
    if kind == OutboxKind.TRANSITION and (row := data.transitions.get(entity_id)) is not None:
        return Target(
            row.entity,
            row.entity_id,
            {"transition_id": row.id, "segment": row.segment_name, "transition": row.transition},
        )
    return None


def _drop_unchanged(built: Built, delivered: dict[str, Delivered]) -> None:
    """Drop what Segment already has, and the second copy of a message two rows asked for (user and account)."""
    kept, seen = [], set()
    for outgoing in built.messages:
        state = delivered.get(outgoing.state_key or "")
        # A segment event is sent for its transition, whatever Segment last received.
        if outgoing.message["type"] != "track" and state is not None and state.payload_hash == outgoing.payload_hash:
            built.skipped.setdefault(outgoing.key, UNCHANGED)
        elif outgoing.message["messageId"] not in seen:
            seen.add(outgoing.message["messageId"])
            kept.append(outgoing)
    built.messages = kept


@dataclass
class _Data:
    users: dict[int, Any] = field(default_factory=dict)
    user_ids: dict[int, str] = field(default_factory=dict)
    anonymous_ids: dict[int, str] = field(default_factory=dict)
    accounts: dict[int, Any] = field(default_factory=dict)
    account_users: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    segment_names: dict[tuple[str, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    account_segments_known: bool = False
    events: dict[int, Any] = field(default_factory=dict)
    transitions: dict[int, Any] = field(default_factory=dict)
    delivered: dict[str, Delivered] = field(default_factory=dict)
    computed: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    profiles: dict[tuple[str, int], Any] = field(default_factory=dict)  # attributes.Profile, for mappings
    segments: dict[str, Any] = field(default_factory=dict)  # name -> (id, name, entity), with segment_events
    membership_traits: dict[str, str] = field(default_factory=dict)  # user segment name -> its trait, when sent
    members: dict[tuple[int, int], datetime] = field(default_factory=dict)  # a resync's memberships -> entered_at
    # (account segment id, account id) -> entered_at, for the account segments segment_events follow
    entered: dict[tuple[int, int], datetime] = field(default_factory=dict)


async def _load(
    conn: AsyncConnection, settings: ConnectorSettings, ids: dict[str, list[int]], members: list[tuple[int, int]]
) -> _Data:
    data = _Data()
    if ids[OutboxKind.EVENT]:
        data.events = {
            row.id: row for row in await conn.execute(sa.select(events).where(events.c.id.in_(ids[OutboxKind.EVENT])))
        }
    if ids[OutboxKind.TRANSITION]:
        data.transitions = {
            row.id: row
            for row in await conn.execute(
                sa.select(transitions).where(transitions.c.id.in_(ids[OutboxKind.TRANSITION]))
            )
        }
    if settings.segment_events:
        data.segments = {
            row.name: row
            for row in await conn.execute(
                sa.select(segments.c.id, segments.c.name, segments.c.entity).where(
                    segments.c.name.in_([entry.segment for entry in settings.segment_events])
                )
            )
        }
    if members:
        data.members = {
            (row.segment_id, row.entity_id): row.entered_at
            for row in await conn.execute(
                sa.select(memberships.c.segment_id, memberships.c.entity_id, memberships.c.entered_at).where(
                    sa.tuple_(memberships.c.segment_id, memberships.c.entity_id).in_(members)
                )
            )
        }
    entity_of = {row.id: row.entity for row in data.segments.values()}
    user_ids = set(ids[OutboxKind.USER]) | {row.user_id for row in data.events.values()}
    user_ids |= {row.entity_id for row in data.transitions.values() if row.entity == "user"}
    user_ids |= {entity_id for segment_id, entity_id in members if entity_of.get(segment_id) == "user"}
    # Segment events of an account segment go to each user of the account.
    account_ids = set(ids[OutboxKind.ACCOUNT])
    if settings.segment_events or any(row.retired for row in data.transitions.values()):
        account_ids |= {row.entity_id for row in data.transitions.values() if row.entity == "account"}
        account_ids |= {entity_id for segment_id, entity_id in members if entity_of.get(segment_id) == "account"}
    if account_ids:
        for row in await conn.execute(
            sa.select(users.c.id, users.c.account_id).where(users.c.account_id.in_(account_ids))
        ):
            data.account_users[row.account_id].append(row.id)
            user_ids.add(row.id)
    if user_ids:
        data.users = {
            row.id: row
            for row in await conn.execute(
                sa.select(
                    users.c.id, users.c.traits, users.c.account_id, users.c.account_linked_at, users.c.updated_at
                ).where(users.c.id.in_(user_ids))
            )
        }
        for identifier in await conn.execute(
            sa.select(identifiers.c.user_id, identifiers.c.kind, identifiers.c.value)
            .where(identifiers.c.user_id.in_(user_ids), identifiers.c.kind.in_(("user_id", "anonymous_id")))
            .order_by(identifiers.c.id)
        ):
            target = data.user_ids if identifier.kind == "user_id" else data.anonymous_ids
            target.setdefault(identifier.user_id, identifier.value)
    account_ids |= {row.account_id for row in data.users.values() if row.account_id}
    if account_ids:
        data.accounts = {
            row.id: row
            for row in await conn.execute(
                sa.select(
                    accounts.c.id, accounts.c.group_id, accounts.c.domain, accounts.c.traits, accounts.c.updated_at
                ).where(accounts.c.id.in_(account_ids))
            )
        }
    for entity, entity_ids in (("user", user_ids), ("account", account_ids)):
        if entity_ids:
            for row in await conn.execute(
                sa.select(memberships.c.entity_id, segments.c.name)
                .join(segments, segments.c.id == memberships.c.segment_id)
                .where(segments.c.entity == entity, memberships.c.entity_id.in_(entity_ids))
            ):
                data.segment_names[(entity, row.entity_id)].add(row.name)
    if settings.segment_membership_traits:
        user_segments = await conn.execute(sa.select(segments.c.id, segments.c.name).where(segments.c.entity == "user"))
        data.membership_traits = membership_traits((row.id, row.name) for row in user_segments)
    data.account_segments_known = bool(
        await conn.scalar(sa.select(sa.func.count()).select_from(segments).where(segments.c.entity == "account"))
    )
    state_keys = delivery_keys(list(data.users))
    state_keys += [segment_state_key(user_id, row.id) for user_id in data.users for row in data.segments.values()]
    if state_keys:
        data.delivered = {
            row.key: Delivered(row.payload_hash, row.segments, row.in_filter, row.delivered_at, row.account_id)
            for row in await conn.execute(
                sa.select(
                    delivery_state.c.key,
                    delivery_state.c.payload_hash,
                    delivery_state.c.segments,
                    delivery_state.c.in_filter,
                    delivery_state.c.delivered_at,
                    delivery_state.c.account_id,
                ).where(delivery_state.c.key.in_(state_keys))
            )
        }
    await _load_followed_accounts(conn, data)
    return data


async def _load_followed_accounts(conn: AsyncConnection, data: _Data) -> None:
    """For the account segments segment_events follow: the accounts users were last followed through (a user who
    moved away is sent its removed with that account's properties) and when each account entered them."""
    account_segments = [row.id for row in data.segments.values() if row.entity == "account"]
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
        data.accounts |= {
            row.id: row
            for row in await conn.execute(
                sa.select(
                    accounts.c.id, accounts.c.group_id, accounts.c.domain, accounts.c.traits, accounts.c.updated_at
                ).where(accounts.c.id.in_(through))
            )
        }
    if data.accounts:
        data.entered = {
            (row.segment_id, row.entity_id): row.entered_at
            for row in await conn.execute(
                sa.select(memberships.c.segment_id, memberships.c.entity_id, memberships.c.entered_at).where(
                    memberships.c.segment_id.in_(account_segments), memberships.c.entity_id.in_(data.accounts)
                )
            )
        }


def _wanted(settings: ConnectorSettings, data: _Data) -> dict[str, list[Property]]:
    """The entries read per entity: synchronized properties and the segment events' properties and timestamps."""
    wanted: dict[str, list[Property]] = {
        "user": list(settings.synchronized_properties),
        "account": settings.synchronized_account_properties
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
        if (entry := _followed_by(row, entries)) is not None and (row.entity, entry) not in followed:
            followed.append((row.entity, entry))
    for entity, entry in followed:
        wanted[entity] += entry.properties + _timestamp_entries(entry)
    return wanted


def _followed_by(row: Any, entries: dict[str, SegmentEvents]) -> SegmentEvents | None:
    """The segment_events entry a transition is sent by: the settings' for its segment's name, or for a deleted
    segment the one the settings had when it was deleted (None when they had none)."""
    if row.retired is None:
        return entries.get(row.segment_name)
    retired = row.retired.get("segment_events")
    return SegmentEvents.model_validate(retired) if retired is not None else None


def _reads_account(entry: SegmentEvents) -> bool:
    """Whether a user segment's events map an attribute of the user's account (which changes on its own)."""
    return any(source_of(property).startswith("account.") for property in entry.properties + _timestamp_entries(entry))


def _timestamp_entries(entry: SegmentEvents) -> list[Property]:
    """The timestamp attribute is read as a mapping's `from` is (what segment rules read, else Hull's rule)."""
    return [Mapping.model_validate({"from": entry.timestamp, "to": "timestamp"})] if entry.timestamp else []


async def _load_computed(conn: AsyncConnection, settings: ConnectorSettings, data: _Data) -> None:
    """Computed attributes (usage.*, audiences.*, persona.*, icp.*), only when the outbound settings ask for them."""
    wanted = _wanted(settings, data)
    for entity, entity_ids in (("user", sorted(data.users)), ("account", sorted(data.accounts))):
        if entity_ids and wants_computed(wanted[entity]):
            for entity_id, values in (await computed.computed_attributes_of(conn, entity, entity_ids)).items():
                data.computed[(entity, entity_id)] = computed.as_json(values)


async def _load_profiles(conn: AsyncConnection, settings: ConnectorSettings, data: _Data) -> None:
    """The profiles as segment rules see them, only when a mapping reads an attribute that way."""
    for entity, entries in _wanted(settings, data).items():
        read = [
            found
            for entry in entries
            if isinstance(entry, Mapping) and (found := rule_attribute(entity, entry.source)) is not None
        ]
        entity_ids = data.users if entity == "user" else data.accounts
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


def _value(data: _Data, entity: str, entity_id: int, entry: Property) -> Any:
    """An entry's value for a user or account; None when it has none."""
    source = source_of(entry)
    if isinstance(entry, Mapping) and (found := rule_attribute(entity, source)) is not None:
        attribute, path = found
        profile = data.profiles.get((entity, entity_id))
        value = MISSING if profile is None else attribute.python(profile, path)
        if value is MISSING:
            return None
        return format_timestamp(value) if isinstance(value, datetime) else value
    if entity == "account":
        return _account_attribute(data, data.accounts[entity_id], source)
    user = data.users[entity_id]
    if source.startswith("account."):
        account = data.accounts.get(user.account_id) if user.account_id else None
        return _account_attribute(data, account, source[len("account.") :]) if account else None
    return _read(data, "user", entity_id, user.traits, source)


def _properties(data: _Data, entity: str, entity_id: int, entries: list[Property]) -> dict[str, Any]:
    return {
        sent_name(entry): value for entry in entries if (value := _value(data, entity, entity_id, entry)) is not None
    }


def _read(data: _Data, entity: str, entity_id: int, traits: dict[str, Any], attribute: str) -> Any:
    if attribute.startswith(COMPUTED_ROOTS):
        return read_attribute(data.computed.get((entity, entity_id), {}), attribute)
    return read_attribute(traits, attribute)


def _build_one(data: _Data, settings: ConnectorSettings, kind: str, entity_id: int) -> tuple[list[Outgoing], str]:
    if kind == OutboxKind.USER:
        if entity_id not in data.users:
            return [], "user not found"
        identify, reason = _user_identify(data, settings, entity_id)
        if identify is None or not identify.in_filter:
            return [identify] if identify else [], reason
        group = _group(data, settings, entity_id)
        return [identify] + ([group] if group else []), ""
    if kind == OutboxKind.ACCOUNT:
        if not settings.handle_accounts:
            return [], "accounts are not handled"
        linked = sorted(data.account_users.get(entity_id, []))
        # An identify that maps the account's attributes (account.*) changes with the account.
        identifies = (
            [_user_identify(data, settings, user_id)[0] for user_id in linked] if _maps_account(settings) else []
        )
        groups = [_group(data, settings, user_id) for user_id in linked if _user_in_filter(data, settings, user_id)]
        sent = [message for message in identifies + groups if message]
        return sent, "" if sent else "no synchronized user in a synchronized account"
    if kind == OutboxKind.EVENT:
        return _event(data, settings, entity_id)
    if kind == OutboxKind.TRANSITION:
        return _transition(data, settings, entity_id)
    return [], f"unknown outbox kind {kind!r}"


def _user_identify(data: _Data, settings: ConnectorSettings, user_id: int) -> tuple[Outgoing | None, str]:
    """The identify a user is owed: in the filter, or the last one after leaving it; else None and why."""
    if _user_in_filter(data, settings, user_id):
        return _identify(data, settings, user_id), ""
    if _told_in_filter(data, delivery_key(IDENTIFY_STATE, user_id)):
        return _identify(data, settings, user_id, in_filter=False), ""
    return None, "not in synchronized segments"


def _maps_account(settings: ConnectorSettings) -> bool:
    return any(source_of(entry).startswith("account.") for entry in settings.synchronized_properties)


def _user_in_filter(data: _Data, settings: ConnectorSettings, user_id: int) -> bool:
    return in_filter(data.segment_names[("user", user_id)], settings.synchronized_segments)


def _told_in_filter(data: _Data, state_key: str, account_id: int | None = None) -> bool:
    """Segment last heard of this target while it was in the filter: it is owed a last call. For a group call,
    only if it heard of this account: a user who moved to an account outside the filter is not sent one naming it."""
    state = data.delivered.get(state_key)
    return state is not None and state.in_filter and state.account_id in (None, account_id)


def _identity(data: _Data, user_id: int) -> dict[str, Any]:
    ids = {"userId": data.user_ids.get(user_id), "anonymousId": data.anonymous_ids.get(user_id)}
    return {key: value for key, value in ids.items() if value is not None}


def _envelope(
    settings: ConnectorSettings,
    message: dict[str, Any],
    state_key: str,
    segments: list[str],
    in_filter: bool,
    user_id: int,
    account_id: int | None = None,
) -> Outgoing:
    """Identify and group: the messageId is derived from the content, so a resend is the same message."""
    digest = payload_hash(message)
    message["messageId"] = f"{MESSAGE_ID_PREFIX}-{state_key.replace(':', '-')}-{digest[:32]}"
    return Outgoing(
        key="",
        message=stamp(message, settings),
        state_key=state_key,
        payload_hash=digest,
        segments=segments,
        in_filter=in_filter,
        user_id=user_id,
        account_id=account_id,
    )


def _identify(data: _Data, settings: ConnectorSettings, user_id: int, in_filter: bool = True) -> Outgoing:
    traits = _properties(data, "user", user_id, settings.synchronized_properties)
    names = sorted(data.segment_names[("user", user_id)])
    traits["hull_segments"] = names
    state_key = delivery_key(IDENTIFY_STATE, user_id)
    if settings.segment_membership_traits:
        told = data.delivered[state_key].segments if state_key in data.delivered else []
        traits.update({trait_of(name, data.membership_traits): False for name in told})
        traits.update({trait_of(name, data.membership_traits): True for name in names})
    return _envelope(
        settings,
        {"type": "identify", **_identity(data, user_id), "traits": traits},
        state_key,
        names,
        in_filter,
        user_id,
    )


def _account_attribute(data: _Data, account: Any, attribute: str) -> Any:
    value = _read(data, "account", account.id, account.traits, attribute)
    if value is None and attribute in ("domain", "group_id"):
        value = getattr(account, attribute)
    return value


def _group(data: _Data, settings: ConnectorSettings, user_id: int) -> Outgoing | None:
    user = data.users.get(user_id)
    account = data.accounts.get(user.account_id) if user and user.account_id and settings.handle_accounts else None
    if account is None:
        return None
    names = sorted(data.segment_names[("account", account.id)])
    state_key = delivery_key(GROUP_STATE, user_id)
    account_in_filter = in_filter(set(names), settings.synchronized_account_segments)
    if not account_in_filter and not _told_in_filter(data, state_key, account.id):
        return None
    traits = _properties(data, "account", account.id, settings.synchronized_account_properties)
    if data.account_segments_known:
        traits["hull_segments"] = names
    message = {
        "type": "group",
        "groupId": account.group_id or account.domain,
        **_identity(data, user_id),
        "traits": traits,
    }
    return _envelope(settings, message, state_key, names, account_in_filter, user_id, account.id)


def _event(data: _Data, settings: ConnectorSettings, event_id: int) -> tuple[list[Outgoing], str]:
    event = data.events.get(event_id)
    if event is None:
        return [], "event not found"
    if ALL not in settings.send_events and event.event not in settings.send_events:
        return [], "event not in send_events"
    if event.source == "segment" and not settings.forward_events:
        return [], "received from segment and forward_events is off"
    if event.user_id not in data.users or not _user_in_filter(data, settings, event.user_id):
        return [], "not in synchronized segments"
    message: dict[str, Any] = {
        "type": event.type,
        **_identity(data, event.user_id),
        "messageId": event.message_id,
        "timestamp": format_timestamp(event.timestamp),
        "properties": dict(event.properties),
        "context": {key: value for key, value in event.context.items() if key != "integration"},
        "integrations": event.integrations,
    }
    if event.type == "track":
        message["event"] = event.event
    elif event.properties.get("name") is not None:
        message["name"] = event.properties["name"]
    return [Outgoing(key="", message=stamp(message, settings), user_id=event.user_id)], ""


def _transition(data: _Data, settings: ConnectorSettings, transition_id: int) -> tuple[list[Outgoing], str]:
    row = data.transitions.get(transition_id)
    if row is None:
        return [], "transition not found"
    if not settings.entered_exited_events:
        return [], "entered_exited_events is off"
    if row.entity != "user":
        return [], "account segment transitions are sent as group traits"
    if row.initial and not settings.send_initial_results:
        return [], "initial result and send_initial_results is off"
    # Only the synchronized segments' (a deleted one's as the settings said when it was deleted), member or not.
    if not (
        row.retired["synchronized"] if row.retired else in_filter({row.segment_name}, settings.synchronized_segments)
    ):
        return [], "segment not in synchronized_segments"
    if row.entity_id not in data.users:
        return [], "user not found"
    message = {
        "type": "track",
        **_identity(data, row.entity_id),
        "event": "Segment Entered" if row.transition == "entered" else "Segment Exited",
        "messageId": f"{MESSAGE_ID_PREFIX}-transition-{row.id}",
        "timestamp": format_timestamp(row.at),
        "properties": {"segment_name": row.segment_name, "segment_id": row.segment_id},
    }
    return [Outgoing(key="", message=stamp(message, settings), user_id=row.entity_id)], ""


def event_id(kind: str, *parts: Any) -> str:
    """A segment event's messageId: a digest of what identifies its transition."""
    digest = hashlib.sha256(orjson.dumps(parts)).hexdigest()
    return f"{MESSAGE_ID_PREFIX}-{kind}-{digest[:32]}"


class _Followed:
    """The segment events of one claim (see the module docstring). With `quiet` (a settings save that starts
    following a segment: resync.follow_members) nothing is announced: every member is recorded as it is."""

    def __init__(self, data: _Data, settings: ConnectorSettings, built: Built, quiet: bool = False):
        self.data, self.settings, self.built, self.quiet = data, settings, built, quiet
        self.entries = {entry.segment: entry for entry in settings.segment_events}
        self.by_id = {row.id: row for row in data.segments.values()}
        # The last transition of each membership this claim changes: that one decides what is kept of it.
        self.last: dict[tuple[int | None, int], int] = {}
        # (segment id, user id) already looked at for a changed event: a claim may hold the user and its account.
        self.looked_at: set[tuple[int, int]] = set()
        for row in sorted(data.transitions.values(), key=lambda row: row.id):
            self.last[(row.segment_id, row.entity_id)] = row.id

    def for_row(self, kind: str, entity_id: int) -> list[Outgoing]:
        """The events an outbox row of the claim owes: added / removed for a transition; for a profile, changed,
        and for a user who joined or left an account of an account segment, added or removed."""
        if kind == OutboxKind.TRANSITION:
            return self._transition(entity_id)
        followed = [
            (entry, segment)
            for entry in self.settings.segment_events
            if (segment := self.data.segments.get(entry.segment)) is not None
        ]
        if kind == OutboxKind.USER and entity_id in self.data.users:
            user_ids = [entity_id]
        elif kind == OutboxKind.ACCOUNT:  # an account segment's members, and user segments' members mapping account.*
            user_ids = sorted(self.data.account_users.get(entity_id, []))
            followed = [
                (entry, segment) for entry, segment in followed if segment.entity == "account" or _reads_account(entry)
            ]
        else:
            return []
        messages = []
        for entry, segment in followed:
            for user_id in user_ids:
                if segment.entity == "account":
                    messages += self._through_account(entry, segment, user_id)
                elif entry.changed:
                    messages += self._changed(entry, segment, user_id)
        return messages

    def resynced(self, segment_id: int, entity_id: int) -> tuple[list[Outgoing], str]:
        """A resync's `added` for a current member, with the messageId of the added its entry was sent as."""
        segment = self.by_id.get(segment_id)
        entry = self.entries.get(segment.name) if segment is not None else None
        entered_at = self.data.members.get((segment_id, entity_id))
        if segment is None or entry is None or not entry.added:
            return [], "segment_events sends no added event for this segment"
        if entered_at is None:
            return [], "no longer a member of the segment"
        return [
            self._event(
                entry,
                "added",
                segment.name,
                segment.entity,
                entity_id,
                user_id,
                self._since(user_id, entered_at, segment.entity),
                segment.id if entry.changed or segment.entity == "account" else None,
            )
            for user_id in self._recipients(segment.entity, entity_id)
        ], ""

    def _recipients(self, entity: str, entity_id: int) -> list[int]:
        if entity == "user":
            return [entity_id] if entity_id in self.data.users else []
        return sorted(self.data.account_users.get(entity_id, []))

    def _since(self, user_id: int, entered_at: datetime, entity: str) -> datetime:
        """When a user became a member: for an account segment, the later of the account's entry and the user's
        link to it (so the `added` of a user who joined a member account has one messageId, whoever sends it)."""
        linked_at = self.data.users[user_id].account_linked_at if entity == "account" else None
        return max(entered_at, linked_at) if linked_at is not None else entered_at

    def _transition(self, transition_id: int) -> list[Outgoing]:
        row = self.data.transitions.get(transition_id)
        entry = _followed_by(row, self.entries) if row is not None else None
        if row is None or entry is None:
            return []
        kind = "added" if row.transition == "entered" else "removed"
        sent = kind in entry.events() and not (
            kind == "added" and row.initial and not self.settings.send_initial_results
        )
        # An account segment's membership is recorded whatever the entry sends: a user who moves away is owed a
        # removed. A user segment's, for the changed events only.
        recorded = entry.changed is not None or row.entity == "account"
        # What is kept of the membership is decided by its last transition in this claim (a deleted segment: nothing).
        decides = row.segment_id is not None and self.last[(row.segment_id, row.entity_id)] == row.id
        kept = row.segment_id if decides and kind == "added" else None
        account_id = row.entity_id if row.entity == "account" else None
        messages = []
        for user_id in self._recipients(row.entity, row.entity_id):
            if sent:
                at, message_id = row.at, None
                if kind == "added":
                    at = self._since(user_id, row.at, row.entity)
                elif row.entity == "account":
                    message_id = self._removed_id(row.segment_name, user_id, row.segment_id)
                messages.append(
                    self._event(
                        entry,
                        kind,
                        row.segment_name,
                        row.entity,
                        row.entity_id,
                        user_id,
                        at,
                        kept if recorded else None,
                        message_id,
                    )
                )
            elif kept is not None and recorded:  # not announced: what later changes are measured from
                self._remember(
                    user_id, kept, self._digest(self._properties(entry, row.entity, row.entity_id)), account_id
                )
            if decides and kind == "removed" and recorded:
                self._remember(user_id, row.segment_id, None)
        return messages

    def _removed_id(self, segment_name: str, user_id: int, segment_id: int | None) -> str | None:
        """An account segment's removed for a user is identified by the record it ends, so the account's exit and
        the user's move away, seen at once, are one message (None without a record: the transition's id)."""
        state = self.data.delivered.get(segment_state_key(user_id, segment_id)) if segment_id is not None else None
        if state is None:
            return None
        return event_id("removed", segment_name, user_id, format_timestamp(state.delivered_at))

    def _through_account(self, entry: SegmentEvents, segment: Any, user_id: int) -> list[Outgoing]:
        """An account segment's events for one user, followed through the account it is linked to: it joins a
        member account (added, by its link's time), moves between member accounts or the account changes
        (changed), or it leaves the account it was followed through (removed). The account's own entry and exit
        are its transitions'."""
        if (segment.id, user_id) in self.looked_at:
            return []
        self.looked_at.add((segment.id, user_id))
        user = self.data.users[user_id]
        account_id = user.account_id
        state = self.data.delivered.get(segment_state_key(user_id, segment.id))
        # A record from before the account was kept is about the user's account.
        through = (state.account_id or account_id) if state is not None else None
        entered_at = self.data.entered.get((segment.id, account_id)) if account_id is not None else None
        if entered_at is not None and (segment.id, account_id) in self.last:
            return []  # the account entered or left in this claim: its transition speaks
        if entered_at is None:  # not a member
            if state is None or through is None or through == account_id:
                return []  # never followed, or its account left the segment: that exit's transition speaks
            self._remember(user_id, segment.id, None)
            if self.quiet or not entry.removed:
                return []
            at = user.account_linked_at or user.updated_at
            message_id = self._removed_id(segment.name, user_id, segment.id)
            return [self._event(entry, "removed", segment.name, "account", through, user_id, at, None, message_id)]
        digest = self._digest(self._properties(entry, "account", account_id))
        if state is None:
            since = self._since(user_id, entered_at, "account")
            if self.quiet or not entry.added or since == entered_at:
                # linked before the account entered: announced by the account's entry (or from before we followed)
                self._remember(user_id, segment.id, digest, account_id)
                return []
            return [self._event(entry, "added", segment.name, "account", account_id, user_id, since, segment.id)]
        if state.payload_hash == digest or self.quiet or not entry.changed:
            if through != state.account_id or state.payload_hash != digest:
                self._remember(user_id, segment.id, digest, account_id)
            return []
        return [self._changed_event(entry, segment, user_id, account_id, state, digest)]

    def _changed(self, entry: SegmentEvents, segment: Any, user_id: int) -> list[Outgoing]:
        """A user segment's changed event for one member, when its mapped properties differ from Segment's."""
        if segment.name not in self.data.segment_names[("user", user_id)] or (segment.id, user_id) in self.looked_at:
            return []
        self.looked_at.add((segment.id, user_id))
        if (segment.id, user_id) in self.last:  # entered or left in this claim: its transition speaks
            return []
        digest = self._digest(self._properties(entry, "user", user_id))
        state = self.data.delivered.get(segment_state_key(user_id, segment.id))
        if state is None:
            self._remember(user_id, segment.id, digest)
            return []
        if state.payload_hash == digest or self.quiet:
            return []
        return [self._changed_event(entry, segment, user_id, user_id, state, digest)]

    def _changed_event(
        self, entry: SegmentEvents, segment: Any, user_id: int, entity_id: int, state: Delivered, digest: str
    ) -> Outgoing:
        entity = segment.entity
        changed_at = (self.data.users if entity == "user" else self.data.accounts)[entity_id].updated_at
        message_id = event_id(
            "changed", segment.name, user_id, state.payload_hash, format_timestamp(state.delivered_at), digest
        )
        return self._event(
            entry, "changed", segment.name, entity, entity_id, user_id, changed_at, segment.id, message_id
        )

    def _remember(self, user_id: int, segment_id: int, digest: str | None, account_id: int | None = None) -> None:
        key = segment_state_key(user_id, segment_id)
        self.built.states[key] = digest
        self.built.state_users[key] = user_id
        self.built.state_accounts[key] = account_id

    def _properties(self, entry: SegmentEvents, entity: str, entity_id: int) -> dict[str, Any]:
        return _properties(self.data, entity, entity_id, entry.properties)

    @staticmethod
    def _digest(properties: dict[str, Any]) -> str:
        return hashlib.sha256(orjson.dumps(properties, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def _event(
        self,
        entry: SegmentEvents,
        kind: str,
        segment_name: str,
        entity: str,
        entity_id: int,
        user_id: int,
        at: datetime,
        kept: int | None,
        message_id: str | None = None,
    ) -> Outgoing:
        """A track named by the entry; with `kept` (a segment id) and a changed event to follow, Segment's
        payload for the membership is remembered once it is delivered."""
        properties = self._properties(entry, entity, entity_id)
        message = {
            "type": "track",
            **_identity(self.data, user_id),
            "event": entry.events()[kind],
            "messageId": message_id or event_id(kind, segment_name, user_id, format_timestamp(at)),
            "timestamp": self._timestamp(entry, entity, entity_id, at),
            "properties": properties,
        }
        return Outgoing(
            key="",
            message=stamp(message, self.settings),
            state_key=segment_state_key(user_id, kept) if kept is not None else None,
            payload_hash=self._digest(properties),
            user_id=user_id,
            account_id=entity_id if entity == "account" else None,
        )

    def _timestamp(self, entry: SegmentEvents, entity: str, entity_id: int, fallback: datetime) -> str:
        """The named attribute's date (an ISO 8601 string, as dates are sent), else the time of the change."""
        for timestamp in _timestamp_entries(entry):
            value = _value(self.data, entity, entity_id, timestamp)
            if isinstance(value, str):
                try:
                    return format_timestamp(parse_timestamp(value, "timestamp"))
                except SpecError:
                    pass
        return format_timestamp(fallback)
