"""Time-based rules change with the clock alone: recompute them on a schedule.

A segment is due when its rule is time-based (rules.is_time_based) and its last
computation (segments.computed_at) is older than the interval, so the schedule
survives restarts and is shared by several workers. Other scheduled work (the ICP
rescore) records its last run in `scheduled_runs` and is claimed the same way
(`claim_run`): of several workers, one runs it per interval.
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.db import insert
from connector.core.models import ScheduledRun, Segment, utcnow
from connector.segments.membership import recompute
from connector.segments.rules import is_time_based

segments = Segment.__table__
runs = ScheduledRun.__table__
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


async def recompute_due(engine: AsyncEngine, interval_seconds: float, now: datetime | None = None) -> list[int]:
    """Recompute each time-based segment not computed within the interval; return their ids."""
    now = now or utcnow()
    stale = now - timedelta(seconds=interval_seconds)
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(segments.c.id, segments.c.rule)
            .where(sa.or_(segments.c.computed_at.is_(None), segments.c.computed_at <= stale))
            .order_by(segments.c.id)
        )
        due = [row.id for row in rows if is_time_based(row.rule)]
    for segment_id in due:
        async with engine.begin() as conn:
            await recompute(conn, segment_id, now)
    return due


async def claim_run(conn: AsyncConnection, name: str, interval_seconds: float, now: datetime) -> bool:
    """Whether the work `name` is due (its last run older than the interval); if so, this run is recorded in the
    caller's transaction, whose lock on the record makes another worker wait for its end and then find the run
    done. A run that rolls back leaves the work due."""
    last = runs.c.ran_at
    stale = now - timedelta(seconds=interval_seconds)
    # Read without a lock first: a worker asks after every batch, and the work is rarely due.
    recorded = await conn.scalar(sa.select(last).where(runs.c.name == name))
    if recorded is not None and recorded > stale:
        return False
    await conn.execute(insert(runs, conn.dialect.name).values(name=name, ran_at=NEVER).on_conflict_do_nothing())
    locked = (await conn.execute(sa.select(last).where(runs.c.name == name).with_for_update())).scalar_one()
    if locked > stale:
        return False
    await conn.execute(runs.update().where(runs.c.name == name).values(ran_at=now))
    return True


async def release_run(conn: AsyncConnection, name: str) -> None:
    """Make the work `name` due again at once: a run held as a lease (a claim whose interval is the longest it may
    take) gives it back when it ends, so the next claim need not wait for the interval."""
    await conn.execute(runs.update().where(runs.c.name == name).values(ran_at=NEVER))
