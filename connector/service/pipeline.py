"""One journal batch, end to end, in one transaction: lease -> settle -> apply -> segment refresh -> outbox.

The stages meet only here and in the tables: processing/ applies the rows, segments/ scores the
changed accounts (segments/icp.py) and refreshes the memberships of what changed, the outbox records
what the sender must send; a committed change therefore always has its outbox row, and a crash
leaves either all of a batch or none of it. Changes that do not come from the journal are carried on
the same way: a settings save (`save_settings`: a new `icp`, a new `segment_events` entry), a segment
created, renamed, redefined or deleted (the settings that name it follow), an erasure, the ICP schedule
(`rescore_accounts`) and a rebuild of the personas (`rescan_personas`). These are the use cases the web
and the command line call; the web reaches no stage's write path but through them.

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
from collections.abc import Callable
from datetime import datetime
from time import perf_counter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.db import is_contention, is_transient
from connector.core.kinds import OutboxKind
from connector.core.logs import get_logger
from connector.core.metrics import JOURNAL_LAG, PROCESS_LATENCY, PROCESS_RETRIES
from connector.core.models import utcnow
from connector.core.settings import ALL, ConnectorSettings
from connector.core.settings_store import SettingsStore
from connector.flow import journal, outbox
from connector.flow.changes import Changes, Erasure
from connector.outbound import dead_letters, delivery_state, replay, resync
from connector.processing import identity, persona_rescan, privacy, processor
from connector.segments import icp, membership, schedule

RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)  # seconds, each jittered by +-50 %
CONTENTION_ATTEMPTS = 5
RESCAN_PAGE = 1000
ICP_RUN = "icp"  # the ICP schedule's name in scheduled_runs
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


async def erase_user(engine: AsyncEngine, settings: ConnectorSettings, user_id: int) -> Erasure | None:
    """Erase one profile (the admin API) once no batch is in flight, so none applies a message of this person
    meanwhile. None if there is no such profile."""
    async with engine.begin() as conn:
        await journal.hold_all(conn)
        changes = Changes()
        erasure = await processor.erase(conn, [user_id], set(), changes, via="api")
        if not erasure.users:
            return None
        await propagate(conn, settings, changes)
    return erasure


async def let_in(engine: AsyncEngine, value: str) -> bool:
    """Let an identifier's messages in again (the admin API): off the suppression list; False if it was not on it."""
    async with engine.begin() as conn:
        return await privacy.let_in(conn, value)


async def replay_dead_letters(
    engine: AsyncEngine, settings: ConnectorSettings, ids: list[int] | None = None
) -> dict[str, int]:
    """Send dead letters again (the admin API, `connector replay`): all waiting ones, or these ids."""
    return await replay.replay(engine, settings, ids)


async def create_segment(engine: AsyncEngine, values: dict[str, Any]) -> int:
    """Create a segment and compute its initial members (their transitions marked initial), in one transaction.
    Raises IntegrityError when another segment has its name."""
    now = utcnow()
    async with engine.begin() as conn:
        segment_id = await membership.create(conn, values, now)
        await membership.recompute(conn, segment_id, now, initial=True)
    return segment_id


async def save_settings(
    engine: AsyncEngine, store: SettingsStore, changes: dict[str, Any]
) -> tuple[int, ConnectorSettings]:
    """Save a settings change (the admin API); in the same transaction, a segment_events entry that starts
    sending `changed` records what the segment's members hold now (resync.follow_members), and a new `icp`
    setting scores every account again. Raises pydantic's ValidationError or rules.RuleError (an ICP rule) naming
    the field, and then stores nothing."""
    _, before = await store.current_version()
    async with engine.begin() as conn:
        version, after = await store.save_in(conn, changes)
        await resync.follow_members(conn, before, after)
        if after.icp != before.icp:
            icp.check(after.icp)
            await carry(conn, after, Changes(accounts=await icp.recompute(conn, after.icp, utcnow())))
    store.remember((version, after))
    return version, after


