"""The use cases the web and the command line call: what changes data outside the journal, carried on as a batch.

A change to profiles, segments or settings commits in one transaction with what it sets off, carried on as
a journal batch's changes are (batch.propagate, batch.carry: ICP scores, segment memberships, the outbox):
a settings save (`save_settings`: a new `icp`, a new `segment_events` entry, segments added to the outbound
filters: their members queued at once, the first sync), a segment created, renamed,
redefined or deleted (the settings that name it follow), an erasure, the ICP schedule (`rescore_accounts`)
and a rebuild of the personas (`rescan_personas`, a page per transaction). The suppression list (`let_in`)
and dead-letter replays (the sender's own transactions) are here too: the web reaches no stage's write path
but through these use cases.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.kinds import Entity
from connector.core.logs import get_logger
from connector.core.models import utcnow
from connector.core.settings import ALL, ConnectorSettings
from connector.core.settings_store import SettingsStore
from connector.flow import journal
from connector.flow.changes import Changes, Erasure
from connector.outbound import replay, resync
from connector.processing import persona_rescan, privacy, processor
from connector.segments import icp, membership, schedule
from connector.service.batch import carry, propagate

RESCAN_PAGE = 1000
ICP_RUN = "icp"  # the ICP schedule's name in scheduled_runs
log = get_logger()


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


class Saved(NamedTuple):
    version: int
    settings: ConnectorSettings
    queued: dict[str, int]  # users and accounts queued by the save (the first sync of the segments it added)


async def save_settings(engine: AsyncEngine, store: SettingsStore, changes: dict[str, Any]) -> Saved:
    """Save a settings change (the admin API); in the same transaction, segments added to
    `synchronized_segments` / `synchronized_account_segments` have their current members queued to be sent
    (resync.queue_added: no command needed), a segment_events entry that starts sending `changed` records what
    the segment's members hold now (resync.follow_members), and a new `icp` setting scores every account again.
    Raises pydantic's ValidationError or rules.RuleError (an ICP rule) naming the field, and then stores nothing."""
    _, before = await store.current_version()
    async with engine.begin() as conn:
        version, after = await store.save_in(conn, changes)
        queued = await resync.queue_added(conn, before, after)
        await resync.follow_members(conn, before, after)
        if after.icp != before.icp:
            icp.check(after.icp)
            await carry(conn, after, Changes(accounts=await icp.recompute(conn, after.icp, utcnow())))
    store.remember((version, after))
    return Saved(version, after, queued)


async def send_everyone(engine: AsyncEngine, settings: ConnectorSettings) -> int:
    """Queue everyone in the outbound filter to be sent (the dashboard's "Send to everyone now", what
    `connector resync` does), recorded as a sync run; returns how many users were queued."""
    return await resync.resync(engine, settings)


async def sync_progress(engine: AsyncEngine) -> dict[str, Any] | None:
    """The latest sync run and its progress (resync.progress), or None before the first."""
    async with engine.connect() as conn:
        return await resync.progress(conn)


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
    """What the settings say of a segment about to be deleted, for its exits (outbound/build.py reads it back)."""
    synchronized = settings.synchronized_segments if entity == Entity.USER else settings.synchronized_account_segments
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
