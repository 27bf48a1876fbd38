"""Browser write keys (`write_keys`): the public keys a website's analytics.js sends to /v1 with.

This module owns the table. A key is kept as its SHA-256 only, so it is shown in full once, when created; a
lookup hashes what a request carries and reads the row by that hash's unique index (the hash, not the key, is
compared, so the comparison's time tells nothing of the key). A revoked key is refused by the next request:
nothing is cached.
"""

import hashlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.credentials import new_secret
from connector.core.models import WriteKey, utcnow
from connector.core.spec import format_timestamp

table = WriteKey.__table__
PREFIX = "hwk_"
HINT_LENGTH = 4


@dataclass(frozen=True)
class ActiveKey:
    id: int
    allowed_origins: list[str]

    def allows(self, origin: str | None) -> bool:
        """Any origin when the list is empty; otherwise only a listed one. A call with no Origin at all
        (not from a browser) is refused too: a key limited to some sites is for browsers on them."""
        return not self.allowed_origins or origin in self.allowed_origins


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create(engine: AsyncEngine, name: str, allowed_origins: list[str]) -> tuple[dict[str, Any], str]:
    """The new key's row (as listed) and the key itself, which is not stored."""
    key = new_secret(PREFIX)
    values = {
        "name": name,
        "key_hash": key_hash(key),
        "key_hint": key[-HINT_LENGTH:],
        "allowed_origins": allowed_origins,
        "created_at": utcnow(),
    }
    async with engine.begin() as conn:
        row = (await conn.execute(table.insert().values(values).returning(*table.c))).one()
    return listed(row), key


async def active(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(table).where(table.c.revoked_at.is_(None)).order_by(table.c.id))
        return [listed(row) for row in rows]


async def revoke(engine: AsyncEngine, key_id: int) -> bool:
    """False when no active key has this id."""
    async with engine.begin() as conn:
        result = await conn.execute(
            table.update().where(table.c.id == key_id, table.c.revoked_at.is_(None)).values(revoked_at=utcnow())
        )
    return bool(result.rowcount)


async def find(engine: AsyncEngine, key: str) -> ActiveKey | None:
    """The active key with this value, or None (unknown or revoked)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(table.c.id, table.c.allowed_origins).where(
                    table.c.key_hash == key_hash(key), table.c.revoked_at.is_(None)
                )
            )
        ).one_or_none()
    return ActiveKey(row.id, list(row.allowed_origins)) if row is not None else None


def listed(row: Any) -> dict[str, Any]:
    """A key as the admin API lists it: masked to its last characters."""
    return {
        "id": row.id,
        "name": row.name,
        "key": f"{PREFIX}…{row.key_hint}",
        "allowed_origins": list(row.allowed_origins),
        "created_at": format_timestamp(row.created_at),
    }
