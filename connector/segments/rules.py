"""The segment rule language: its grammar, its validation, and the exact meaning of each part.

A rule is JSON. Groups: ``{"all": [...]}`` (every part holds; an empty list holds),
``{"any": [...]}`` (some part holds; an empty list does not), ``{"not": {...}}``.
Conditions: ``{"attribute": ..., "op": ..., "value": ...}``,
``{"event": "Order Completed", "count": {"gte": 1}, "within_days": 30}`` and
``{"audience": "first_time_shopper"}``.

Attributes are resolved through the registry in attributes.py (``traits.<path>``,
``account.traits.<path>``, ``created_at``, ``usage.events_30d``, ...). A ``traits`` path
walks nested objects key by key (``traits.address.city``); it never indexes into arrays.
An attribute is *absent* when the path does not exist or holds JSON ``null``.

The computed usage attributes (connector.profile.usage) are those of the segment's own
entity (a user's for user segments, an account's for account segments), as of the UTC date
of ``now``:

- ``usage.top_features`` (list of strings; ``contains``, ``exists``, ``not_exists``): up to 5
  feature names, by all-time count, ties by name; never absent (``[]`` without usage).
- ``usage.events_30d`` / ``usage.score_30d`` (numbers; equality, number and presence
  operators): the count and the score (positive minus negative) of today and the 29 days
  before; 0 without usage, never absent.
- ``usage.trend`` (list of 12 numbers; ``contains``, ``exists``, ``not_exists``): weekly
  counts of the last 12 ISO weeks, oldest first, this week (up to today) last; never absent.
- ``usage.last_feature_at`` (timestamp; ``exists``, ``not_exists`` and date operators): the
  latest use of any feature, absent without usage.
- ``usage.pattern`` (string: ``new``, ``growing``, ``steady``, ``declining``, ``dormant``; equality,
  string and presence operators): the label of the trend, as connector/profile/usage.py defines it; absent
  without use up to today.

The scanners' results are strings and numbers like any other (equality, string, presence and, for
numbers, number operators), absent when the scanner found nothing:

- ``persona.seniority`` (``owner``, ``c_level``, ``vp``, ``director``, ``manager``, ``senior``,
  ``entry``) and ``persona.department`` of a user (connector/profile/persona.py);
- ``icp.score`` (a number) and ``icp.fit`` (``good``, ``medium``, ``poor``) of an account, read by a
  user's rules as ``account.icp.score`` / ``account.icp.fit`` (segments/icp.py).

Events dated after today count in top_features and last_feature_at, not in the windows.

Every condition is either true or false, never unknown, and values are never coerced
from one JSON type to another:

- ``eq`` (value: string, number or boolean): the attribute has the same JSON type and is
  equal. Strings compare exactly (case-sensitive, no trimming); numbers compare by
  numeric value as 64-bit floats (``1 == 1.0``; ``"1"`` is not ``1``); ``true`` is not ``1``.
  An array is not equal to a scalar (use ``contains``). ``neq`` is exactly ``not eq``, so
  it holds for an absent attribute.
- ``in`` (value: a non-empty list of such scalars): ``eq`` to one of them. ``not_in`` is
  ``not in``.
- ``contains`` (value: a non-empty string, a number or a boolean): the attribute is a string
  containing the value as a case-sensitive substring, or an array with an element ``eq``
  to the value.
- ``starts_with`` / ``ends_with`` (value: a non-empty string): the attribute is a string
  with that case-sensitive prefix / suffix.
- ``exists`` / ``not_exists`` (no value): the attribute is present and not null / absent.
- ``gt``, ``gte``, ``lt``, ``lte`` (value: a number): the attribute is a number and compares
  so. Strings are never compared as numbers.
- ``before`` / ``after`` (value: a date, ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS`` with an
  optional fraction and offset) and ``within_last_days`` (value: a positive number of
  days N: ``now - N days <= attribute <= now``) compare dates. Date columns
  (``created_at``, ...) are real timestamps. A trait is a date when it is a string that
  starts ``YYYY-MM-DD`` and is either exactly that or continues with ``T`` or a space
  and ``HH:MM:SS``; it is compared, as UTC, on those first 19 characters: a fraction
  and any offset are ignored, and day numbers are not checked against the calendar.
  Anything else (numbers, other strings) is not a date, so every date operator is false.
  The rule's value is an instant: its offset applies (none means UTC), so the same
  instant written with different offsets means the same. Compared with a trait, the
  bound (the value, or ``now``) is taken in UTC and truncated to the second.
- Event conditions count the user's events with exactly that name (case-sensitive);
  ``within_days`` keeps those with ``timestamp >= now - within_days days``. ``count``
  holds one or more of ``eq``, ``neq``, ``gt``, ``gte``, ``lt``, ``lte`` (integers
  from 0 to 2**63 - 1), all of which must hold; without ``count`` the condition is ``{"gte": 1}``.
  Event conditions apply to user segments only.
- ``{"audience": key}`` holds when the user is now a member of that incoming Engage audience
  (connector.profile.audiences: the latest entry is later than the latest exit). The key
  is a non-empty string without surrounding spaces, at most 255 characters, compared exactly.
  Audience conditions apply to user segments only.

A rule is *time-based* (re-evaluated on a schedule, schedule.py) when it has an event
condition with ``within_days``, a date operator, or one of the windowed attributes
(``usage.events_30d``, ``usage.score_30d``, ``usage.trend``, ``usage.pattern``): their membership can
change with the clock alone.

Both evaluators (evaluate.py in Python, compile.py in SQL) implement exactly this, and
the property-based tests hold them equal.
"""

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.core.kinds import Entity
from connector.profile import attributes
from connector.profile.attributes import Attribute, resolve_attribute

