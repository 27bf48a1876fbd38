"""Build the Segment messages for a claim of outbox rows, from the data as it is now: load its rows
(loading.py), shape each outbox row's messages (messages.py) and the segment events it owes
(segment_events.py), then drop what Segment already holds.

Each message and each skipped outbox row names the profile it concerns (the user, and
for a group the account too), for the activity log the sender writes; the admin API's
"what would be sent" is `build` itself.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.kinds import Entity, MessageType, OutboxKind
from connector.core.settings import ConnectorSettings
from connector.outbound import messages
from connector.outbound.loading import load
from connector.outbound.messages import Outgoing, Owed, Skipped
from connector.outbound.rows import ClaimRows, Delivered
from connector.outbound.segment_events import Followed, Records

UNCHANGED = "unchanged"  # the reason a row is skipped when Segment already holds its message


@dataclass(frozen=True)
class Target:
    """The profile an outbox row concerns, and what the row is when that is not the profile itself."""

    entity: Entity
    entity_id: int
    about: dict[str, Any]


@dataclass
class Built:
    messages: list[Outgoing] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # outbox key -> reason nothing was sent
    targets: dict[str, Target] = field(default_factory=dict)  # outbox key -> its profile, when it still exists
    event_records: Records = field(default_factory=Records)  # the segment-event records decided


def _membership(member: str) -> tuple[int, int]:
    """The (segment id, entity id) of a `member:` row (flow/outbox.py: member_key)."""
    segment_id, _, entity_id = member.partition("-")
    return int(segment_id), int(entity_id)


async def build(conn: AsyncConnection, settings: ConnectorSettings, keys: list[str], quiet: bool = False) -> Built:
    """The messages the outbox rows `keys` owe now; with `quiet`, only the segment-event records
    (see segment_events.Followed)."""
    ids: dict[str, list[int]] = defaultdict(list)
    members: list[tuple[int, int]] = []
    for key in keys:
        kind, _, entity_id = key.partition(":")
        if kind == OutboxKind.MEMBER:
            members.append(_membership(entity_id))
        else:
            ids[kind].append(int(entity_id))
    data = await load(conn, settings, ids, members)
    followed = Followed(data, settings, quiet)
    built = Built(event_records=followed.records)
    for key in keys:
        kind, _, entity_id = key.partition(":")
        if kind == OutboxKind.MEMBER:
            result = followed.resynced(*_membership(entity_id))
        else:
            result = messages.for_row(data, settings, kind, int(entity_id))
            if events := followed.for_row(kind, int(entity_id)):
                result = Owed((result.messages if isinstance(result, Owed) else []) + events)
        if isinstance(result, Skipped):
            built.skipped[key] = result.reason
        else:
            for message in result.messages:
                message.key = key
            built.messages += result.messages
        if kind != OutboxKind.MEMBER and (target := _target(data, kind, int(entity_id))) is not None:
            built.targets[key] = target
    _drop_unchanged(built, data.delivered)
    return built


def _target(data: ClaimRows, kind: str, entity_id: int) -> Target | None:
    if (kind == OutboxKind.USER and entity_id in data.users) or (
        kind == OutboxKind.ACCOUNT and entity_id in data.accounts
    ):
        return Target(Entity(kind), entity_id, {})
    if kind == OutboxKind.EVENT and (event := data.events.get(entity_id)) is not None:
        return Target(Entity.USER, event.user_id, {"event_id": event.id, "event": event.event})
    if kind == OutboxKind.TRANSITION and (row := data.transitions.get(entity_id)) is not None:
        return Target(
            Entity(row.entity),
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
        if (
            outgoing.message["type"] != MessageType.TRACK
            and state is not None
            and state.payload_hash == outgoing.payload_hash
        ):
            built.skipped.setdefault(outgoing.key, UNCHANGED)
        elif outgoing.message["messageId"] not in seen:
            seen.add(outgoing.message["messageId"])
            kept.append(outgoing)
    built.messages = kept
