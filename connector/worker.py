"""The worker: drain the journal, and send the outbox and purge expired rows alongside; all stop cleanly when asked."""

import asyncio

from connector.heartbeat import beat_until
from connector.logs import get_logger
from connector.outbound.sender import Sender, outbox_depth
from connector.processing.changes import Changes
from connector.processing.processor import journal_lag, process_batch
from connector.retention import purge
from connector.runtime import Runtime
from connector.segments.schedule import recompute_due

IDLE_SECONDS = 0.2
SENDERS = 2  # two claim/build/send loops: one builds while the other waits on Segment
log = get_logger()


async def run_once(runtime: Runtime) -> Changes:
    """One round of work: process pending journal messages until none are left."""
    total = Changes()
    while True:
        settings = await runtime.settings.current()
        changes = await process_batch(runtime.engine, settings, runtime.env.journal_batch_size)
        total.add(changes)
        if changes.processed + changes.failed + changes.skipped == 0:
            return total


async def run_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    log.info("worker.start")
    sending = [asyncio.create_task(send_forever(runtime, stop)) for _ in range(SENDERS)]
    beating = asyncio.create_task(beat_until(runtime.engine, stop))
    purging = asyncio.create_task(purge_forever(runtime, stop))
    while not stop.is_set():
        try:
            changes = await run_once(runtime)
            await journal_lag(runtime.engine)
            await recompute_due(runtime.engine, runtime.env.segment_recompute_seconds)
            if changes.processed or changes.failed:
                log.info("worker.batch.done", processed=changes.processed, failed=changes.failed,
                         skipped=changes.skipped)
        except Exception as error:  # a storage outage must not kill the worker: wait and retry
            log.error("worker.error", error=f"{type(error).__name__}: {error}"[:500])
            await _sleep(stop, 2.0)
            continue
        await _sleep(stop, IDLE_SECONDS)
    await asyncio.gather(*sending, beating, purging)
    log.info("worker.stop")


async def send_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    """Send the outbox until asked to stop; a round that claimed rows is followed at once by the next."""
    sender = Sender(runtime)
    while not stop.is_set():
        try:
            claimed = (await sender.send_once()).claimed
            await outbox_depth(runtime.engine)
        except Exception as error:  # a storage outage must not kill the sender: wait and retry
            log.error("outgoing.error", error=f"{type(error).__name__}: {error}"[:500])
            await _sleep(stop, 2.0)
            continue
        if not claimed:
            await _sleep(stop, runtime.env.outbound_batch_wait_seconds)


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
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
