"""Syncs in the admin API: the latest one's progress, and "Send to everyone now" (what `connector resync` does).

A sync is a `sync_runs` row (outbound/resync.py): a settings save that added segments to the outbound filters
queued their members, or a resync queued everyone in the filter. Its progress is counted from the activity log
since it began and from the outbox, so any web process gives the same answer.
"""

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.spec import format_timestamp
from connector.service import use_cases
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, runtime_of


def _shown(run: dict[str, Any] | None) -> dict[str, Any]:
    return {"sync": None if run is None else {**run, "started_at": format_timestamp(run["started_at"])}}


@requires_admin
async def get_sync(request: Request) -> JSONResponse:
    """
    summary: The latest sync (what a settings save or a resync queued) and how far it got
    description: >-
      `queued` counts the users and accounts the sync put in the outbox; `sent`, `skipped` and `failed` the
      users the sender sent to, skipped (unchanged, not in the filter) or failed for (retried, dead-lettered)
      since it began, from the activity log (what else was sent meanwhile counts too); `waiting` the outbox
      rows left now. `sync` is null before the first sync.
    responses:
      200: {description: "the latest sync", schema: {$ref: "#/components/schemas/Sync"}}
    """
    return JSONResponse(_shown(await use_cases.sync_progress(runtime_of(request).engine)))


@requires_admin
async def send_everyone(request: Request) -> JSONResponse:
    """
    summary: Send to everyone now (queue every user in the outbound filter, as `connector resync` does)
    description: >-
      Unchanged payloads are still not sent again (Segment already holds them). The answer is the new sync
      with its progress so far.
    responses:
      200: {description: "the sync started", schema: {$ref: "#/components/schemas/Sync"}}
      409: {description: "no write key, or nothing chosen to send: nothing would reach Segment"}
    """
    runtime = runtime_of(request)
    settings = await runtime.settings.current()
    if not settings.write_key:
        raise ApiError(409, "no write key is set: set write_key in Settings first", field="write_key")
    if not settings.synchronized_segments:
        raise ApiError(
            409, "no user segment is chosen to send: choose synchronized_segments first", field="synchronized_segments"
        )
    await use_cases.send_everyone(runtime.engine, settings)
    return JSONResponse(_shown(await use_cases.sync_progress(runtime.engine)))


routes = [
    Route("/api/sync", get_sync, methods=["GET"]),
    Route("/api/sync", send_everyone, methods=["POST"]),
]
