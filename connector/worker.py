"""The worker loop: drain the journal, then sleep briefly; stop cleanly when asked."""

import asyncio

from connector.logs import get_logger
from connector.processing.changes import Changes
from connector.processing.processor import journal_lag, process_batch
from connector.runtime import Runtime

IDLE_SECONDS = 0.2
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
    while not stop.is_set():
        try:
            changes = await run_once(runtime)
            await journal_lag(runtime.engine)
            if changes.processed or changes.failed:
                log.info("worker.batch.done", processed=changes.processed, failed=changes.failed,
                         skipped=changes.skipped)
        except Exception as error:  # a storage outage must not kill the worker: wait and retry
            log.error("worker.error", error=f"{type(error).__name__}: {error}"[:500])
            await _sleep(stop, 2.0)
            continue
        await _sleep(stop, IDLE_SECONDS)
    log.info("worker.stop")


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
