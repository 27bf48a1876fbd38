"""Durable append to the inbound journal on SQLite: group commit in one thread with its own connection.

The web process's requests queue their rows; one dedicated thread owns a sqlite3 connection to the
database file (the engine's PRAGMAs: WAL, synchronous, foreign keys, busy timeout) and commits
everything queued since its last commit as one transaction (BEGIN IMMEDIATE, one `executemany`
INSERT ... ON CONFLICT (message_id) DO NOTHING, COMMIT). It then settles every request of that
transaction with one call into the event loop. So a commit costs one hop into the thread and one back,
where the engine's aiosqlite connection costs a hop per driver call (cursor, executemany, close,
commit, the pool's rollback). The database queues each row inserted (the trigger of migration 0008).
"""

import asyncio
import queue
import sqlite3
import threading
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.db import set_sqlite_pragmas
from connector.core.models import JournalEntry

MAX_ROWS_PER_COMMIT = 5000
table = JournalEntry.__table__


class Waiter:
    """One append: its rows, and the future its request awaits (resolved in the request's loop)."""

    __slots__ = ("done", "loop", "rows")

    def __init__(self, rows: list[dict[str, Any]], loop: asyncio.AbstractEventLoop):
        self.rows = rows
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()


class SqliteJournalWriter:
    """The Journal (connector/inbound/writer.py) for a SQLite file.

    Invariants: a request's `append` returns only after the transaction holding all its rows has
    committed; it raises a SQLAlchemy DBAPIError (the route answers 503) when that transaction failed,
    and then none of its rows is stored. A row whose message_id is stored already, or earlier in the
    same commit, is ignored. Another writer holding the database (the worker) is waited for up to the
    busy timeout. After a failure the connection is closed and the next commit opens a new one, so the
    writer recovers without a restart. `close()` commits what was queued, then closes the connection
    and ends the thread."""

    def __init__(self, engine: AsyncEngine, busy_timeout_seconds: float = 30.0):
        database = engine.url.database
        if not database or database == ":memory:":
            raise ValueError("the SQLite journal writer needs a database file")
        self.path = database
        self.busy_timeout_seconds = busy_timeout_seconds
        self._dialect = engine.dialect
        self._queue: queue.SimpleQueue[Waiter | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        # Owned by the thread: only it reads or writes these.
        self._connection: sqlite3.Connection | None = None
        self._statements: dict[tuple[str, ...], tuple[str, list[Any]]] = {}

    async def append(self, rows: list[dict[str, Any]]) -> None:
        """Return once `rows` are committed; duplicates of a stored messageId are ignored."""
        if not rows:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="journal-sqlite", daemon=True)
            self._thread.start()
        waiter = Waiter(rows, asyncio.get_running_loop())
        self._queue.put(waiter)
        await waiter.done

    async def close(self) -> None:
        if self._thread is None:
            return
        self._stopped = asyncio.get_running_loop().create_future()
        self._queue.put(None)  # after every append queued before it (the queue is FIFO)
        await self._stopped
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        """The thread: commit what is queued, settle its requests, until close()'s marker."""
        while True:
            taken: list[Waiter] = []
            count = 0
            item = self._queue.get()  # waits for the first append since the last commit
            while item is not None:
                taken.append(item)
                count += len(item.rows)
                if count >= MAX_ROWS_PER_COMMIT or self._queue.empty():
                    break
                item = self._queue.get()
            stopping = item is None
            if taken:
                error = self._commit([row for waiter in taken for row in waiter.rows])
                for loop in {waiter.loop for waiter in taken}:
                    loop.call_soon_threadsafe(_settle, [waiter for waiter in taken if waiter.loop is loop], error)
            if stopping:
                self._disconnect()
                if self._stopped is not None:
                    self._stopped.get_loop().call_soon_threadsafe(_resolve, self._stopped)
                return

    def _commit(self, rows: list[dict[str, Any]]) -> Exception | None:
        """Commit `rows` in one transaction; the failure, as SQLAlchemy's error for it, or None.

        Rows are inserted in their order, each run of rows with the same keys by one `executemany` (a
        request's rows all have the same keys; appends that leave out a nullable column differ)."""
        statement = ""
        try:
            runs = [(self._statement(columns), list(run)) for columns, run in groupby(rows, key=tuple)]
            connection = self._connection or self._connect()
            connection.execute("BEGIN IMMEDIATE")  # takes the write lock now, waiting for it up to the busy timeout
            for (statement, processors), run in runs:
                connection.executemany(statement, (_converted(row, processors) for row in run))
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            self._disconnect()  # rolls back what this transaction wrote
            return sa.exc.DBAPIError.instance(statement, None, error, sqlite3.Error, hide_parameters=True)
        except Exception as error:  # a bug: its requests fail (500), the thread lives on for the next ones
            self._disconnect()
            return error
        return None

    def _statement(self, columns: tuple[str, ...]) -> tuple[str, list[Any]]:
        """The INSERT for rows with these keys, and each column's conversion to what the engine stores."""
        if columns not in self._statements:
            names = ", ".join(columns)
            statement = (
                f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' for _ in columns)}) "
                "ON CONFLICT (message_id) DO NOTHING"
            )
            processors = [
                table.c[name].type.dialect_impl(self._dialect).bind_processor(self._dialect) for name in columns
            ]
            self._statements[columns] = (statement, processors)
        return self._statements[columns]

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the transaction is the explicit BEGIN IMMEDIATE ... COMMIT.
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout_seconds, isolation_level=None)
        try:
            set_sqlite_pragmas(connection, None)
            connection.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_seconds * 1000)}")
        except sqlite3.Error:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _converted(row: dict[str, Any], processors: list[Any]) -> list[Any]:
    return [
        value if process is None else process(value) for value, process in zip(row.values(), processors, strict=True)
    ]


def _settle(taken: list[Waiter], error: Exception | None) -> None:
    for waiter in taken:
        if waiter.done.done():  # the request was cancelled (its client went away)
            continue
        if error is None:
            waiter.done.set_result(None)
        else:
            waiter.done.set_exception(error)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
