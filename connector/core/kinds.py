"""The kinds the connector stores and sends, as types: one definition each.

Each is a `StrEnum`, so a member *is* the string stored in the tables and written on the wire
(`Entity.USER == "user"`); rows read back as plain strings compare equal to the members.
"""

from enum import StrEnum


class Entity(StrEnum):
    """What a profile, a segment, a membership or an activity entry is about."""

    USER = "user"
    ACCOUNT = "account"


class MessageType(StrEnum):
    """Segment's call types, as its `type` field names them."""

    IDENTIFY = "identify"
    GROUP = "group"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    ALIAS = "alias"
    DELETE = "delete"


class OutboxKind(StrEnum):
    """What an outbox row asks the sender to build: the part before the colon of its key."""

    USER = "user"  # the user's identify (and group calls, when accounts are handled)
    ACCOUNT = "account"  # the account's group calls
    EVENT = "event"  # a stored event, forwarded as track, page or screen
    TRANSITION = "transition"  # a segment's Entered or Exited event
    MEMBER = "member"  # a resync's segment event for one membership: member:<segment id>-<entity id>


class Transition(StrEnum):
    """A change of a segment's membership."""

    ENTERED = "entered"
    EXITED = "exited"


class Outcome(StrEnum):
    """What became of one outgoing message, the last part of its `outgoing.<entity>.<outcome>` activity entry."""

    SUCCESS = "success"
    SKIP = "skip"
    ERROR = "error"
    DEAD_LETTER = "dead_letter"


class Action(StrEnum):
    """The activity log's event names (the `action` column) other than the outgoing outcomes, which
    `outgoing_action` composes."""

    USER_PROCESSED = "incoming.user.success"
    ACCOUNT_PROCESSED = "incoming.account.success"
    SEGMENT_ENTERED = "segment.entered"
    SEGMENT_EXITED = "segment.exited"


def outgoing_action(entity: Entity, outcome: Outcome) -> str:
    """The activity log's event name for what became of a message about this profile."""
    return f"outgoing.{entity.value}.{outcome.value}"


def segment_action(transition: Transition) -> Action:
    return Action(f"segment.{transition.value}")