ENTITIES = tuple(Entity)
GROUPS = ("all", "any", "not")
EQUALITY_OPS = ("eq", "neq", "in", "not_in")
STRING_OPS = ("contains", "starts_with", "ends_with")
PRESENCE_OPS = ("exists", "not_exists")
NUMBER_OPS = ("gt", "gte", "lt", "lte")
DATE_OPS = ("before", "after", "within_last_days")
OPERATORS = EQUALITY_OPS + STRING_OPS + PRESENCE_OPS + NUMBER_OPS + DATE_OPS
COUNT_OPS = ("eq", "neq", "gt", "gte", "lt", "lte")
DEFAULT_COUNT = {"gte": 1}
# Which operators make sense on each kind of attribute (see attributes.py).
OPERATORS_BY_KIND = {
    "json": OPERATORS,
    "string": EQUALITY_OPS + STRING_OPS + PRESENCE_OPS,
    "datetime": PRESENCE_OPS + DATE_OPS,
    "number": EQUALITY_OPS + PRESENCE_OPS + NUMBER_OPS,
    "list": ("contains", *PRESENCE_OPS),
}
MAX_DEPTH = 32
MAX_LIST = 1000
MAX_DAYS = 36_500
MAX_COUNT = 2**63 - 1  # what SQL compares an event count with: a 64-bit integer
MAX_AUDIENCE_KEY = 255
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME = re.compile(r"[0-9]{2}:[0-9]{2}:[0-9]{2}")


class RuleError(ValueError):
    """A rejected rule; `path` names the bad part, e.g. ``rule.all[1].any[0].op``."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Scalar:
    """A rule value, tagged by JSON type so that no evaluator confuses true with 1."""

    kind: str  # string, number, boolean
    value: str | float | bool

    @classmethod
    def of(cls, value: Any) -> "Scalar":
        if isinstance(value, bool):
            return cls("boolean", value)
        if isinstance(value, (int, float)):
            return cls("number", float(value))
        return cls("string", value)


def is_scalar(value: Any) -> bool:
    if isinstance(value, (bool, str)):
        return True
    return isinstance(value, (int, float)) and math.isfinite(value)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def date_key(text: str) -> str | None:
    """The comparable form (``YYYY-MM-DD HH:MM:SS``) of a date-like string, or None."""
    if not _DATE.fullmatch(text[:10]):
        return None
    if len(text) == 10:
        return text + " 00:00:00"
    if text[10:11] in ("T", " ") and _TIME.fullmatch(text[11:19]):
        return f"{text[:10]} {text[11:19]}"
    return None


def datetime_key(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_date(value: Any) -> datetime | None:
    """A rule's date value as an aware UTC datetime, or None when it is not a valid date."""
    if not isinstance(value, str) or date_key(value) is None:
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset takes 0001-01-01 or 9999-12-31 out of range
        return None


