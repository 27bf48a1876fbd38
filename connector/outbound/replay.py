"""Dead letters sent again, on request (the admin API, `connector replay`): the same messageIds, so Segment
drops what it already holds."""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.logs import get_logger
from connector.core.models import DeadLetter, utcnow
from connector.core.settings import ConnectorSettings
from connector.outbound.transport import Failure, batches, post_batch, wire_size

dead_letters = DeadLetter.__table__
log = get_logger()


async def replay(engine: AsyncEngine, settings: ConnectorSettings, ids: list[int] | None = None) -> dict[str, int]:
    """Send dead letters again (all waiting ones, or these ids); the same messageIds, so no duplicates."""
    if not settings.write_key:
        raise ValueError("no write_key in settings: nothing can be sent")
    query = sa.select(dead_letters.c.id, dead_letters.c.message).where(dead_letters.c.replayed_at.is_(None))
    if ids is not None:
        query = query.where(dead_letters.c.id.in_(ids))
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(dead_letters.c.id))).all()
    replayed = failed = 0
    for group in batches(rows, lambda row: wire_size(row.message), settings.write_key):
        failure = await post_batch(settings, [row.message for row in group])
        async with engine.begin() as conn:
            await _record_replay(conn, [row.id for row in group], failure)
        if failure is None:
            replayed += len(group)
        else:
            failed += len(group)
            log.warning("outgoing.replay.error", reason=failure.reason, status=failure.status, count=len(group))
    log.info("outgoing.replay.done", replayed=replayed, failed=failed)
    return {"replayed": replayed, "failed": failed}


async def _record_replay(conn: AsyncConnection, ids: list[int], failure: Failure | None) -> None:
    where = dead_letters.c.id.in_(ids)
    if failure is None:
        await conn.execute(dead_letters.update().where(where).values(replayed_at=utcnow()))
    else:
        await conn.execute(dead_letters.update().where(where).values(reason=failure.reason, status_code=failure.status))
