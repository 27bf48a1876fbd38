"""The messages one outbox row owes, shaped from the rows given (rows.ClaimRows): a user's identify (and group
calls), an account's group calls, a stored event forwarded as track, page or screen, a user segment's Entered or
Exited. Pure: nothing here reads the database.

What Segment holds is what we last delivered (delivery_state), so membership there
stays true: a segment that Segment was told about and that the user is no longer in
(left, renamed or deleted) is sent as `false`; a user (or account) who leaves the
outbound filter gets one last identify (group) saying so, and nothing more until back.

An identify's or group's messageId is derived from its content, so a resend is the same message; a forwarded
event keeps the messageId it was received with, and an Entered or Exited is named by its transition.
"""

from dataclasses import dataclass, field
from typing import Any

from connector.core.kinds import Entity, MessageType, OutboxKind, Transition
from connector.core.settings import ALL, ConnectorSettings, source_of
from connector.core.spec import format_timestamp
from connector.outbound.delivery_state import GROUP_STATE, IDENTIFY_STATE, delivery_key
from connector.outbound.guard import payload_hash, stamp
from connector.outbound.rows import ClaimRows, identity, properties_of
from connector.outbound.traits import trait_of

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
class Owed:
    """The messages an outbox row owes."""

    messages: list[Outgoing]


@dataclass
class Skipped:
    """An outbox row that owes nothing, and why."""

    reason: str


def in_filter(names: set[str], wanted: list[str]) -> bool:
    """Whether a profile in these segments is in a filter naming `wanted` (or ALL)."""
    return ALL in wanted or not names.isdisjoint(wanted)


def for_row(data: ClaimRows, settings: ConnectorSettings, kind: str, entity_id: int) -> Owed | Skipped:
    """The messages an outbox row of these kinds owes (a member: row is segment_events.py's), or why none."""
    if kind == OutboxKind.USER:
        return _for_user(data, settings, entity_id)
    if kind == OutboxKind.ACCOUNT:
        return _for_account(data, settings, entity_id)
    if kind == OutboxKind.EVENT:
        return _event(data, settings, entity_id)
    if kind == OutboxKind.TRANSITION:
        return _transition(data, settings, entity_id)
    return Skipped(f"unknown outbox kind {kind!r}")


def _for_user(data: ClaimRows, settings: ConnectorSettings, user_id: int) -> Owed | Skipped:
    """Its identify, and its group call while it is in the filter."""
    if user_id not in data.users:
        return Skipped("user not found")
    identify = _user_identify(data, settings, user_id)
    if isinstance(identify, Skipped):
        return identify
    if not identify.in_filter:
        return Owed([identify])
    group = _group(data, settings, user_id)
    return Owed([identify] + ([group] if group else []))


def _for_account(data: ClaimRows, settings: ConnectorSettings, account_id: int) -> Owed | Skipped:
    """The group calls of its users in the filter, and their identifies when these map the account."""
    if not settings.handle_accounts:
        return Skipped("accounts are not handled")
    linked = sorted(data.account_users.get(account_id, []))
    # An identify that maps the account's attributes (account.*) changes with the account.
    identifies = [_user_identify(data, settings, user_id) for user_id in linked] if _maps_account(settings) else []
    groups = [_group(data, settings, user_id) for user_id in linked if _user_in_filter(data, settings, user_id)]
    sent = [message for message in identifies + groups if isinstance(message, Outgoing)]
    return Owed(sent) if sent else Skipped("no synchronized user in a synchronized account")


def _user_identify(data: ClaimRows, settings: ConnectorSettings, user_id: int) -> Outgoing | Skipped:
    """The identify a user is owed: in the filter, or the last one after leaving it."""
    if _user_in_filter(data, settings, user_id):
        return _identify(data, settings, user_id)
    if _told_in_filter(data, delivery_key(IDENTIFY_STATE, user_id)):
        return _identify(data, settings, user_id, in_filter=False)
    return Skipped("not in synchronized segments")


def _maps_account(settings: ConnectorSettings) -> bool:
    return any(source_of(entry).startswith("account.") for entry in settings.synchronized_properties)


def _user_in_filter(data: ClaimRows, settings: ConnectorSettings, user_id: int) -> bool:
    return in_filter(data.segment_names[(Entity.USER, user_id)], settings.synchronized_segments)


