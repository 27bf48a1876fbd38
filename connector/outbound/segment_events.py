"""Segment events (`segment_events`, Hightouch's generic track) follow a member of a segment:
`added` from its `entered` transition (or a resync's `member:` row), `removed` from its
`exited` one, `changed` when the mapped properties differ from those Segment last received for
that membership. That last payload is a delivery_state row `segment_event:<user>:<segment>`,
written when an added or changed is delivered, and for every current member when an entry is
saved (resync.follow_members: a member from before the entry is measured from what it held
then); a member seen with no such row (an initial member) gets it as a baseline without an
event, and an exit forgets it, so a member never gets `changed` for what came before it was
followed. In an account segment the row also names the account the user is followed through:
a user who joins a member account gets `added`, one who leaves it `removed`, one who moves
between member accounts `changed` (Followed._through_account).
Message ids are derived from the transition (segment, user, kind, time of the membership
change; in an account segment, the later of the account's entry and the user's link, and for
a removed the record it ends), so a resend is the same message and enter, leave, enter are
three; a `changed` from the payloads before and after and the time the one before was recorded.

Pure, like messages.py: the events are shaped from the rows given (rows.ClaimRows).
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from connector.core.kinds import Entity, MessageType, OutboxKind, Transition
from connector.core.settings import ConnectorSettings, Mapping, Property, SegmentEvents, source_of
from connector.core.spec import SpecError, format_timestamp, parse_timestamp
from connector.outbound.delivery_state import segment_state_key
from connector.outbound.guard import stamp
from connector.outbound.messages import MESSAGE_ID_PREFIX, Outgoing, Owed, Skipped
from connector.outbound.rows import ClaimRows, Delivered, identity, properties_of, value_of


@dataclass
class Records:
    """The segment-event records a claim decided, written whether or not anything is sent: a baseline's payload
    hash, or None to forget the record."""

    digests: dict[str, str | None] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)  # record key -> its user (an erased one's is not written)
    accounts: dict[str, int | None] = field(default_factory=dict)  # record key -> the account it follows through

    def rows(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The delivery_state rows (without key and time) of the records decided for these keys."""
        return {
            key: {"payload_hash": digest, "segments": [], "in_filter": True, "account_id": self.accounts.get(key)}
            for key in keys
            if (digest := self.digests[key]) is not None
        }


def event_id(kind: str, *parts: Any) -> str:
    """A segment event's messageId: a digest of what identifies its transition."""
    digest = hashlib.sha256(orjson.dumps(parts)).hexdigest()
    return f"{MESSAGE_ID_PREFIX}-{kind}-{digest[:32]}"


def followed_by(row: Any, entries: dict[str, SegmentEvents]) -> SegmentEvents | None:
    """The segment_events entry a transition is sent by: the settings' for its segment's name, or for a deleted
    segment the one the settings had when it was deleted (None when they had none)."""
    if row.retired is None:
        return entries.get(row.segment_name)
    retired = row.retired.get("segment_events")
    return SegmentEvents.model_validate(retired) if retired is not None else None


def _reads_account(entry: SegmentEvents) -> bool:
    """Whether a user segment's events map an attribute of the user's account (which changes on its own)."""
    return any(source_of(property).startswith("account.") for property in entry.properties + timestamp_entries(entry))


def timestamp_entries(entry: SegmentEvents) -> list[Property]:
    """The timestamp attribute is read as a mapping's `from` is (what segment rules read, else Hull's rule)."""
    return [Mapping.model_validate({"from": entry.timestamp, "to": "timestamp"})] if entry.timestamp else []


