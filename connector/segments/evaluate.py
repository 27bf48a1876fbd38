"""The Python evaluator: does one profile match a (valid) rule? Semantics: rules.py."""

from datetime import datetime, timedelta
from typing import Any, cast

from connector.core.kinds import Entity
from connector.profile.attributes import MISSING, Profile
from connector.segments.rules import DEFAULT_COUNT, Scalar, attribute_of, date_key, datetime_key, parse_date


def evaluate(rule: dict[str, Any], entity: Entity, profile: Profile, now: datetime) -> bool:
    if "all" in rule:
        return all(evaluate(part, entity, profile, now) for part in rule["all"])
    if "any" in rule:
        return any(evaluate(part, entity, profile, now) for part in rule["any"])
    if "not" in rule:
        return not evaluate(rule["not"], entity, profile, now)
    kind = next(key for key in CONDITIONS if key in rule)
    return CONDITIONS[kind](rule, entity, profile, now)


def json_kind(value: Any) -> str | None:
    """The JSON type of a value, None when absent (missing or null)."""
    if value is MISSING or value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def equals(value: Any, scalar: Scalar) -> bool:
    if json_kind(value) != scalar.kind:
        return False
    return float(value) == scalar.value if scalar.kind == "number" else scalar.value == value


def compare(left: Any, op: str, right: Any) -> Any:
    """left op right, for numbers here and for SQL expressions in compile.py."""
    return {
        "eq": left == right,
        "neq": left != right,
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
    }[op]


def _attribute(node: dict[str, Any], entity: Entity, profile: Profile, now: datetime) -> bool:
    attribute, path = attribute_of(entity, node)
    value = attribute.python(profile, path)
    op: str = node["op"]
    expected: Any = node.get("value")  # its JSON type follows op: rules.py validated the rule
    if op in ("exists", "not_exists"):
        return (json_kind(value) is not None) == (op == "exists")
    if op in ("eq", "neq"):
        return equals(value, Scalar.of(expected)) == (op == "eq")
    if op in ("in", "not_in"):
        return any(equals(value, Scalar.of(item)) for item in expected) == (op == "in")
    if op == "contains":
        if isinstance(expected, str) and isinstance(value, str):
            return expected in value
        return isinstance(value, list) and any(equals(item, Scalar.of(expected)) for item in value)
    if op == "starts_with":
        return isinstance(value, str) and value.startswith(expected)
    if op == "ends_with":
        return isinstance(value, str) and value.endswith(expected)
    if op in ("gt", "gte", "lt", "lte"):
        return json_kind(value) == "number" and compare(float(value), op, float(expected))
    return _date(attribute.kind, value, op, expected, now)


def _date(kind: str, value: Any, op: str, expected: Any, now: datetime) -> bool:
    # datetimes for a datetime attribute; for a date-like trait, date_key strings (they sort as the dates do)
    low: Any
    high: Any
    bound: Any
    if kind == "datetime":
        moment: Any = value
        low, high = (now - timedelta(days=expected), now) if op == "within_last_days" else (None, None)
        bound = parse_date(expected) if op != "within_last_days" else None
    else:
        moment = date_key(value) if isinstance(value, str) else None
        if op == "within_last_days":
            low, high = datetime_key(now - timedelta(days=expected)), datetime_key(now)
        else:
            # the value's offset applies; traits have none (a validated rule's value is a date)
            bound = datetime_key(cast(datetime, parse_date(expected)))
    if moment is None:
        return False
    if op == "before":
        return bool(moment < bound)
    if op == "after":
        return bool(moment > bound)
    return bool(low <= moment <= high)


def event_since(node: dict[str, Any], now: datetime) -> datetime | None:
    days = node.get("within_days")
    return now - timedelta(days=days) if days is not None else None


def _event(node: dict[str, Any], entity: Entity, profile: Profile, now: datetime) -> bool:
    since = event_since(node, now)
    count = sum(1 for name, at in profile.events if name == node["event"] and (since is None or at >= since))
    if since is None:
        count += profile.earlier_events.get(node["event"], 0)
    return all(compare(count, op, bound) for op, bound in node.get("count", DEFAULT_COUNT).items())


def _audience(node: dict[str, Any], entity: Entity, profile: Profile, now: datetime) -> bool:
    member: bool = profile.computed["audiences"].get(node["audience"], False)
    return member


CONDITIONS = {"attribute": _attribute, "event": _event, "audience": _audience}
