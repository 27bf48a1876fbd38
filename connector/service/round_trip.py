"""The round-trip test (`POST /api/segment-workspace/round-trip`, `connector segment-workspace test`).

One test event goes to Segment through the write key, without the loop flag, and the test waits for Segment
to deliver it back to /segment (flow/round_trips.py recognises it there and records its arrival). The verdict
names the half that failed: `refused` (the way out: no write key, or Segment refused it), `lost` (sent, never
came back within the wait: the Webhooks destination, or a write key Segment does not know, which its tracking
API accepts with a 200 all the same), or `works` with the seconds it took.
"""

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.logs import get_logger
from connector.core.models import utcnow
from connector.core.settings import ConnectorSettings
from connector.core.spec import format_timestamp
from connector.flow import round_trips
from connector.outbound.transport import encode, post_batch

WAIT_SECONDS = 30.0
POLL_SECONDS = 0.2
log = get_logger()


async def run(engine: AsyncEngine, settings: ConnectorSettings, wait_seconds: float = WAIT_SECONDS) -> dict[str, Any]:
    """Send one test event and wait for it; the verdict (see `verdict`)."""
    if not settings.write_key:
        return {"outcome": "refused", "message": "no write key is set: the test event cannot be sent"}
    nonce = await round_trips.start(engine)
    failure = await post_batch(settings, [encode(round_trips.round_trip_event(nonce, utcnow()))])
    if failure is not None:
        await round_trips.refused(engine, nonce, failure.reason)
    else:
        await _wait_for_arrival(engine, nonce, wait_seconds)
    result = verdict(await round_trips.read(engine, nonce), wait_seconds)
    log.info("workspace.round_trip", outcome=result["outcome"], seconds=result.get("seconds"))
    return result


async def _wait_for_arrival(engine: AsyncEngine, nonce: str, wait_seconds: float) -> None:
    """Poll the test's row: the arrival may reach any web process, and they share only the database."""
    for _ in range(max(1, round(wait_seconds / POLL_SECONDS))):
        if (await round_trips.read(engine, nonce) or {}).get("arrived_at"):
            return
        await asyncio.sleep(POLL_SECONDS)


def verdict(test: dict[str, Any] | None, wait_seconds: float = WAIT_SECONDS) -> dict[str, Any]:
    """A test's row in words: `works` with `seconds`, `refused` (the write key's half), `lost` (the destination's
    half), `waiting` (sent, still within its wait), or None before the first test."""
    if test is None:
        return {"outcome": None, "message": "no round-trip test has run yet"}
    shown = {"sent_at": format_timestamp(test["sent_at"])}
    if test["refused"]:
        message = (
            "Segment refused the test event on the way out (check the write key, and segment_api_host: "
            f"the region's tracking host): {test['refused']}"
        )
        return {**shown, "outcome": "refused", "message": message}
    if test["arrived_at"]:
        seconds = round((test["arrived_at"] - test["sent_at"]).total_seconds(), 1)
        return {**shown, "outcome": "works", "seconds": seconds, "message": f"round trip works, {seconds} s"}
    if (utcnow() - test["sent_at"]).total_seconds() < wait_seconds:
        return {**shown, "outcome": "waiting", "message": "the test event was sent; waiting for it to come back"}
    message = (  # Segment's tracking API answers 200 even to a write key it does not know: that is lost too
        "Segment accepted the test event but never delivered it back to /segment: check the Webhooks "
        "destination on the write key's source (enabled, its URL and Authorization header), and that the "
        "write key is that source's (Segment accepts a write key it does not know without saying so)"
    )
    return {**shown, "outcome": "lost", "message": message}
