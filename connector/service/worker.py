"""The worker: drain the journal, send the outbox and purge expired rows alongside; all stop cleanly when asked.

Stopping (SIGTERM: Heroku allows 30 s before SIGKILL): no new journal batch or outbox claim
is started; the batch in flight commits (one transaction) and a send round in flight is
acknowledged. What has not finished STOP_GRACE_SECONDS after the stop is cancelled: a journal
batch rolls back, and a send round releases its claims (sender.py), so a fresh worker takes
both up at once rather than after the lease.

SQLite runs one worker (its one writer would make a second wait, and journal order would not
hold): a worker on SQLite holds an exclusive lock on a file next to the database for its life.
A second one, `connector worker` or `connector serve` with the embedded worker, says so and
exits; a crashed worker's lock goes with its process.
"""

import asyncio
import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from connector.core.db import is_postgres
from connector.core.logs import get_logger
from connector.core.runtime import Runtime
from connector.flow import journal, outbox
from connector.flow.changes import Changes
from connector.outbound.sender import Sender
from connector.segments.icp import due_on_schedule
from connector.segments.schedule import recompute_due
from connector.service.batch import journal_lag, process_batch
from connector.service.heartbeat import beat_until
from connector.service.retention import purge
from connector.service.use_cases import rescore_accounts

IDLE_SECONDS = 0.2
BATCHES_IN_FLIGHT = 2
# Claim/build/send loops: one builds while the others wait on Segment or on the database. Three drained a bulk
# push 5-15 % faster than two (docs/performance.md, "Bulk push"); four no faster than three.
SENDERS = 3
DEPTH_SECONDS = 1.0
# A send already on the wire runs out its request timeout (15 s) after being cancelled: the grace
# plus that stays within Heroku's 30 s.
STOP_GRACE_SECONDS = 10.0
log = get_logger()


class AnotherWorker(RuntimeError):
    """A worker already runs on this SQLite database."""


@contextlib.contextmanager
def sole_worker(database_url: str) -> Iterator[None]:
    """On a SQLite file, hold its worker lock while the block runs, or raise AnotherWorker.

    flock, not a PID file: the kernel drops the lock when the process ends, however it ends.
    PostgreSQL takes several workers, and an in-memory SQLite database is one process's own.
    """
    path = _lock_path(database_url)
    if path is None:
        yield
        return
    with path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            reason = f"SQLite runs one worker, and another worker process already runs on {path.with_suffix('')}"
            log.error("worker.refused", reason=reason)
            raise AnotherWorker(reason) from None
        yield


def worker_elsewhere(database_url: str) -> Path | None:
    """The SQLite file whose worker lock another process holds now, or None (free, or not a SQLite file)."""
    path = _lock_path(database_url)
    if path is None or not path.exists():
        return None
    with path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return path.with_suffix("")
        fcntl.flock(lock, fcntl.LOCK_UN)
    return None


def _lock_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database).absolute()
    return path.with_name(path.name + ".worker-lock")


async def run_once(runtime: Runtime, stop: asyncio.Event | None = None) -> Changes:
    """One round of work: process pending journal messages until none are left (or asked to stop).

    On PostgreSQL BATCHES_IN_FLIGHT batches run at once, each on its own connection and partitions, so
    one batch's Python work overlaps the other's time in the database (a worker has one core to
    itself at most; the database has the others)."""
    if not await journal.has_pending(runtime.engine):  # an idle worker's every turn: a probe, not a batch per loop
        return Changes()
    loops = BATCHES_IN_FLIGHT if is_postgres(runtime.engine) else 1
    try:
        async with asyncio.TaskGroup() as group:
            drains = [group.create_task(_drain(runtime, stop)) for _ in range(loops)]
    except ExceptionGroup as errors:  # the first failure is the one to log; the other batch was rolled back
        raise errors.exceptions[0] from None
    total = Changes()
    for drain in drains:
        total.add(drain.result())
    return total


