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
"""

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector import computed
from connector.models import (
    Account,
    DeliveryState,
    Event,
    Segment,
    SegmentMembership,
    SegmentTransition,
    User,
    UserIdentifier,
)
from connector.outbound.guard import payload_hash, stamp
from connector.outbox import ACCOUNT, EVENT, TRANSITION, USER
from connector.settings import ALL, ConnectorSettings
from connector.spec import format_timestamp

users = User.__table__
identifiers = UserIdentifier.__table__
accounts = Account.__table__
events = Event.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
transitions = SegmentTransition.__table__
delivery_state = DeliveryState.__table__

MESSAGE_ID_PREFIX = "hsc"


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


COMPUTED_ROOTS = tuple(f"{root}." for root in computed.ROOTS)


def trait_name(attribute: str) -> str:
    """The outbound trait name of an attribute: traits_ stripped, / -> _, account.x -> account_x,
    and computed attributes flattened the same way (usage.top_features -> usage_top_features,
    persona.seniority -> persona_seniority, account.icp.fit -> account_icp_fit)."""
    if attribute.startswith("account."):
        return "account_" + trait_name(attribute[len("account.") :])
    if attribute.startswith(COMPUTED_ROOTS):
        return attribute.replace(".", "_").replace("/", "_")
    return attribute.removeprefix("traits_").replace("/", "_")


def wants_computed(attributes: list[str]) -> bool:
    return any(attribute.startswith(COMPUTED_ROOTS) for attribute in attributes)


def snake_case(name: str) -> str:
    """Engage-style trait name of a segment: "Paying Customers" -> "paying_customers"."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"[^0-9a-zA-Z]+", "_", spaced).strip("_").lower()


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


async def build(conn: AsyncConnection, settings: ConnectorSettings, keys: list[str]) -> Built:
    ids: dict[str, list[int]] = defaultdict(list)
    for key in keys:
        kind, _, entity_id = key.partition(":")
        ids[kind].append(int(entity_id))
    data = await _load(conn, ids)
    await _load_computed(conn, settings, data)
    built = Built()
    for key in keys:
        kind, _, entity_id = key.partition(":")
        messages, reason = _build_one(data, settings, kind, int(entity_id))
        for message in messages:
            message.key = key
        built.messages += messages
        if reason:
            built.skipped[key] = reason
        if (target := _target(data, kind, int(entity_id))) is not None:
            built.targets[key] = target
    _drop_unchanged(built, data.delivered)
    return built


def _target(data: "_Data", kind: str, entity_id: int) -> Target | None:
    if (kind == USER and entity_id in data.users) or (kind == ACCOUNT and entity_id in data.accounts):
        return Target(kind, entity_id, {})
    if kind == EVENT and (event := data.events.get(entity_id)) is not None:
        return Target(USER, event.user_id, {"event_id": event.id, "event": event.event})
    if kind == TRANSITION and (row := data.transitions.get(entity_id)) is not None:
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
        if state is not None and state.payload_hash == outgoing.payload_hash:
            built.skipped.setdefault(outgoing.key, "unchanged")
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


