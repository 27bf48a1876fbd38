"""The async engine, and the few dialect differences the rest of the code needs.

Row locks need no check: SQLAlchemy leaves FOR UPDATE, FOR SHARE and SKIP LOCKED out on SQLite,
where a writing transaction excludes every other writer anyway.
"""

from collections.abc import Callable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def create_engine(database_url: str, max_connections: int = 20, *, pooler: bool = False, **kwargs: Any) -> AsyncEngine:
    """The engine; on PostgreSQL it opens at most `max_connections` (a hosted plan limits them).

    `pooler`: the URL is a transaction-mode pooler (PgBouncer and its work-alikes), which may run each
    transaction on another server connection. Then no named prepared statement is made: with both statement
    caches off (asyncpg's own, SQLAlchemy's adapter's) asyncpg prepares every statement as the unnamed one,
    which lives only until the next statement of the same transaction. Nothing else the code does outlives a
    transaction (docs/architecture.md, "Connections"), so nothing else changes.
    """
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    # Errors name the SQL but not its values: those hold secrets (API key, write key) and profile data.
    kwargs.setdefault("hide_parameters", True)
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": 30}, **kwargs)
        sa.event.listen(engine.sync_engine, "connect", set_sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", max_connections // 2)
    kwargs.setdefault("max_overflow", max_connections - max_connections // 2)
    kwargs.setdefault("pool_pre_ping", True)
    if pooler:
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), **POOLER_CONNECT_ARGS}
    return create_async_engine(database_url, **kwargs)


POOLER_CONNECT_ARGS = {"statement_cache_size": 0, "prepared_statement_cache_size": 0}


def set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web process read while the worker writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def is_postgres(engine_or_conn: AsyncEngine | AsyncConnection) -> bool:
    return bool(engine_or_conn.dialect.name == "postgresql")


def any_of(conn: AsyncEngine | AsyncConnection, column: Any, values: Sequence[Any]) -> Any:
    """`column IN values`; on PostgreSQL `column = ANY(array)`: one statement text whatever the count, so it
    is prepared and planned once, where IN renders a placeholder per value and plans anew for each length."""
    if is_postgres(conn):
        return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


def insert(table: Any, dialect_name: str) -> Any:
    """An INSERT that supports ON CONFLICT on both backends."""
    return (pg_insert if dialect_name == "postgresql" else sqlite_insert)(table)


async def insert_rows(
    conn: Any,
    table: sa.Table,
    rows: list[dict[str, Any]],
    *,
    adapt: Callable[[Any], Any] = lambda statement: statement,
    returning: Sequence[Any] = (),
) -> list[Any]:
    """INSERT `rows` (dicts with the same keys) as one statement, in their order; return the RETURNING rows.

    `adapt` takes the INSERT and adds what it needs (ON CONFLICT ...). On PostgreSQL the rows go as one
    JSON parameter (INSERT ... SELECT FROM json_to_recordset): one prepared statement whatever the count,
    several times faster than the same rows as VALUES lists, and the least work for the driver. Rows must not
    repeat a conflict key (ON CONFLICT DO UPDATE touches a row once per statement). On SQLite, a multi-row
    INSERT per 1,000 rows (SQLAlchemy does that only for an INSERT with RETURNING, so there is always one).
    """
    if not rows:
        return []
    columns = list(rows[0])
    statement = insert(table, conn.dialect.name)
    if is_postgres(conn):
        records = recordset(rows, {name: table.c[name].type for name in columns})
        statement = adapt(statement.from_select(columns, sa.select(*records.c)))
        if returning:
            statement = statement.returning(*returning)
        result = await conn.execute(statement)
        return list(result.all()) if returning else []
    statement = adapt(statement).returning(*(returning or table.primary_key.columns))
    result = await conn.execute(statement, rows)
    return list(result.all()) if returning else []


async def copy_rows(conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys) in their order, the cheapest way the backend has: on PostgreSQL
    the driver's binary COPY into the table, in the caller's transaction (no ON CONFLICT, no RETURNING: for
    tables only ever appended to); on SQLite insert_rows."""
    if not rows:
        return
    if not is_postgres(conn):
        await insert_rows(conn, table, rows)
        return
    columns = list(rows[0])
    json_columns = {name for name in columns if isinstance(table.c[name].type, sa.JSON)}
    records = [tuple(_json_dumps(row[name]) if name in json_columns else row[name] for name in columns) for row in rows]
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None  # an open connection's asyncpg connection
    await driver.copy_records_to_table(table.name, records=records, columns=columns)


def recordset(rows: list[dict[str, Any]], types: dict[str, Any]) -> Any:
    """PostgreSQL: the rows as one JSON parameter, expanded by the server into a table of these typed columns
    (json_to_recordset, rows in array order), to select from.

    One parameter for the whole set: the driver encodes a string, where an array per column has it
    check every element (a third of the processor's time went there); JSON columns arrive as JSON."""
    records = sa.func.json_to_recordset(
        sa.cast(sa.bindparam(None, orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC).decode(), sa.Text), sa.JSON)
    )
    return records.table_valued(*(sa.column(name, type_) for name, type_ in types.items())).render_derived(
        with_types=True
    )


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Contention(Exception):
    """Another worker stored, since this transaction read it, a row this transaction meant to create
    (an identifier, a group id, a domain): the work is retried, and then finds that row."""


# SQLSTATE classes and codes that say "try again": the transaction was rolled back for a reason that
# is not in the data (08 connection, 40 deadlock and serialization, 53 resources, 57P admin shutdown,
# crash and restart, 55P03 lock not available).
_TRANSIENT_CLASSES = ("08", "40", "53")
_TRANSIENT_CODES = {"57P01", "57P02", "57P03", "55P03"}
_UNIQUE_VIOLATION = "23505"


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error, looked for along its causes (SQLAlchemy wraps the driver's)."""
    seen: BaseException | None = error
    while seen is not None:
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str):
            return code
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return None


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same work later can succeed: a lost or refused connection, a deadlock, a
    serialization failure, a database shutting down or starting, SQLite's busy database."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    code = sqlstate(error)
    if code is not None:
        return code[:2] in _TRANSIENT_CLASSES or code in _TRANSIENT_CODES
    if isinstance(error, sa.exc.OperationalError):  # SQLite: "database is locked", "unable to open database file"
        return True
    return isinstance(error, sa.exc.InterfaceError)


def is_contention(error: BaseException) -> bool:
    """A race between workers on a unique key: retried a few times, then treated as a bug."""
    return isinstance(error, Contention) or sqlstate(error) == _UNIQUE_VIOLATION


def epoch_minute(conn: AsyncConnection, column: Any) -> Any:
    """The minute a timestamp column falls in, as whole minutes since 1970-01-01 UTC (an integer)."""
    if is_postgres(conn):
        return sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger) // 60
    # SQLite keeps the UTC time as text (models.UTCDateTime); strftime('%s') reads it as UTC.
    return sa.cast(sa.func.strftime("%s", column), sa.Integer) // 60
