"""The rows one claim's messages are built from (ClaimRows, loaded by outbound/loading.py) and the values read
from them. Nothing here reads the database: the shaping (messages.py, segment_events.py) takes these rows as given.

A property entry is an attribute name read by Hull's rule, or a mapping whose `from` is read
as segment rules read it (connector/profile/attributes.py: any root there is mappable) and, when it
names no such attribute, by Hull's rule.
"""

import functools
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.core.kinds import Entity
from connector.core.settings import COMPUTED_ROOTS, Mapping, Property, sent_name, source_of
from connector.core.spec import format_timestamp
from connector.profile.attributes import MISSING, Attribute, resolve_attribute


@dataclass
class Delivered:
    """What Segment holds for an identify or group target (a delivery_state row)."""

    payload_hash: str
    segments: list[str]
    in_filter: bool
    delivered_at: datetime
    account_id: int | None = None  # a group call's account (None: recorded before it was kept, the user's)


@dataclass
class ClaimRows:
    """What one claim's messages are built from, loaded by outbound/loading.py (each row a plain object)."""

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


@functools.cache
def rule_attribute(entity: str, name: str) -> tuple[Attribute, tuple[str, ...]] | None:
    """The attribute a segment rule would read under `name`, or None when rules know no such name."""
    try:
        return resolve_attribute(Entity(entity), name)
    except KeyError:
        return None


def read_attribute(traits: dict[str, Any], attribute: str) -> Any:
    """A trait by its attribute name: the key as written, without traits_ (Hull's prefix) or traits. (the
    segment rules' root), or a / or . path."""
    bare = attribute.removeprefix("traits.") if attribute.startswith("traits.") else attribute.removeprefix("traits_")
    for name in (attribute, bare):
        if name in traits:
            return traits[name]
    value: Any = traits
    for part in re.split(r"[/.]", bare):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def value_of(data: ClaimRows, entity: str, entity_id: int, entry: Property) -> Any:
    """An entry's value for a user or account; None when it has none."""
    source = source_of(entry)
    if isinstance(entry, Mapping) and (found := rule_attribute(entity, source)) is not None:
        attribute, path = found
        profile = data.profiles.get((entity, entity_id))
        value = MISSING if profile is None else attribute.python(profile, path)
        if value is MISSING:
            return None
        return format_timestamp(value) if isinstance(value, datetime) else value
    if entity == Entity.ACCOUNT:
        return _account_attribute(data, data.accounts[entity_id], source)
    user = data.users[entity_id]
    if source.startswith("account."):
        account = data.accounts.get(user.account_id) if user.account_id else None
        return _account_attribute(data, account, source[len("account.") :]) if account else None
    return _read(data, Entity.USER, entity_id, user.traits, source)


def properties_of(data: ClaimRows, entity: str, entity_id: int, entries: list[Property]) -> dict[str, Any]:
    """The entries' values under their sent names, leaving out those with none."""
    return {
        name: value
        for name, entry in _named(entries)
        if (value := value_of(data, entity, entity_id, entry)) is not None
    }


_NAMED: dict[int, tuple[list[Property], list[tuple[str, Property]]]] = {}


def _named(entries: list[Property]) -> list[tuple[str, Property]]:
    """Each entry with its sent name, worked out once per list: a settings version's lists are read for every
    message of every round. Found by the list's id and kept only while its entries are equal to those named
    (a few string comparisons), so a list changed in place, or a new one at a reused id, is named anew."""
    cached = _NAMED.get(id(entries))
    if cached is None or cached[0] != entries:
        if len(_NAMED) >= 64:  # a few settings versions' lists: old ones go
            _NAMED.clear()
        cached = _NAMED[id(entries)] = (list(entries), [(sent_name(entry), entry) for entry in entries])
    return cached[1]


def _read(data: ClaimRows, entity: str, entity_id: int, traits: dict[str, Any], attribute: str) -> Any:
    if attribute.startswith(COMPUTED_ROOTS):
        return read_attribute(data.computed.get((entity, entity_id), {}), attribute)
    return read_attribute(traits, attribute)


def _account_attribute(data: ClaimRows, account: Any, attribute: str) -> Any:
    value = _read(data, Entity.ACCOUNT, account.id, account.traits, attribute)
    if value is None and attribute in ("domain", "group_id"):
        value = getattr(account, attribute)
    return value


def identity(data: ClaimRows, user_id: int) -> dict[str, Any]:
    """The ids a message names its user by: userId and anonymousId, those it has."""
    ids = {"userId": data.user_ids.get(user_id), "anonymousId": data.anonymous_ids.get(user_id)}
    return {key: value for key, value in ids.items() if value is not None}