async def _drain(runtime: Runtime, stop: asyncio.Event | None) -> Changes:
    total = Changes()
    idle_since: float | None = None
    while True:
        settings = await runtime.settings.current()
        changes = await process_batch(runtime.engine, settings, runtime.env.journal_batch_size)
        total.add(changes)
        if stop is not None and stop.is_set():
            return total
        if changes.processed + changes.failed + changes.skipped:
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since > 0.5 or not await journal.has_pending(runtime.engine):
            return total
        await asyncio.sleep(0.02)


async def run_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    log.info("worker.start")
    sender = Sender(runtime)  # one for the loops: what it has said (no write key) is said once per worker
    tasks = [
        asyncio.create_task(process_forever(runtime, stop)),
        asyncio.create_task(beat_until(runtime.engine, stop)),
        asyncio.create_task(purge_forever(runtime, stop)),
        *(asyncio.create_task(send_forever(sender, stop, phase=index / SENDERS)) for index in range(SENDERS)),
    ]
    try:
        await stop.wait()
        _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
    finally:  # also when run_forever itself is cancelled: no task outlives it
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # each task logs its own errors
    log.info("worker.stop", cancelled=len(late))


async def process_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    """Process the journal, then the segment schedule, until asked to stop.

    The ICP scores are recomputed on the segment schedule too when their rules need it
    (icp.due_on_schedule): by one worker per interval, whichever claims it first (schedule.claim_run)."""
    while not stop.is_set():
        try:
            changes = await run_once(runtime, stop)
            if not stop.is_set():
                await journal_lag(runtime.engine)
                await recompute_due(runtime.engine, runtime.env.segment_recompute_seconds)
                settings = await runtime.settings.current()
                if due_on_schedule(settings.icp):
                    await rescore_accounts(runtime.engine, settings, every=runtime.env.segment_recompute_seconds)
            if changes.processed or changes.failed:
                log.info(
                    "worker.batch.done", processed=changes.processed, failed=changes.failed, skipped=changes.skipped
                )
        except Exception as error:  # a storage outage must not kill the worker: wait and retry
            log.error("worker.error", error=f"{type(error).__name__}: {error}"[:500])
            await _sleep(stop, 2.0)
            continue
        await _sleep(stop, IDLE_SECONDS)


async def send_forever(sender: Sender, stop: asyncio.Event, phase: float = 0.0) -> None:
    """Send the outbox until asked to stop; a round that claimed rows is followed at once by the next. The
    loops of a worker share their `sender` (its rounds keep nothing between them but what it has said).

    A loop that claimed nothing looks again at its next turn: every OUTBOUND_BATCH_WAIT_SECONDS, offset by
    `phase` of that period, so that the senders of a worker look in turn, not together (rows queued while
    all are idle wait at most a period divided by the number of senders for the first look). The outbox depth
    gauge is counted at most every DEPTH_SECONDS, not after every round."""
    runtime = sender.runtime
    wait = runtime.env.outbound_batch_wait_seconds
    depth_due = 0.0
    while not stop.is_set():
        try:
            claimed = (await sender.send_once()).claimed
            if time.monotonic() >= depth_due:
                await outbox.depth(runtime.engine)
                depth_due = time.monotonic() + DEPTH_SECONDS
        except Exception as error:  # a storage outage must not kill the sender: wait and retry
            log.error("outgoing.error", error=f"{type(error).__name__}: {error}"[:500])
            await _sleep(stop, 2.0)
            continue
        if not claimed:
            await _sleep(stop, wait - (time.monotonic() - phase * wait) % wait if wait > 0 else 0)


async def purge_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    """A retention pass every RETENTION_INTERVAL_SECONDS, the first at start.

    Its own task: a pass over a large backlog takes a while, and processing must not wait for it.
    """
    while not stop.is_set():
        try:
            await purge(runtime.engine, await runtime.settings.current(), stop=stop)
        except Exception as error:  # a storage outage must not stop the passes that follow it
            log.error("retention.error", error=f"{type(error).__name__}: {error}"[:500])
        await _sleep(stop, runtime.env.retention_interval_seconds)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
