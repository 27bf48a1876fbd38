"""One journal batch, end to end, in one transaction: lease -> settle -> apply -> segment refresh -> outbox.

The stages meet only here and in the tables: processing/ applies the rows, segments/ scores the
changed accounts (segments/icp.py) and refreshes the memberships of what changed, the outbox records
what the sender must send; a committed change therefore always has its outbox row, and a crash
leaves either all of a batch or none of it. Changes that do not come from the journal are carried on
the same way, by `propagate` and `carry` in their own transactions (service/use_cases.py).

Failures are sorted by what retrying can do:
- transient (connection lost, deadlock, serialization failure, a database restarting; db.is_transient):
  the batch is retried with backoff, then the error goes up to the worker, which waits and tries
  again. Such a batch is never parked.
- contention (another worker stored a row this batch meant to create; db.is_contention): retried
  like a transient failure, up to CONTENTION_ATTEMPTS times in a row; past that it is a bug.
- anything else is a bug: the batch's rows are applied one per transaction, so only the message
  that fails on its own is parked (`failed`, with its reason; status reports it) and the ones
  behind it go on.
"""

import asyncio
import random
from time import perf_counter

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.db import is_contention, is_transient
from connector.core.kinds import OutboxKind
from connector.core.logs import get_logger
from connector.core.metrics import JOURNAL_LAG, PROCESS_LATENCY, PROCESS_RETRIES
from connector.core.models import utcnow
from connector.core.settings import ConnectorSettings
from connector.flow import journal, outbox
from connector.flow.changes import Changes
from connector.outbound import dead_letters, delivery_state
from connector.processing import identity, privacy, processor
from connector.segments import icp, membership

RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)  # seconds, each jittered by +-50 %
CONTENTION_ATTEMPTS = 5
log = get_logger()


async def process_batch(engine: AsyncEngine, settings: ConnectorSettings, limit: int = 500) -> Changes:
    """Apply up to `limit` pending journal rows of the partitions this call leases; return what changed."""
    started = perf_counter()
    contended = 0
    leased: list[int] = []
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            changes = await _apply_batch(engine, settings, limit, leased)
            break
        except Exception as error:
            reason = _reason(error)
            if is_contention(error) and contended < CONTENTION_ATTEMPTS:
                contended += 1
                PROCESS_RETRIES.labels("contention").inc()
            elif is_transient(error):
                PROCESS_RETRIES.labels("transient").inc()
            else:
                log.error("processing.batch.error", reason=reason)
                changes = await _apply_one_by_one(engine, settings, leased)
                break
            if attempt == len(RETRY_DELAYS):
                raise  # the worker logs it, waits and tries again: a transient failure never parks a message
            log.warning("processing.batch.retry", reason=reason, attempt=attempt + 1)
            await asyncio.sleep(RETRY_DELAYS[attempt] * random.uniform(0.5, 1.5))
    PROCESS_LATENCY.observe(perf_counter() - started)
    return changes


async def _apply_batch(engine: AsyncEngine, settings: ConnectorSettings, limit: int, leased: list[int]) -> Changes:
    """One batch in one transaction; `leased` is set to its rows' ids, for _apply_one_by_one if it fails."""
    async with engine.begin() as conn:
        rows = await journal.lease(conn, limit)
        leased[:] = [row.id for row in rows]
        if not rows:
            return Changes()
        # Settled first, in the same transaction: rows shared with concurrent batches (an account's usage, its
        # outbox row) are written last, so another batch waits for them as briefly as it can.
        await journal.settle(conn, leased)
        changes = await processor.apply_journal(conn, list(rows), settings)
        await propagate(conn, settings, changes)
    return changes


async def _apply_one_by_one(engine: AsyncEngine, settings: ConnectorSettings, ids: list[int]) -> Changes:
    """After a batch failed for a reason not transient: each of its rows in a transaction of its own, in
    journal order; a row that fails alone for such a reason is parked, the others are applied."""
    total = Changes()
    for journal_id in ids:
        try:
            async with engine.begin() as conn:
                rows = await journal.lease_row(conn, journal_id)
                if not rows:
                    continue
                changes = await processor.apply_journal(conn, list(rows), settings)
                await propagate(conn, settings, changes)
                await journal.settle(conn, [journal_id])
        except Exception as error:
            if is_transient(error) or is_contention(error):
                raise  # not this message's fault: the worker retries later
            reason = _reason(error)[:2000]
            log.error("incoming.message.error", journal_id=journal_id, reason=reason)
            async with engine.begin() as conn:
                # Leased again: between the rollback and here another batch may have tried the row too.
                if not await journal.lease_row(conn, journal_id):
                    continue  # it parked or applied it: counted there
                await journal.park(conn, journal_id, reason)
            total.failed += 1
            continue
        total.add(changes)
    return total


async def propagate(conn: AsyncConnection, settings: ConnectorSettings, changes: Changes) -> None:
    """Carry a batch's changes forward, in its transaction: the changed accounts' ICP scores, then `carry`."""
    await icp.refresh(conn, settings.icp, changes.accounts, utcnow())
    await carry(conn, settings, changes)


async def carry(conn: AsyncConnection, settings: ConnectorSettings, changes: Changes) -> None:
    """Segment memberships of what changed, then the outbox, in the caller's transaction.

    Events are queued only while `send_events` names some: with none named the sender would skip each
    one, and a row per event is a fifth of a batch's writes."""
    await follow_profiles(conn, changes)
    await membership.refresh(conn, changes)
    await outbox.enqueue(conn, OutboxKind.USER, changes.users - changes.merged_away)
    await outbox.enqueue(conn, OutboxKind.ACCOUNT, changes.accounts)
    if settings.send_events:
        await outbox.enqueue(conn, OutboxKind.EVENT, changes.events)


async def follow_profiles(conn: AsyncConnection, changes: Changes) -> None:
    """The stages that keep something of a profile follow processing's merges and erasures, in their order,
    through their tables' owners; an erasure is then recorded with what every stage removed."""
    for merge in changes.merges:
        await membership.merge_users(conn, merge.survivor, merge.merged)
        await delivery_state.merge_users(conn, merge.survivor, merge.merged)
    for erasure in changes.erasures:
        for name, count in (await membership.forget_users(conn, erasure.users)).items():
            erasure.count(name, count)
        erasure.count("delivery_state", await delivery_state.forget_users(conn, erasure.users))
        named = erasure.values(identity.USER_ID), erasure.values(identity.ANONYMOUS_ID), erasure.values(identity.EMAIL)
        erasure.count("dead_letters", await dead_letters.forget_people(conn, *named))
        await privacy.record(conn, erasure, utcnow())


async def journal_lag(engine: AsyncEngine) -> int:
    lag = await journal.pending_count(engine)
    JOURNAL_LAG.set(lag)
    return lag


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]