def validate(rule: Any, entity: Entity, path: str = "rule") -> None:
    """Raise RuleError naming the first bad part of `rule`, for a segment of `entity`."""
    if entity not in ENTITIES:
        raise RuleError("entity", f"must be one of {', '.join(ENTITIES)}")
    _validate(rule, entity, path, 0)


def _validate(node: Any, entity: Entity, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise RuleError(path, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict):
        raise RuleError(path, "must be an object: a group (all, any, not) or a condition (attribute, event)")
    kinds = [key for key in (*GROUPS, *CONDITIONS) if key in node]
    if len(kinds) != 1:
        raise RuleError(path, "must have exactly one of all, any, not, " + ", ".join(CONDITIONS))
    kind = kinds[0]
    if kind in ("all", "any"):
        _only(node, path, {kind})
        parts = node[kind]
        if not isinstance(parts, list):
            raise RuleError(f"{path}.{kind}", "must be a list")
        for index, part in enumerate(parts):
            _validate(part, entity, f"{path}.{kind}[{index}]", depth + 1)
    elif kind == "not":
        _only(node, path, {"not"})
        _validate(node["not"], entity, f"{path}.not", depth + 1)
    else:
        CONDITIONS[kind](node, entity, path)


def _only(node: dict[str, Any], path: str, allowed: set[str]) -> None:
    for key in node:
        if key not in allowed:
            raise RuleError(f"{path}.{key}", f"unknown key; expected {', '.join(sorted(allowed))}")


def _validate_attribute(node: dict[str, Any], entity: Entity, path: str) -> None:
    _only(node, path, {"attribute", "op", "value"})
    name = node["attribute"]
    if not isinstance(name, str):
        raise RuleError(f"{path}.attribute", "must be a string")
    try:
        attribute, _ = resolve_attribute(entity, name)
    except KeyError as unknown:
        raise RuleError(f"{path}.attribute", unknown.args[0]) from None
    op = node.get("op")
    if op not in OPERATORS:
        raise RuleError(f"{path}.op", f"unknown operator {op!r}; expected one of {', '.join(OPERATORS)}")
    if op not in OPERATORS_BY_KIND[attribute.kind]:
        raise RuleError(
            f"{path}.op",
            f"{op} does not apply to {name} ({attribute.kind}); "
            f"use one of {', '.join(OPERATORS_BY_KIND[attribute.kind])}",
        )
    problem = _value_problem(op, node.get("value"), "value" in node)
    if problem:
        raise RuleError(f"{path}.value", problem)


def _value_problem(op: str, value: Any, given: bool) -> str | None:
    if op in PRESENCE_OPS:
        return f"{op} takes no value" if given else None
    if not given:
        return f"{op} needs a value"
    if op in ("eq", "neq") and not is_scalar(value):
        return "must be a string, a number or a boolean (use exists / not_exists for null)"
    if op in ("in", "not_in") and not (
        isinstance(value, list) and 0 < len(value) <= MAX_LIST and all(is_scalar(item) for item in value)
    ):
        return f"must be a non-empty list (at most {MAX_LIST}) of strings, numbers or booleans"
    if op == "contains" and not (is_scalar(value) and value != ""):
        return "must be a non-empty string, a number or a boolean"
    if op in ("starts_with", "ends_with") and not (isinstance(value, str) and value):
        return "must be a non-empty string"
    if op in NUMBER_OPS and not is_number(value):
        return "must be a number"
    if op in ("before", "after") and parse_date(value) is None:
        return "must be a date: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (optionally with a fraction and an offset)"
    if op == "within_last_days" and not (is_number(value) and 0 < value <= MAX_DAYS):
        return f"must be a number of days, above 0 and at most {MAX_DAYS}"
    return None


def _validate_event(node: dict[str, Any], entity: Entity, path: str) -> None:
    _only(node, path, {"event", "count", "within_days"})
    if entity != Entity.USER:
        raise RuleError(f"{path}.event", "event conditions apply to user segments only")
    if not isinstance(node["event"], str) or not node["event"]:
        raise RuleError(f"{path}.event", "must be a non-empty event name")
    count = node.get("count", DEFAULT_COUNT)
    if not isinstance(count, dict) or not count:
        raise RuleError(f"{path}.count", f"must be an object with one or more of {', '.join(COUNT_OPS)}")
    for op, bound in count.items():
        if op not in COUNT_OPS:
            raise RuleError(f"{path}.count.{op}", f"unknown operator; expected one of {', '.join(COUNT_OPS)}")
        if isinstance(bound, bool) or not isinstance(bound, int) or not 0 <= bound <= MAX_COUNT:
            raise RuleError(f"{path}.count.{op}", f"must be an integer from 0 to {MAX_COUNT}")
    days = node.get("within_days")
    if days is not None and not (is_number(days) and 0 < days <= MAX_DAYS):
        raise RuleError(f"{path}.within_days", f"must be a number of days, above 0 and at most {MAX_DAYS}")


def _validate_audience(node: dict[str, Any], entity: Entity, path: str) -> None:
    _only(node, path, {"audience"})
    if entity != Entity.USER:
        raise RuleError(f"{path}.audience", "audience conditions apply to user segments only")
    key = node["audience"]
    if not (isinstance(key, str) and key and key == key.strip() and len(key) <= MAX_AUDIENCE_KEY):
        raise RuleError(
            f"{path}.audience",
            f"must be an audience key: a non-empty string without surrounding "
            f"spaces, at most {MAX_AUDIENCE_KEY} characters",
        )


# The condition kinds, by the key that marks them; a new kind adds an entry here, in
# evaluate.CONDITIONS and in compile.CONDITIONS.
CONDITIONS = {"attribute": _validate_attribute, "event": _validate_event, "audience": _validate_audience}


def event_needs(rules: Iterable[dict[str, Any]]) -> attributes.EventNeeds:
    """The event names the (valid) rules count, and their widest `within_days`: what load_profiles loads."""
    found = [node for rule in rules for node in conditions(rule) if "event" in node]
    windows = [node["within_days"] for node in found if node.get("within_days") is not None]
    return attributes.EventNeeds(frozenset(node["event"] for node in found), max(windows, default=None))


def conditions(rule: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every condition of a valid rule, depth first."""
    for kind in ("all", "any"):
        if kind in rule:
            for part in rule[kind]:
                yield from conditions(part)
            return
    if "not" in rule:
        yield from conditions(rule["not"])
        return
    yield rule


def is_time_based(rule: dict[str, Any]) -> bool:
    """Whether membership can change with the clock alone, so a schedule must re-evaluate it."""
    return any(
        ("event" in node and node.get("within_days") is not None)
        or node.get("op") in DATE_OPS
        or ("attribute" in node and attributes.is_time_based(node["attribute"]))
        for node in conditions(rule)
    )


def uses_computed(rule: dict[str, Any], entity: Entity) -> bool:
    """Whether evaluating the rule in Python needs the profile's computed attributes."""
    return any(
        "audience" in node or ("attribute" in node and attribute_of(entity, node)[0].computed)
        for node in conditions(rule)
    )


def attribute_of(entity: Entity, node: dict[str, Any]) -> tuple[Attribute, tuple[str, ...]]:
    return resolve_attribute(entity, node["attribute"])
