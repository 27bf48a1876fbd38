"""Per-trait timestamps: a late, older message never overwrites a newer value.

Ties (same timestamp) go to the larger canonical JSON value, so the result does not
depend on the order in which messages arrive.
"""

from typing import Any

import orjson


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def newer(value: Any, at: str, current: Any, current_at: str | None) -> bool:
    if current_at is None or at > current_at:
        return True
    return at == current_at and _canonical(value) > _canonical(current)


def apply_traits(traits: dict[str, Any], stamps: dict[str, str], incoming: dict[str, Any], at: str) -> list[str]:
    """Apply `incoming` (all stamped `at`) in place; return the names whose value changed (empty: none)."""
    return update_traits(traits, stamps, incoming, at)[0]


def update_traits(
    traits: dict[str, Any], stamps: dict[str, str], incoming: dict[str, Any], at: str
) -> tuple[list[str], bool]:
    """apply_traits, and whether anything must be stored: a newer message that repeats a value moves its
    timestamp, and an older message arriving later must find the newer one."""
    changed: list[str] = []
    restamped = False
    for key, value in incoming.items():
        if value is None:
            continue
        if newer(value, at, traits.get(key), stamps.get(key)):
            if traits.get(key) != value:
                changed.append(key)
            restamped |= stamps.get(key) != at
            traits[key] = value
            stamps[key] = at
    return changed, restamped or bool(changed)


def merge_traits(
    traits: dict[str, Any], stamps: dict[str, str], other_traits: dict[str, Any], other_stamps: dict[str, str]
) -> None:
    """Fold another profile's traits in, each by its own timestamp (profile merges)."""
    for key, value in other_traits.items():
        at = other_stamps.get(key, "")
        apply_traits(traits, stamps, {key: value}, at)