async def _load(conn: AsyncConnection, ids: dict[str, list[int]]) -> _Data:
    data = _Data()
    if ids[EVENT]:
        data.events = {row.id: row for row in await conn.execute(sa.select(events).where(events.c.id.in_(ids[EVENT])))}
    if ids[TRANSITION]:
        data.transitions = {
            row.id: row
            for row in await conn.execute(sa.select(transitions).where(transitions.c.id.in_(ids[TRANSITION])))
        }
    user_ids = set(ids[USER]) | {row.user_id for row in data.events.values()}
    user_ids |= {row.entity_id for row in data.transitions.values() if row.entity == "user"}
    if ids[ACCOUNT]:
        for row in await conn.execute(
            sa.select(users.c.id, users.c.account_id).where(users.c.account_id.in_(ids[ACCOUNT]))
        ):
            data.account_users[row.account_id].append(row.id)
            user_ids.add(row.id)
    if user_ids:
        data.users = {
            row.id: row
            for row in await conn.execute(
                sa.select(users.c.id, users.c.traits, users.c.account_id).where(users.c.id.in_(user_ids))
            )
        }
        for identifier in await conn.execute(
            sa.select(identifiers.c.user_id, identifiers.c.kind, identifiers.c.value)
            .where(identifiers.c.user_id.in_(user_ids), identifiers.c.kind.in_(("user_id", "anonymous_id")))
            .order_by(identifiers.c.id)
        ):
            target = data.user_ids if identifier.kind == "user_id" else data.anonymous_ids
            target.setdefault(identifier.user_id, identifier.value)
    account_ids = set(ids[ACCOUNT]) | {row.account_id for row in data.users.values() if row.account_id}
    if account_ids:
        data.accounts = {
            row.id: row
            for row in await conn.execute(
                sa.select(accounts.c.id, accounts.c.group_id, accounts.c.domain, accounts.c.traits).where(
                    accounts.c.id.in_(account_ids)
                )
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
    data.account_segments_known = bool(
        await conn.scalar(sa.select(sa.func.count()).select_from(segments).where(segments.c.entity == "account"))
    )
    state_keys = [f"{kind}:{user_id}" for user_id in data.users for kind in ("identify", "group")]
    if state_keys:
        data.delivered = {
            row.key: Delivered(row.payload_hash, row.segments, row.in_filter)
            for row in await conn.execute(
                sa.select(
                    delivery_state.c.key,
                    delivery_state.c.payload_hash,
                    delivery_state.c.segments,
                    delivery_state.c.in_filter,
                ).where(delivery_state.c.key.in_(state_keys))
            )
        }
    return data


async def _load_computed(conn: AsyncConnection, settings: ConnectorSettings, data: _Data) -> None:
    """Computed attributes (usage.*, audiences.*, persona.*, icp.*), only when the outbound settings ask for them."""
    wanted = (
        ("user", sorted(data.users), settings.synchronized_properties),
        (
            "account",
            sorted(data.accounts),
            settings.synchronized_account_properties
            + [name.removeprefix("account.") for name in settings.synchronized_properties],
        ),
    )
    for entity, entity_ids, attributes in wanted:
        if entity_ids and wants_computed(attributes):
            for entity_id, values in (await computed.computed_attributes_of(conn, entity, entity_ids)).items():
                data.computed[(entity, entity_id)] = computed.as_json(values)


def _read(data: _Data, entity: str, entity_id: int, traits: dict[str, Any], attribute: str) -> Any:
    if attribute.startswith(COMPUTED_ROOTS):
        return read_attribute(data.computed.get((entity, entity_id), {}), attribute)
    return read_attribute(traits, attribute)


def _build_one(data: _Data, settings: ConnectorSettings, kind: str, entity_id: int) -> tuple[list[Outgoing], str]:
    if kind == USER:
        if entity_id not in data.users:
            return [], "user not found"
        if not _user_in_filter(data, settings, entity_id):
            if _told_in_filter(data, f"identify:{entity_id}"):
                return [_identify(data, settings, entity_id, in_filter=False)], ""
            return [], "not in synchronized segments"
        outgoing = [_identify(data, settings, entity_id)]
        group = _group(data, settings, entity_id)
        return outgoing + ([group] if group else []), ""
    if kind == ACCOUNT:
        if not settings.handle_accounts:
            return [], "accounts are not handled"
        groups = [
            _group(data, settings, user_id)
            for user_id in sorted(data.account_users.get(entity_id, []))
            if _user_in_filter(data, settings, user_id)
        ]
        sent = [group for group in groups if group]
        return sent, "" if sent else "no synchronized user in a synchronized account"
    if kind == EVENT:
        return _event(data, settings, entity_id)
    if kind == TRANSITION:
        return _transition(data, settings, entity_id)
    return [], f"unknown outbox kind {kind!r}"


def _user_in_filter(data: _Data, settings: ConnectorSettings, user_id: int) -> bool:
    return in_filter(data.segment_names[("user", user_id)], settings.synchronized_segments)


def _told_in_filter(data: _Data, state_key: str) -> bool:
    """Segment last heard of this target while it was in the filter: it is owed a last call."""
    state = data.delivered.get(state_key)
    return state is not None and state.in_filter


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
    user = data.users[user_id]
    account = data.accounts.get(user.account_id) if user.account_id else None
    traits: dict[str, Any] = {}
    for attribute in settings.synchronized_properties:
        if attribute.startswith("account."):
            value = _account_attribute(data, account, attribute[len("account.") :]) if account else None
        else:
            value = _read(data, "user", user_id, user.traits, attribute)
        if value is not None:
            traits[trait_name(attribute)] = value
    names = sorted(data.segment_names[("user", user_id)])
    traits["hull_segments"] = names
    state_key = f"identify:{user_id}"
    if settings.segment_membership_traits:
        told = data.delivered[state_key].segments if state_key in data.delivered else []
        traits.update({snake_case(name): False for name in told})
        traits.update({snake_case(name): True for name in names})
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
    state_key = f"group:{user_id}"
    account_in_filter = in_filter(set(names), settings.synchronized_account_segments)
    if not account_in_filter and not _told_in_filter(data, state_key):
        return None
    traits = {
        trait_name(attribute): value
        for attribute in settings.synchronized_account_properties
        if (value := _account_attribute(data, account, attribute)) is not None
    }
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
    # A user leaving the synchronized segments is still told about that exit.
    if row.entity_id not in data.users or not (
        _user_in_filter(data, settings, row.entity_id) or in_filter({row.segment_name}, settings.synchronized_segments)
    ):
        return [], "not in synchronized segments"
    message = {
        "type": "track",
        **_identity(data, row.entity_id),
        "event": "Segment Entered" if row.transition == "entered" else "Segment Exited",
        "messageId": f"{MESSAGE_ID_PREFIX}-transition-{row.id}",
        "timestamp": format_timestamp(row.at),
        "properties": {"segment_name": row.segment_name, "segment_id": row.segment_id},
    }
    return [Outgoing(key="", message=stamp(message, settings), user_id=row.entity_id)], ""
