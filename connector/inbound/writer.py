"""Durable append to the inbound journal, with group commit.

Concurrent requests hand their rows to one writer, which commits everything that
arrived while the previous commit ran in a single transaction. Each request is
answered only after the transaction holding its rows has committed, so a 200 always
means "durable"; under load, many requests share one commit.
"""

import asyncio
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.db import insert, is_postgres
from connector.core.models import JournalEntry
from connector.flow.journal import partition_of
from connector.inbound.sqlite_writer import SqliteJournalWriter

table = JournalEntry.__table__
MAX_ROWS_PER_COMMIT = 5000
SEGMENT, API = "segment", "api"  # delivered by Segment to /segment; posted by a library to /v1/*


def journal_row(message: dict[str, Any], received_at: datetime, source: str) -> dict[str, Any]:
    return {
        "partition": partition_of(message),
        "message_id": message["messageId"],
        "type": message["type"],
        "payload": message,
        "received_at": received_at,
        "source": source,
    }


class Journal(Protocol):
    """What the inbound routes append through; one per web process, built by `open_journal`.

    `append(rows)` returns only once every row is committed (durable), and raises once they cannot be
    (the route answers 503, so Segment or the library retries): rows are `journal_row` dicts; a row whose
    message_id is already stored is ignored (acknowledged, not stored twice). Concurrent calls are group
    committed. The writer connects on first use and after losing its connection, so a database that comes
    back is used again without a restart. `close()` runs once, after the last request was answered."""

    async def append(self, rows: list[dict[str, Any]]) -> None: ...

    async def close(self) -> None: ...


def open_journal(engine: AsyncEngine) -> Journal:
    """The journal writer for the engine's backend. It connects where the engine does, with the engine's
    settings (a transaction-mode pooler's included: see core/db.create_engine), and holds its own connection."""
    if is_postgres(engine):
        return JournalWriter(engine)
    return SqliteJournalWriter(engine)


class JournalWriter:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self._waiting: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, rows: list[dict[str, Any]]) -> None:
        """Return once `rows` are committed; duplicates of a stored messageId are ignored."""
        if not rows:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_while_waiting())
        await done

    async def close(self) -> None:
        pass  # holds no connection of its own: the engine's pool is closed with the runtime

    async def _flush_while_waiting(self) -> None:
        while self._waiting:
            taken: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
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

    async def _commit(self, rows: list[dict[str, Any]]) -> None:
        async with self.engine.begin() as conn:
            statement = insert(table, conn.dialect.name).on_conflict_do_nothing(index_elements=["message_id"])
            await conn.execute(statement, rows)
