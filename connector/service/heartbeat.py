"""Worker heartbeats: each worker process touches its row every few seconds.

The status reads the newest beat: none within 60 s means no worker is running and nothing
is processed or sent. A worker that stops cleanly removes its row; a killed one leaves a
stale row that stops counting after 60 s and is removed by the others after a day.
"""

import asyncio
import contextlib
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.db import insert
from connector.core.logs import get_logger
from connector.core.models import WorkerHeartbeat, utcnow

heartbeats = WorkerHeartbeat.__table__
BEAT_EVERY_SECONDS = 10.0
FORGET_AFTER = timedelta(days=1)
log = get_logger()


def worker_name() -> str:
    """Heroku's dyno name (`worker.1`) where there is one, else the host; with the pid, unique per process."""
    return f"{os.environ.get('DYNO') or socket.gethostname()}:{os.getpid()}"[:128]


async def beat_until(engine: AsyncEngine, stop: asyncio.Event, name: str | None = None) -> None:
    """Beat every BEAT_EVERY_SECONDS until asked to stop, then remove this worker's row.

    Its own task, so a long batch (a backfill drains for minutes) never looks like a dead worker;
    a stuck processor shows as journal lag instead.
    """
    name = name or worker_name()
    started_at = utcnow()
    while not stop.is_set():
        try:
            await beat(engine, name, started_at)
        except Exception as error:  # a storage outage must not stop the beats that follow it
            log.error("worker.heartbeat.error", error=f"{type(error).__name__}: {error}"[:500])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=BEAT_EVERY_SECONDS)
    with contextlib.suppress(Exception):  # a database gone at shutdown leaves a row that ages out
        async with engine.begin() as conn:
            await conn.execute(heartbeats.delete().where(heartbeats.c.worker == name))


async def beat(engine: AsyncEngine, name: str, started_at: datetime) -> None:
    now = utcnow()
    statement = insert(heartbeats, engine.dialect.name).values(worker=name, started_at=started_at, beat_at=now)
    async with engine.begin() as conn:
        await conn.execute(statement.on_conflict_do_update(index_elements=["worker"], set_={"beat_at": now}))
        await conn.execute(heartbeats.delete().where(heartbeats.c.beat_at < now - FORGET_AFTER))
