"""Dead letters sent again, on request (the admin API, `connector replay`): the same messageIds, so Segment
drops what it already holds."""

from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.logs import get_logger
from connector.core.settings import ConnectorSettings
from connector.outbound import dead_letters
from connector.outbound.transport import batches, encode, post_batch

log = get_logger()


async def replay(engine: AsyncEngine, settings: ConnectorSettings, ids: list[int] | None = None) -> dict[str, int]:
    """Send dead letters again (all waiting ones, or these ids); the same messageIds, so no duplicates."""
    if not settings.write_key:
        raise ValueError("no write_key in settings: nothing can be sent")
    async with engine.connect() as conn:
        rows = await dead_letters.waiting(conn, ids)
    replayed = failed = 0
    encoded = {row.id: encode(row.message) for row in rows}
    for group in batches(rows, lambda row: len(encoded[row.id]), settings.write_key):
        failure = await post_batch(settings, [encoded[row.id] for row in group])
        async with engine.begin() as conn:
            if failure is None:
                await dead_letters.replayed(conn, [row.id for row in group])
            else:
                await dead_letters.refused_again(conn, [row.id for row in group], failure.reason, failure.status)
        if failure is None:
            replayed += len(group)
        else:
            failed += len(group)
            log.warning("outgoing.replay.error", reason=failure.reason, status=failure.status, count=len(group))
    log.info("outgoing.replay.done", replayed=replayed, failed=failed)
    return {"replayed": replayed, "failed": failed}
