"""The journal consumer: applies messages in journal order to users, accounts and events.

Journal order includes privacy: a `delete` message erases the person where it stands in the
journal (what came before it is applied first, then erased), and a message naming a suppressed
identifier is dropped (counted as `suppressed`, its payload blanked). The suppression list is
read once per batch (`processing/privacy.py` says why the processor, not the inbound append).

A batch is applied in one transaction. If anything in it fails, the batch is rolled
back and replayed message by message, so a bad message is marked failed with its
reason and never holds up the ones behind it. On PostgreSQL an advisory lock keeps
several worker processes from consuming the journal at the same time.
"""

from time import perf_counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.changes import Changes
from connector.db import JOURNAL_LOCK_ID
from connector.logs import get_logger
from connector.metrics import ERASED, JOURNAL_LAG, PROCESS_LATENCY, PROCESSED
from connector.models import JournalEntry, utcnow
from connector.processing import privacy
from connector.processing.apply import BatchApplier
from connector.processing.identity import Claim, lookup
from connector.processing.propagate import propagate
from connector.settings import ConnectorSettings

journal = JournalEntry.__table__
log = get_logger()


async def process_batch(engine: AsyncEngine, settings: ConnectorSettings, limit: int = 500) -> Changes:
    """Process up to `limit` pending journal messages; return what changed."""
    started = perf_counter()
    try:
        async with engine.begin() as conn:
            if not await _lock(conn):
                return Changes()
            rows = (
                await conn.execute(
                    sa.select(journal.c.id, journal.c.payload, journal.c.source)
                    .where(journal.c.status == "pending")
                    .order_by(journal.c.id)
                    .limit(limit)
                )
            ).all()
            changes = Changes()
            await apply_journal(conn, rows, settings, changes)
            await propagate(conn, settings, changes)
            await _mark(conn, [row.id for row in rows], "processed")
    except Exception as error:
        log.warning("processing.batch.retry", error=str(error)[:500])
        changes = await _process_one_by_one(engine, settings, limit)
    PROCESS_LATENCY.observe(perf_counter() - started)
    return changes


async def _process_one_by_one(engine: AsyncEngine, settings: ConnectorSettings, limit: int) -> Changes:
    total = Changes()
    async with engine.connect() as conn:
        ids = (
            (
                await conn.execute(
                    sa.select(journal.c.id).where(journal.c.status == "pending").order_by(journal.c.id).limit(limit)
                )
            )
            .scalars()
            .all()
        )
    for journal_id in ids:
        changes = Changes()
        try:
            async with engine.begin() as conn:
                if not await _lock(conn):
                    break
                row = (
                    await conn.execute(
                        sa.select(journal.c.id, journal.c.payload, journal.c.source).where(
                            journal.c.id == journal_id, journal.c.status == "pending"
                        )
                    )
                ).first()
                if row is None:
                    continue
                await apply_journal(conn, [row], settings, changes)
                await propagate(conn, settings, changes)
                await _mark(conn, [journal_id], "processed")
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"[:2000]
            log.error("incoming.message.error", journal_id=journal_id, reason=reason)
            async with engine.begin() as conn:
                await _mark(conn, [journal_id], "failed", error=reason)
            total.failed += 1
            continue
        total.add(changes)
    return total


async def _lock(conn: AsyncConnection) -> bool:
    if conn.dialect.name != "postgresql":
        return True
    return bool(await conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(JOURNAL_LOCK_ID))))


async def apply_journal(conn: AsyncConnection, rows: list[Any], settings: ConnectorSettings, changes: Changes) -> None:
    """Apply journal rows (id, payload, source) in order: runs of messages between `delete` messages
    go to the batch applier; suppressed messages are dropped and their payloads blanked."""
    claims = [privacy.message_claims(row.payload) for row in rows]
    suppressed = await privacy.suppressed(conn, set().union(*claims))
    run: list[tuple[dict[str, Any], str]] = []
    dropped: list[int] = []
    for row, named in zip(rows, claims):
        message = row.payload
        if suppressed & named:
            dropped.append(row.id)
            changes.skipped += 1
            PROCESSED.labels(message["type"], "suppressed").inc()
            log.info("incoming.message.skip", reason="suppressed", type=message["type"], journal_id=row.id)
        elif message["type"] == "delete":
            await apply_messages(conn, run, settings, changes)
            run = []
            erasure = await _erase(conn, [], named, changes, via="message")
            suppressed |= erasure.claims
            changes.processed += 1
            PROCESSED.labels("delete", "success").inc()
        else:
            run.append((message, row.source))
    await apply_messages(conn, run, settings, changes)
    await privacy.blank_journal(conn, dropped)


async def _erase(
    conn: AsyncConnection, user_ids: list[int], claims: set[Claim], changes: Changes, via: str
) -> privacy.Erasure:
    owners = sorted(set(user_ids) | set((await lookup(conn, sorted(claims))).values()))
    erasure = await privacy.erase(conn, owners, claims, utcnow())
    changes.users -= set(erasure.users)
    changes.events = [event_id for event_id in changes.events if event_id not in erasure.events]
    changes.accounts |= erasure.accounts
    if not erasure.users and not erasure.claims:
        return erasure
    ERASED.labels(via).inc(len(erasure.users))
    log.info("privacy.erased", via=via, profiles=len(erasure.users), **erasure.counts)
    return erasure


async def erase_user(engine: AsyncEngine, settings: ConnectorSettings, user_id: int) -> privacy.Erasure | None:
    """Erase one profile (the admin API), between journal batches: the processor's lock is waited for,
    so no batch applies a message of this person while it is erased. None if there is no such profile."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(JOURNAL_LOCK_ID)))
        changes = Changes()
        erasure = await _erase(conn, [user_id], set(), changes, via="api")
        if not erasure.users:
            return None
        await propagate(conn, settings, changes)
    return erasure


async def _mark(conn: AsyncConnection, ids: list[int], status: str, error: str | None = None) -> None:
    if ids:
        await conn.execute(
            journal.update().where(journal.c.id.in_(ids)).values(status=status, error=error, processed_at=utcnow())
        )


async def apply_messages(
    conn: AsyncConnection, messages: list[tuple[dict[str, Any], str]], settings: ConnectorSettings, changes: Changes
) -> None:
    """Apply (message, source) pairs: the journal's payloads and where each came in."""
    await BatchApplier(conn, settings, changes).apply(messages)


async def journal_lag(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        lag = (
            await conn.execute(sa.select(sa.func.count()).select_from(journal).where(journal.c.status == "pending"))
        ).scalar_one()
    JOURNAL_LAG.set(lag)
    return lag


async def retry_failed(engine: AsyncEngine) -> int:
    """Put failed journal messages back in the queue (after a fix); returns how many."""
    async with engine.begin() as conn:
        result = await conn.execute(
            journal.update().where(journal.c.status == "failed").values(status="pending", error=None, processed_at=None)
        )
    return result.rowcount
