"""Computed attributes of a profile: product usage and Engage audiences.

`computed_attributes` is what segment rules (`usage.*`, `{"audience": key}`) and the outbound
builder (`synchronized_properties` such as `usage.top_features`) read; `merge_users` keeps
both exact when identity resolution folds one profile into another.
"""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from connector.processing import audiences, usage


async def computed_attributes(conn: AsyncConnection, entity: str, entity_id: int,
                              now: datetime | None = None) -> dict[str, Any]:
    """{"usage": {top_features, events_30d, score_30d, trend, last_feature_at}, "audiences": {key: member}}.

    Accounts have usage but no audiences (Engage audiences are of users).
    """
    found = (await usage.report(conn, entity, entity_id, now))["attributes"]
    members = await audiences.user_audiences(conn, entity_id) if entity == usage.USER else {}
    return {"usage": found, "audiences": {key: value["member"] for key, value in members.items()}}


async def merge_users(conn: AsyncConnection, target: int, loser: int) -> None:
    await usage.merge_users(conn, target, loser)
    await audiences.merge_users(conn, target, loser)