async def change_segment(engine: AsyncEngine, store: SettingsStore, segment_id: int, values: dict[str, Any]) -> bool:
    """Rename a segment and/or change its rule (the admin API and the dashboard's editor), in one transaction:
    a changed rule recomputes the members; a new name is carried into every setting that names the segment,
    whatever else the same save changes, so its members stay in the filter and its segment events go on.
    False if there is no such segment. Raises ValidationError if the settings cannot follow (nothing stored)."""
    saved = None
    async with engine.begin() as conn:
        before = await membership.redefine(conn, segment_id, values, utcnow())
        if before is None:
            return False
        if values.get("name", before.name) != before.name:
            saved = await _follow_segment(conn, store, before.name, values["name"])
    if saved is not None:
        store.remember(saved)
    return True


async def delete_segment(engine: AsyncEngine, store: SettingsStore, segment_id: int) -> bool:
    """Delete a segment: its members exit (sent as the settings in force said: `retired`), and it is taken out
    of every setting that names it, in one transaction. False if there is no such segment."""
    saved = None
    async with engine.begin() as conn:
        segment = await membership.locked(conn, segment_id)
        if segment is None:
            return False
        _, settings = await store.current_version()
        await membership.end(conn, segment_id, _retired(settings, segment.name, segment.entity))
        saved = await _follow_segment(conn, store, segment.name, None)
    if saved is not None:
        store.remember(saved)
    return True


def _retired(settings: ConnectorSettings, name: str, entity: str) -> dict[str, Any]:
    """What the settings say of a segment about to be deleted, for its exits (builders read it back)."""
    synchronized = settings.synchronized_segments if entity == "user" else settings.synchronized_account_segments
    entry = next((entry for entry in settings.segment_events if entry.segment == name), None)
    return {
        "synchronized": ALL in synchronized or name in synchronized,
        "segment_events": entry.model_dump(mode="json") if entry is not None else None,
    }


async def _follow_segment(
    conn: AsyncConnection, store: SettingsStore, old: str, new: str | None
) -> tuple[int, ConnectorSettings] | None:
    """The settings that name segment `old` name `new` instead (None: a deletion, the name is removed), saved in
    the caller's transaction; the saved version, for the store to remember after the commit, or None."""
    _, settings = await store.current_version()
    changes: dict[str, Any] = {
        field: [new if name == old else name for name in getattr(settings, field) if name != old or new is not None]
        for field in ("synchronized_segments", "synchronized_account_segments")
        if old in getattr(settings, field)
    }
    if any(entry.segment == old for entry in settings.segment_events):
        changes["segment_events"] = [
            entry if entry.segment != old else entry.model_copy(update={"segment": new})
            for entry in settings.segment_events
            if entry.segment != old or new is not None
        ]
    return await store.save_in(conn, changes) if changes else None


async def rescore_accounts(
    engine: AsyncEngine, settings: ConnectorSettings, now: datetime | None = None, every: float | None = None
) -> int:
    """Score every account again with the SQL compiler; returns how many scores changed. With `every` (seconds:
    the schedule, see icp.due_on_schedule) only if no worker did within that time, else 0."""
    now = now or utcnow()
    async with engine.begin() as conn:
        if every is not None and not await schedule.claim_run(conn, ICP_RUN, every, now):
            return 0
        changed = await icp.recompute(conn, settings.icp, now)
        await carry(conn, settings, Changes(accounts=changed))
    if changed:
        log.info("icp.rescored", changed=len(changed))
    return len(changed)


async def rescan_personas(
    engine: AsyncEngine, settings: ConnectorSettings, on_page: Callable[[int], object] | None = None
) -> int:
    """Read every user's persona again from the title (`connector persona rebuild`), a page per transaction;
    the users whose persona changed are carried on like a batch's. Returns how many changed."""
    changed, after_id = 0, 0
    while True:
        async with engine.begin() as conn:
            page_changed, read = await persona_rescan.rescan_page(conn, after_id, RESCAN_PAGE)
            await carry(conn, settings, Changes(users=page_changed))
        if not read:
            return changed
        changed += len(page_changed)
        if on_page:
            on_page(len(read))
        after_id = read[-1]


async def journal_lag(engine: AsyncEngine) -> int:
    lag = await journal.pending_count(engine)
    JOURNAL_LAG.set(lag)
    return lag


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]
