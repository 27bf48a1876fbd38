"""Round-trip tests: the connector's own test event, and the `round_trips` table (written only here).

A test is a track call named ROUND_TRIP_EVENT whose properties carry a fresh nonce. It goes out through the
write key without the loop flag (so Segment delivers it to the Webhooks destination) and comes back to
/segment, where `is_round_trip` recognises it before anything is journaled: `arrived` records the time on
the test's row and the message is dropped, never stored as a user's data. The web process that receives it
and the one (or the command) waiting for it meet in this table.
"""

import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.models import RoundTrip, utcnow

ROUND_TRIP_EVENT = "Segment Connector Round Trip Test"
NONCE = "round_trip_nonce"
ANONYMOUS_ID = "segment-connector-round-trip"
KEPT_FOR = timedelta(days=30)  # the status shows the latest test; older ones only say what was
table = RoundTrip.__table__


def round_trip_event(nonce: str, now: datetime) -> dict[str, Any]:
    """The test call as the transport sends it: no `integrations` flag, no `context.integration`."""
    return {
        "type": "track",
        "event": ROUND_TRIP_EVENT,
        "anonymousId": ANONYMOUS_ID,
        "messageId": f"round-trip-{nonce}",
        "timestamp": now.isoformat(),
        "properties": {NONCE: nonce},
    }


def is_round_trip(document: Any) -> bool:
    """The connector's own test event (whatever its nonce: a late or repeated one is not a user's data either)."""
    if not isinstance(document, dict) or document.get("event") != ROUND_TRIP_EVENT:
        return False
    properties = document.get("properties")
    return isinstance(properties, dict) and isinstance(properties.get(NONCE), str)


async def start(engine: AsyncEngine) -> str:
    """A new test's nonce, its row recorded as sent now; tests older than KEPT_FOR are forgotten meanwhile."""
    nonce, now = secrets.token_hex(16), utcnow()
    async with engine.begin() as conn:
        await conn.execute(table.delete().where(table.c.sent_at < now - KEPT_FOR))
        await conn.execute(table.insert().values(nonce=nonce, sent_at=now))
    return nonce


async def refused(engine: AsyncEngine, nonce: str, reason: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(table.update().where(table.c.nonce == nonce).values(refused=reason))


async def arrived(engine: AsyncEngine, document: dict[str, Any]) -> None:
    """Record the first arrival of a test (a redelivery keeps the first time)."""
    nonce = document["properties"][NONCE]
    async with engine.begin() as conn:
        await conn.execute(
            table.update().where(table.c.nonce == nonce, table.c.arrived_at.is_(None)).values(arrived_at=utcnow())
        )


async def read(engine: AsyncEngine, nonce: str | None = None) -> dict[str, Any] | None:
    """A test's row (by nonce), or the latest one; None when there is none."""
    query = sa.select(table.c.nonce, table.c.sent_at, table.c.refused, table.c.arrived_at)
    query = query.where(table.c.nonce == nonce) if nonce else query.order_by(table.c.id.desc()).limit(1)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None
