"""The async engine, and the few dialect differences the rest of the code needs.

Row locks need no check: SQLAlchemy leaves FOR UPDATE, FOR SHARE and SKIP LOCKED out on SQLite,
where a writing transaction excludes every other writer anyway.
"""

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# The journal processor's advisory lock: what must not run beside a batch (a usage rebuild, an erasure) waits for it.
JOURNAL_LOCK_ID = 0x5E6E_0001


def create_engine(database_url: str, max_connections: int = 20, **kwargs: Any) -> AsyncEngine:
    """The engine; on PostgreSQL it opens at most `max_connections` (a hosted plan limits them)."""
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    # Errors name the SQL but not its values: those hold secrets (API key, write key) and profile data.
    kwargs.setdefault("hide_parameters", True)
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": 30}, **kwargs)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", max_connections // 2)
    kwargs.setdefault("max_overflow", max_connections - max_connections // 2)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(database_url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web process read while the worker writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def is_postgres(engine_or_conn: Any) -> bool:
    return engine_or_conn.dialect.name == "postgresql"


async def wait_for_lock(conn: AsyncConnection, key: int) -> None:
    """Take the advisory lock `key` until the transaction ends, waiting while another holds it (PostgreSQL;
    SQLite has none and needs none: its first write excludes every other writer)."""
    if is_postgres(conn):
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def insert(table: Any, dialect_name: str) -> Any:
    """An INSERT that supports ON CONFLICT on both backends."""
    return (pg_insert if dialect_name == "postgresql" else sqlite_insert)(table)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
