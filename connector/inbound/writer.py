"""Durable append to the inbound journal, with group commit.

Concurrent requests hand their rows to one writer, which commits everything that arrived while the
previous commit ran as one unit. Each request is answered only after the commit holding its rows,
so a 200 always means "durable"; under load, many requests share one commit.

On PostgreSQL the writer holds one connection of its own and commits a group as ONE statement in
autocommit: no pool checkout, no pre-ping, no BEGIN/COMMIT, the statement text built once (and, without
a pooler, prepared once). One statement is atomic: its rows, and the journal_queue rows the statement
trigger of migration 0008 adds for them, commit together or not at all. On SQLite: inbound/sqlite_writer.py.
"""

import asyncio
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.db import is_postgres
from connector.core.models import JournalEntry
from connector.flow.journal import partition_of
from connector.inbound.sqlite_writer import SqliteJournalWriter

table = JournalEntry.__table__
MAX_ROWS_PER_COMMIT = 5000
SEGMENT, API = "segment", "api"  # delivered by Segment to /segment; posted by a library to /v1/*
Row = dict[str, Any]


def journal_row(message: dict[str, Any], received_at: datetime, source: str) -> Row:
    return {
        "partition": partition_of(message),
        "message_id": message["messageId"],
        "type": message["type"],
        "payload": message,
        "received_at": received_at,
        "source": source,
    }


class JournalUnavailable(Exception):
    """The rows could not be committed (the database is away, or refused them): the request answers 503,
    and Segment or the library retries it. Its rows may still have been stored (a connection lost after the
    commit, before its answer): the retry is then acknowledged as a duplicate."""


class Journal(Protocol):
    """What the inbound routes append through; one per web process, built by `open_journal`.

    `append(rows)` returns only once every row is committed (durable), and raises once they cannot be,
    JournalUnavailable or a database error (the route answers 503, so Segment or the library retries). Rows
    are `journal_row` dicts; a row whose message_id is already stored is ignored (acknowledged, not stored
    twice). Concurrent calls are group committed. The writer connects on first use and after losing its
    connection, so a database that comes back is used again without a restart. `close()` runs once, after
    the last request was answered."""

    async def append(self, rows: list[Row]) -> None: ...

    async def close(self) -> None: ...


def open_journal(engine: AsyncEngine, pooler: bool = False) -> Journal:
    """The journal writer for the engine's backend. It connects where the engine does, with the engine's
    settings; `pooler`: the engine's URL is a transaction-mode pooler (core/db.create_engine)."""
    if is_postgres(engine):
        return PostgresJournal(engine, pooler)
    return SqliteJournalWriter(engine)


COLUMNS = ("partition", "message_id", "type", "payload", "received_at", "source", "write_key_id")


def _unnest_insert() -> str:
    """INSERT … SELECT FROM unnest(one array per column) ON CONFLICT (message_id) DO NOTHING: one statement
    text whatever the number of rows. The payloads travel as text (JSON already encoded) and the server
    parses them as it would any JSON parameter."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    arrays = ", ".join(
        f"${number}::text[]" if name == "payload" else f"${number}::{table.c[name].type.compile(dialect)}[]"
        for number, name in enumerate(COLUMNS, start=1)
    )
    selected = ", ".join(f"{name}::jsonb" if name == "payload" else name for name in COLUMNS)
    return (
        f"INSERT INTO {table.name} ({', '.join(COLUMNS)}) SELECT {selected} FROM unnest({arrays}) "
        f"AS rows ({', '.join(COLUMNS)}) ON CONFLICT (message_id) DO NOTHING"
    )


INSERT_ROWS = _unnest_insert()


class PostgresJournal:
    """The group commit on one held connection, in autocommit: `append` waits for the commit that carries its
    rows; one commit runs at a time, and takes every request waiting when it starts (up to MAX_ROWS_PER_COMMIT
    rows).

    The connection is the engine's (checked out once, so it has the engine's URL and driver settings): without
    a pooler the statement is prepared once and each commit is one round trip. Through a transaction-mode
    pooler (statement caches off) asyncpg prepares the unnamed statement and then binds it, two exchanges a
    pooler may route to different servers, so there the statement runs in a transaction, which the pooler
    keeps on one server. A failure drops the connection (it may be dead) and, if that connection was held from
    before, the commit is tried once more on a new one; then it fails (503), and the next commit connects anew."""

    def __init__(self, engine: AsyncEngine, pooler: bool):
        self.engine = engine
        self.pooler = pooler
        self._held: AsyncConnection | None = None
        self._driver: Any = None  # the held connection's asyncpg connection
        self._waiting: list[tuple[list[Row], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, rows: list[Row]) -> None:
        """Return once `rows` are committed; duplicates of a stored messageId are ignored."""
        if not rows:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_while_waiting())
        await done

    async def _flush_while_waiting(self) -> None:
        while self._waiting:
            taken: list[tuple[list[Row], asyncio.Future[None]]] = []
            count = 0
            while self._waiting and (not taken or count + len(self._waiting[0][0]) <= MAX_ROWS_PER_COMMIT):
                rows, done = self._waiting.pop(0)
                taken.append((rows, done))
                count += len(rows)
            try:
                await self._commit([row for rows, _ in taken for row in rows])
            except Exception as error:  # every waiter gets the failure and answers 503
                for _, done in taken:
                    if not done.done():
                        done.set_exception(error)
            else:
                for _, done in taken:
                    if not done.done():
                        done.set_result(None)

    async def _commit(self, rows: list[Row]) -> None:
        columns = (
            [row["partition"] for row in rows],
            [row["message_id"] for row in rows],
            [row["type"] for row in rows],
            [orjson.dumps(row["payload"]).decode() for row in rows],
            [row["received_at"] for row in rows],
            [row["source"] for row in rows],
            [row.get("write_key_id") for row in rows],  # set by the routes (a browser's key, else None)
        )
        while True:
            reused = self._driver is not None
            try:
                await self._execute(self._driver or await self._connect(), columns)
                return
            except Exception as error:  # asyncpg's, or the engine's on connecting; their text may hold data
                await self._drop()
                if not reused:
                    raise JournalUnavailable(type(error).__name__) from error
                # The held connection may have died while idle (a database restart, an idle timeout): once more
                # on a new one, as a pool's pre-ping would. Rows already committed are ignored the second time.

    async def _execute(self, driver: Any, columns: tuple[list[Any], ...]) -> None:
        if self.pooler:
            async with driver.transaction():
                await driver.execute(INSERT_ROWS, *columns)
        else:
            await driver.execute(INSERT_ROWS, *columns)

    async def _connect(self) -> Any:
        self._held = await self.engine.connect()
        raw = await self._held.get_raw_connection()
        self._driver = raw.driver_connection
        return self._driver

    async def _drop(self) -> None:
        held, self._held, self._driver = self._held, None, None
        if held is not None:
            try:
                await held.invalidate()
                await held.close()
            except Exception:  # already gone: nothing left to release
                pass

    async def close(self) -> None:
        await self._drop()
