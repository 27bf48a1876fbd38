"""Alembic environment: runs migrations on the async engine of DATABASE_URL."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from connector.core import models  # noqa: F401  (registers the tables)
from connector.core.db import create_engine
from connector.core.environment import Database, get_environment

target_metadata = SQLModel.metadata


def _database() -> Database:
    """The URL `upgrade` was given, else DATABASE_URL: the direct connection even where Heroku's pooler is
    attached (the release runs there)."""
    if url := context.config.attributes.get("database_url"):
        return Database(url, context.config.attributes.get("pooler", False))
    return get_environment().direct_database


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    database = _database()
    engine = create_engine(database.url, pooler=database.pooler)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database().url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
