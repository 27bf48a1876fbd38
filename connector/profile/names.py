"""The names the connector has seen (`seen_names`): trait keys of users and accounts, event names.

Written by processing only, as it applies a batch (processing/apply.py: one INSERT of the batch's set of names,
ON CONFLICT DO NOTHING, so a name already on record costs an index probe and writes nothing); migration 0012
filled it from the data stored before. Names are only ever added: one seen stays known after retention or an
erasure removed the data that named it (a name is a key or an event name, never a value of a profile).
Read by the dashboard's pickers, the segment editor's "never seen" marks and the settings' warnings
(web/api/names.py).
"""

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import insert_rows
from connector.core.kinds import Entity
from connector.core.models import SeenName

seen_names = SeenName.__table__
TRAIT, EVENT = "trait", "event"
MAX_NAME = 255  # the column's length: a longer key is kept cut, as events keep their names


def seen(entity: Entity, kind: str, name: str) -> tuple[str, str, str]:
    """The row of one seen name."""
    return (Entity(entity).value, kind, name[:MAX_NAME])


async def record(conn: AsyncConnection, names: Iterable[tuple[str, str, str]]) -> None:
    """Add the names not on record yet, as one statement. Sorted, so two batches adding the same new names take
    their index entries in one order and wait for each other rather than deadlock."""
    rows = [{"entity": entity, "kind": kind, "name": name} for entity, kind, name in sorted(set(names))]
    await insert_rows(conn, seen_names, rows, adapt=lambda statement: statement.on_conflict_do_nothing())


async def known(conn: AsyncConnection, entity: Entity, kind: str, limit: int) -> list[str]:
    """Up to `limit` names of this entity and kind on record (the first by the primary key's index), sorted."""
    query = (
        sa.select(seen_names.c.name)
        .where(seen_names.c.entity == Entity(entity).value, seen_names.c.kind == kind)
        .order_by(seen_names.c.name)
        .limit(limit)
    )
    return sorted((await conn.scalars(query)).all())  # in code point order on both backends, whatever the collation
