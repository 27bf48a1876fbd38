"""Data lifecycle: delete what the retention settings say has expired, a small batch at a time.

What goes, by age at the time of the pass:

- `inbound_journal`: `processed` rows received more than journal_retention_days ago.
  A `pending` or `failed` row is never removed here, however old: the DELETE repeats the
  condition, so a row queued again between the SELECT and the DELETE stays. (Aged by
  `received_at`: a processed row carries no time of processing, which would cost every
  message a write of its whole row; after an outage longer than the retention, rows are
  purged by the first pass after they are processed.)
- `events`: by `received_at`, when the connector accepted them (its own clock; `timestamp` is
  the sender's and may be years old for a backfill, which would then vanish on arrival).
  event_retention_days 0 keeps them forever. Product usage (`feature_usage`) is kept as sums
  and stays; event-based segment rules and `connector usage rebuild` only see the events left.
- `activity_log` and `dead_letters`: by `created_at` (dead letters replayed or not).

Each batch selects at most `batch_size` ids by an index on the age column, oldest first, and
deletes them by primary key in its own short transaction, so inbound writes and processing
wait for one batch at most, never for the whole pass. After a full batch the pass rests as long
as the batch took: on SQLite, whose one write lock a back-to-back loop would keep taking before
a waiting journal write gets it, inbound has the database at least half the time (measured in
docs/performance.md). Two workers purging at once is safe: a row is deleted, and counted, once.
"""

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.logs import get_logger
from connector.core.metrics import RETENTION_PURGED
from connector.core.models import ActivityEntry, DeadLetter, Event, JournalEntry, utcnow
from connector.core.settings import ConnectorSettings
from connector.flow.journal import queue

BATCH_SIZE = 2_000
journal = JournalEntry.__table__
events = Event.__table__
activity_log = ActivityEntry.__table__
dead_letters = DeadLetter.__table__
log = get_logger()


def expiry_rules(settings: ConnectorSettings, now: datetime) -> list[tuple[sa.Table, sa.Column[datetime], list[Any]]]:
    """(table, age column, conditions of an expired row) for each table whose retention is on."""
    queued = sa.exists().where(queue.c.id == journal.c.id)
    rules = [
        (journal, journal.c.received_at, settings.journal_retention_days, [journal.c.error.is_(None), ~queued]),
        (events, events.c.received_at, settings.event_retention_days, []),
        (activity_log, activity_log.c.created_at, settings.activity_retention_days, []),
        (dead_letters, dead_letters.c.created_at, settings.dead_letter_retention_days, []),
    ]
    return [(table, age, [age < now - timedelta(days=days), *extra]) for table, age, days, extra in rules if days > 0]


async def purge(
    engine: AsyncEngine,
    settings: ConnectorSettings,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], object] | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """One retention pass: delete every expired row; returns the rows deleted per table.

    `stop` set ends the pass after the current batch (a worker shutting down); the next pass goes on.
    """
    started = perf_counter()
    purged: dict[str, int] = {}
    for table, age, expired in expiry_rules(settings, now or utcnow()):
        purged[table.name] = 0
        selected = batch_size
        while selected == batch_size and not (stop and stop.is_set()):
            batch_started = perf_counter()
            selected, deleted = await _delete_batch(engine, table, age, expired, batch_size)
            purged[table.name] += deleted
            RETENTION_PURGED.labels(table=table.name).inc(deleted)
            if on_batch:
                on_batch(deleted)
            if selected == batch_size:
                await asyncio.sleep(perf_counter() - batch_started)
    log.info("retention.done", seconds=round(perf_counter() - started, 3), **purged)
    return purged


async def expired_counts(
    engine: AsyncEngine, settings: ConnectorSettings, now: datetime | None = None
) -> dict[str, int]:
    """The rows a pass would delete now, per table (for a progress bar)."""
    async with engine.connect() as conn:
        return {
            table.name: (await conn.execute(sa.select(sa.func.count()).select_from(table).where(*expired))).scalar_one()
            for table, _, expired in expiry_rules(settings, now or utcnow())
        }


async def _delete_batch(
    engine: AsyncEngine, table: sa.Table, age: sa.Column[datetime], expired: list[Any], batch_size: int
) -> tuple[int, int]:
    async with engine.begin() as conn:
        ids = (
            (await conn.execute(sa.select(table.c.id).where(*expired).order_by(age).limit(batch_size))).scalars().all()
        )
        if not ids:
            return 0, 0
        result = await conn.execute(table.delete().where(table.c.id.in_(ids), *expired))
    return len(ids), result.rowcount