def _told_in_filter(data: ClaimRows, state_key: str, account_id: int | None = None) -> bool:
    """Segment last heard of this target while it was in the filter: it is owed a last call. For a group call,
    only if it heard of this account: a user who moved to an account outside the filter is not sent one naming it."""
    state = data.delivered.get(state_key)
    return state is not None and state.in_filter and state.account_id in (None, account_id)


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


def _identify(data: ClaimRows, settings: ConnectorSettings, user_id: int, in_filter: bool = True) -> Outgoing:
    traits = properties_of(data, Entity.USER, user_id, settings.synchronized_properties)
    names = sorted(data.segment_names[(Entity.USER, user_id)])
    traits["hull_segments"] = names
    state_key = delivery_key(IDENTIFY_STATE, user_id)
    if settings.segment_membership_traits:
        told = data.delivered[state_key].segments if state_key in data.delivered else []
        traits.update({trait_of(name, data.membership_traits): False for name in told})
        traits.update({trait_of(name, data.membership_traits): True for name in names})
    return _envelope(
        settings,
        {"type": MessageType.IDENTIFY, **identity(data, user_id), "traits": traits},
        state_key,
        names,
        in_filter,
        user_id,
    )


def _group(data: ClaimRows, settings: ConnectorSettings, user_id: int) -> Outgoing | None:
    user = data.users.get(user_id)
    account = data.accounts.get(user.account_id) if user and user.account_id and settings.handle_accounts else None
    if account is None:
        return None
    names = sorted(data.segment_names[(Entity.ACCOUNT, account.id)])
    state_key = delivery_key(GROUP_STATE, user_id)
    account_in_filter = in_filter(set(names), settings.synchronized_account_segments)
    if not account_in_filter and not _told_in_filter(data, state_key, account.id):
        return None
    traits = properties_of(data, Entity.ACCOUNT, account.id, settings.synchronized_account_properties)
    if data.account_segments_known:
        traits["hull_segments"] = names
    message = {
        "type": MessageType.GROUP,
        "groupId": account.group_id or account.domain,
        **identity(data, user_id),
        "traits": traits,
    }
    return _envelope(settings, message, state_key, names, account_in_filter, user_id, account.id)


def _event(data: ClaimRows, settings: ConnectorSettings, event_id: int) -> Owed | Skipped:
    event = data.events.get(event_id)
    if event is None:
        return Skipped("event not found")
    if ALL not in settings.send_events and event.event not in settings.send_events:
        return Skipped("event not in send_events")
    if event.source == "segment" and not settings.forward_events:
        return Skipped("received from segment and forward_events is off")
    if event.user_id not in data.users or not _user_in_filter(data, settings, event.user_id):
        return Skipped("not in synchronized segments")
    message: dict[str, Any] = {
        "type": event.type,
        **identity(data, event.user_id),
        "messageId": event.message_id,
        "timestamp": format_timestamp(event.timestamp),
        "properties": dict(event.properties),
        "context": {key: value for key, value in event.context.items() if key != "integration"},
        "integrations": event.integrations,
    }
    if event.type == MessageType.TRACK:
        message["event"] = event.event
    elif event.properties.get("name") is not None:
        message["name"] = event.properties["name"]
    return Owed([Outgoing(key="", message=stamp(message, settings), user_id=event.user_id)])


def _transition(data: ClaimRows, settings: ConnectorSettings, transition_id: int) -> Owed | Skipped:
    row = data.transitions.get(transition_id)
    if row is None:
        return Skipped("transition not found")
    if not settings.entered_exited_events:
        return Skipped("entered_exited_events is off")
    if row.entity != Entity.USER:
        return Skipped("account segment transitions are sent as group traits")
    if row.initial and not settings.send_initial_results:
        return Skipped("initial result and send_initial_results is off")
    # Only the synchronized segments' (a deleted one's as the settings said when it was deleted), member or not.
    if not (
        row.retired["synchronized"] if row.retired else in_filter({row.segment_name}, settings.synchronized_segments)
    ):
        return Skipped("segment not in synchronized_segments")
    if row.entity_id not in data.users:
        return Skipped("user not found")
    message = {
        "type": MessageType.TRACK,
        **identity(data, row.entity_id),
        "event": "Segment Entered" if row.transition == Transition.ENTERED else "Segment Exited",
        "messageId": f"{MESSAGE_ID_PREFIX}-transition-{row.id}",
        "timestamp": format_timestamp(row.at),
        "properties": {"segment_name": row.segment_name, "segment_id": row.segment_id},
    }
    return Owed([Outgoing(key="", message=stamp(message, settings), user_id=row.entity_id)])
