"""Time-based rules change with the clock alone: recompute them on a schedule.

A segment is due when its rule is time-based (rules.is_time_based) and its last
computation (segments.computed_at) is older than the interval, so the schedule
survives restarts and is shared by several workers.
"""

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.models import Segment, utcnow
from connector.segments.membership import recompute
from connector.segments.rules import is_time_based

segments = Segment.__table__


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
