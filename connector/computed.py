"""Computed attributes of a profile: product usage and Engage audiences.

`computed_attributes` is what segment rules (`usage.*`, `{"audience": key}`) and the outbound
builder (`synchronized_properties` such as `usage.top_features`) read; `merge_users` keeps
both exact when identity resolution folds one profile into another.
"""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from connector import audiences, usage


async def computed_attributes_of(
    conn: AsyncConnection, entity: str, ids: list[int], now: datetime | None = None
) -> dict[int, dict[str, Any]]:
    """computed_attributes of many profiles in three queries; last_feature_at is a datetime here."""
    found = await usage.attributes_of(conn, entity, ids, now)
    members = await audiences.members_of(conn, sorted(found)) if entity == usage.USER else {}
    return {
        entity_id: {"usage": values, "audiences": members.get(entity_id, {})} for entity_id, values in found.items()
    }


async def computed_attributes(
    conn: AsyncConnection, entity: str, entity_id: int, now: datetime | None = None
) -> dict[str, Any]:
    """{"usage": {top_features, events_30d, score_30d, trend, last_feature_at}, "audiences": {key: member}}.

    Accounts have usage but no audiences (Engage audiences are of users).
    """
    return as_json((await computed_attributes_of(conn, entity, [entity_id], now))[entity_id])


def as_json(attributes: dict[str, Any]) -> dict[str, Any]:
    """computed_attributes_of's values for one profile, with last_feature_at as a timestamp string."""
    return {**attributes, "usage": usage.formatted(attributes["usage"])}


async def merge_users(conn: AsyncConnection, target: int, loser: int) -> None:
    await usage.merge_users(conn, target, loser)
    await audiences.merge_users(conn, target, loser)
