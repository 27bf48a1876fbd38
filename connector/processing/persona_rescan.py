"""Read every stored user's persona again (`connector persona rebuild`), after the patterns changed.

Processing keeps each persona as messages change the title (apply.py); this pass is for what was
stored before a change of connector/data/personas.toml or before the scanner existed. A page of
users is read and written in the caller's transaction, locked (FOR UPDATE on PostgreSQL; SQLite has
one writer), so a batch changing one of them meanwhile waits and then reads the persona written here.
"""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.models import User
from connector.profile.persona import persona_of

users = User.__table__


async def user_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar_one()


async def rescan_page(conn: AsyncConnection, after_id: int, limit: int) -> tuple[set[int], list[int]]:
    """Rescan the `limit` users after `after_id`: (ids whose persona changed, ids read in order; none when done)."""
    rows = list(
        await conn.execute(
            sa.select(
                users.c.id,
                users.c.traits,
                users.c.trait_timestamps,
                users.c.persona_seniority,
                users.c.persona_department,
            )
            .where(users.c.id > after_id)
            .order_by(users.c.id)
            .limit(limit)
            .with_for_update()
        )
    )
    changed = []
    for row in rows:
        seniority, department = persona_of(row.traits, row.trait_timestamps)
        if (seniority, department) != (row.persona_seniority, row.persona_department):
            changed.append({"user_id": row.id, "seniority": seniority, "department": department})
    if changed:
        await conn.execute(
            users.update()
            .where(users.c.id == sa.bindparam("user_id"))
            .values(persona_seniority=sa.bindparam("seniority"), persona_department=sa.bindparam("department")),
            changed,
        )
    return {row["user_id"] for row in changed}, [row.id for row in rows]