class Followed:
    """The segment events of one claim (see the module docstring). With `quiet` (a settings save that starts
    following a segment: resync.follow_members) nothing is announced: every member is recorded as it is."""

    def __init__(self, data: ClaimRows, settings: ConnectorSettings, quiet: bool = False):
        self.data, self.settings, self.quiet = data, settings, quiet
        self.records = Records()
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
                (entry, segment)
                for entry, segment in followed
                if segment.entity == Entity.ACCOUNT or _reads_account(entry)
            ]
        else:
            return []
        messages = []
        for entry, segment in followed:
            for user_id in user_ids:
                if segment.entity == Entity.ACCOUNT:
                    messages += self._through_account(entry, segment, user_id)
                elif entry.changed:
                    messages += self._changed(entry, segment, user_id)
        return messages

    def resynced(self, segment_id: int, entity_id: int) -> Owed | Skipped:
        """A resync's `added` for a current member, with the messageId of the added its entry was sent as."""
        segment = self.by_id.get(segment_id)
        entry = self.entries.get(segment.name) if segment is not None else None
        entered_at = self.data.members.get((segment_id, entity_id))
        if segment is None or entry is None or not entry.added:
            return Skipped("segment_events sends no added event for this segment")
        if entered_at is None:
            return Skipped("no longer a member of the segment")
        return Owed(
            [
                self._event(
                    entry,
                    "added",
                    segment.name,
                    segment.entity,
                    entity_id,
                    user_id,
                    self._since(user_id, entered_at, segment.entity),
                    segment.id if entry.changed or segment.entity == Entity.ACCOUNT else None,
                )
                for user_id in self._recipients(segment.entity, entity_id)
            ]
        )

    def _recipients(self, entity: str, entity_id: int) -> list[int]:
        if entity == Entity.USER:
            return [entity_id] if entity_id in self.data.users else []
        return sorted(self.data.account_users.get(entity_id, []))

    def _since(self, user_id: int, entered_at: datetime, entity: str) -> datetime:
        """When a user became a member: for an account segment, the later of the account's entry and the user's
        link to it (so the `added` of a user who joined a member account has one messageId, whoever sends it)."""
        linked_at = self.data.users[user_id].account_linked_at if entity == Entity.ACCOUNT else None
        return max(entered_at, linked_at) if linked_at is not None else entered_at

    def _transition(self, transition_id: int) -> list[Outgoing]:
        row = self.data.transitions.get(transition_id)
        entry = followed_by(row, self.entries) if row is not None else None
        if row is None or entry is None:
            return []
        kind = "added" if row.transition == Transition.ENTERED else "removed"
        sent = kind in entry.events() and not (
            kind == "added" and row.initial and not self.settings.send_initial_results
        )
        # An account segment's membership is recorded whatever the entry sends: a user who moves away is owed a
        # removed. A user segment's, for the changed events only.
        recorded = entry.changed is not None or row.entity == Entity.ACCOUNT
        # What is kept of the membership is decided by its last transition in this claim (a deleted segment: nothing).
        decides = row.segment_id is not None and self.last[(row.segment_id, row.entity_id)] == row.id
        kept = row.segment_id if decides and kind == "added" else None
        account_id = row.entity_id if row.entity == Entity.ACCOUNT else None
        messages = []
        for user_id in self._recipients(row.entity, row.entity_id):
            if sent:
                at, message_id = row.at, None
                if kind == "added":
                    at = self._since(user_id, row.at, row.entity)
                elif row.entity == Entity.ACCOUNT:
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
            return [self._event(entry, "removed", segment.name, Entity.ACCOUNT, through, user_id, at, None, message_id)]
        digest = self._digest(self._properties(entry, Entity.ACCOUNT, account_id))
        if state is None:
            since = self._since(user_id, entered_at, Entity.ACCOUNT)
            if self.quiet or not entry.added or since == entered_at:
                # linked before the account entered: announced by the account's entry (or from before we followed)
                self._remember(user_id, segment.id, digest, account_id)
                return []
            return [self._event(entry, "added", segment.name, Entity.ACCOUNT, account_id, user_id, since, segment.id)]
        if state.payload_hash == digest or self.quiet or not entry.changed:
            if through != state.account_id or state.payload_hash != digest:
                self._remember(user_id, segment.id, digest, account_id)
            return []
        return [self._changed_event(entry, segment, user_id, account_id, state, digest)]

    def _changed(self, entry: SegmentEvents, segment: Any, user_id: int) -> list[Outgoing]:
        """A user segment's changed event for one member, when its mapped properties differ from Segment's."""
        if (
            segment.name not in self.data.segment_names[(Entity.USER, user_id)]
            or (segment.id, user_id) in self.looked_at
        ):
            return []
        self.looked_at.add((segment.id, user_id))
        if (segment.id, user_id) in self.last:  # entered or left in this claim: its transition speaks
            return []
        digest = self._digest(self._properties(entry, Entity.USER, user_id))
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
        changed_at = (self.data.users if entity == Entity.USER else self.data.accounts)[entity_id].updated_at
        message_id = event_id(
            "changed", segment.name, user_id, state.payload_hash, format_timestamp(state.delivered_at), digest
        )
        return self._event(
            entry, "changed", segment.name, entity, entity_id, user_id, changed_at, segment.id, message_id
        )

    def _remember(self, user_id: int, segment_id: int, digest: str | None, account_id: int | None = None) -> None:
        key = segment_state_key(user_id, segment_id)
        self.records.digests[key] = digest
        self.records.users[key] = user_id
        self.records.accounts[key] = account_id

    def _properties(self, entry: SegmentEvents, entity: str, entity_id: int) -> dict[str, Any]:
        return properties_of(self.data, entity, entity_id, entry.properties)

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
            "type": MessageType.TRACK,
            **identity(self.data, user_id),
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
            account_id=entity_id if entity == Entity.ACCOUNT else None,
        )

    def _timestamp(self, entry: SegmentEvents, entity: str, entity_id: int, fallback: datetime) -> str:
        """The named attribute's date (an ISO 8601 string, as dates are sent), else the time of the change."""
        for timestamp in timestamp_entries(entry):
            value = value_of(self.data, entity, entity_id, timestamp)
            if isinstance(value, str):
                try:
                    return format_timestamp(parse_timestamp(value, "timestamp"))
                except SpecError:
                    pass
        return format_timestamp(fallback)
