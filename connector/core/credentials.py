"""Secrets kept in the database: the inbound API key (generated on first start, or taken from
CONNECTOR_API_KEY), the development admin token, and the Segment Public API token the workspace setup keeps
for repair and disconnect (stored, read and forgotten here; never returned in full, never logged)."""

import hmac
import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.db import insert
from connector.core.models import Credential, utcnow

API_KEY = "api_key"
ADMIN_TOKEN = "admin_token"
SEGMENT_PUBLIC_API_TOKEN = "segment_public_api_token"
table = Credential.__table__


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


async def ensure_credential(engine: AsyncEngine, name: str, configured: str | None, prefix: str) -> str:
    """Return the secret in force; a configured one always wins, else one is generated once."""
    async with engine.begin() as conn:
        if configured:
            statement = insert(table, conn.dialect.name).values(name=name, value=configured, created_at=utcnow())
            await conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_={"value": configured}))
            return configured
        await conn.execute(
            insert(table, conn.dialect.name)
            .values(name=name, value=new_secret(prefix), created_at=utcnow())
            .on_conflict_do_nothing()
        )
        stored: str = (await conn.execute(sa.select(table.c.value).where(table.c.name == name))).scalar_one()
        return stored


async def rotate_api_key(engine: AsyncEngine) -> str:
    key = new_secret("hsc_")
    async with engine.begin() as conn:
        await conn.execute(table.update().where(table.c.name == API_KEY).values(value=key, created_at=utcnow()))
    return key


async def keep_secret(engine: AsyncEngine, name: str, value: str) -> None:
    async with engine.begin() as conn:
        statement = insert(table, conn.dialect.name).values(name=name, value=value, created_at=utcnow())
        await conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_={"value": value}))


async def read_secret(engine: AsyncEngine, name: str) -> str | None:
    async with engine.connect() as conn:
        value: str | None = (await conn.execute(sa.select(table.c.value).where(table.c.name == name))).scalar()
        return value


async def forget_secret(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(table.delete().where(table.c.name == name))


def secrets_match(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
