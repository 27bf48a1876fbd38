"""Computed attributes of a profile: product usage, Engage audiences and the scanners' results.

`computed_attributes` is what segment rules (`usage.*`, `{"audience": key}`), the outbound builder
(`synchronized_properties` such as `usage.top_features`, `persona.seniority`, `account.icp.fit`) and
the profile API read, under the roots in settings.COMPUTED_ROOTS; `merge_users` keeps usage and audiences exact when
identity resolution folds one profile into another (a persona is read again from the merged traits).
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import any_of
from connector.core.kinds import Entity
from connector.core.models import Account, User
from connector.profile import audiences, usage

# The scanners' stored results: {root: {name: column}} of users and of accounts.
SCANNED = {
    Entity.USER: (User.__table__, "persona", {"seniority": "persona_seniority", "department": "persona_department"}),
    Entity.ACCOUNT: (Account.__table__, "icp", {"score": "icp_score", "fit": "icp_fit"}),
}


async def computed_attributes_of(
    conn: AsyncConnection, entity: Entity, ids: list[int], now: datetime | None = None
) -> dict[int, dict[str, Any]]:
    """computed_attributes of many profiles in at most five queries; last_feature_at is a datetime here."""
    found = await usage.attributes_of(conn, entity, ids, now)
    members = await audiences.members_of(conn, sorted(found)) if entity == Entity.USER else {}
    table, root, columns = SCANNED[entity]
    scanned = {
        row.id: {name: row._mapping[column] for name, column in columns.items()}
        for row in await conn.execute(
            sa.select(table.c.id, *(table.c[column] for column in columns.values())).where(
                any_of(conn, table.c.id, sorted(found))
            )
        )
    }
    empty = dict.fromkeys(columns)
    return {
        entity_id: {
            "usage": values,
            "audiences": members.get(entity_id, {}),
            root: scanned.get(entity_id, empty),
        }
        for entity_id, values in found.items()
    }


async def computed_attributes(
    conn: AsyncConnection, entity: Entity, entity_id: int, now: datetime | None = None
) -> dict[str, Any]:
    """{"usage": {top_features, events_30d, score_30d, trend, last_feature_at, pattern}, "audiences": {key: member},
    and for a user "persona": {seniority, department}, for an account "icp": {score, fit}}.

    Accounts have usage but no audiences (Engage audiences are of users). A scanner's value is None when absent.
    """
    return as_json((await computed_attributes_of(conn, entity, [entity_id], now))[entity_id])


def as_json(attributes: dict[str, Any]) -> dict[str, Any]:
    """computed_attributes_of's values for one profile, with last_feature_at as a timestamp string."""
    return {**attributes, "usage": usage.formatted(attributes["usage"])}


async def merge_users(conn: AsyncConnection, target: int, loser: int) -> None:
    await usage.merge_users(conn, target, loser)
    await audiences.merge_users(conn, target, loser)
