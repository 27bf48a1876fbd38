"""A profile's activity log, and what was last sent and would be sent for a user now, in the admin API.

The activity pages like a user's events: newest first, `before_id` the last id of the
previous page. "What would be sent" is the sender's own builder run on the user's outbox
key, read-only: the same messages and the same reasons, without sending or storing. "What was
last sent" is the latest `outgoing.user.success` entry of each call type (identify, group), as
the sender logged it on Segment's acceptance; it goes with the log's retention.
"""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.kinds import Entity, MessageType, OutboxKind, Outcome, outgoing_action
from connector.core.spec import format_timestamp
from connector.flow import outbox
from connector.flow.activity import activity_log
from connector.outbound.build import build
from connector.web import profiles
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, query_int, query_limit, runtime_of

LAST_SENT_TYPES = (MessageType.IDENTIFY, MessageType.GROUP)


async def _activity(request: Request, entity: Entity, entity_id: int) -> JSONResponse:
    limit = query_limit(request, 100, 500)
    before_id = query_int(request, "before_id", None)
    query = sa.select(activity_log).where(activity_log.c.entity == entity, activity_log.c.entity_id == entity_id)
    if before_id is not None:
        query = query.where(activity_log.c.id < before_id)
    async with runtime_of(request).engine.connect() as conn:
        if not await profiles.exists(conn, entity, entity_id):
            raise ApiError(404, f"no such {entity}")
        rows = await conn.execute(query.order_by(activity_log.c.id.desc()).limit(limit))
        return JSONResponse({"activity": [_entry(row) for row in rows]})


def _entry(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "action": row.action,
        "message_id": row.message_id,
        "details": row.details,
        "created_at": format_timestamp(row.created_at),
    }


async def last_sent(conn: AsyncConnection, user_id: int) -> list[dict[str, Any]]:
    """The latest delivered identify and group of a user, from the activity log."""
    found = []
    for kind in LAST_SENT_TYPES:
        row = (
            await conn.execute(
                sa.select(activity_log)
                .where(
                    activity_log.c.entity == Entity.USER,
                    activity_log.c.entity_id == user_id,
                    activity_log.c.action == outgoing_action(Entity.USER, Outcome.SUCCESS),
                    activity_log.c.details["type"].as_string() == kind,
                )
                .order_by(activity_log.c.id.desc())
                .limit(1)
            )
        ).first()
        if row is not None:
            found.append(_entry(row))
    return found


@requires_admin
async def get_user_activity(request: Request) -> JSONResponse:
    """
    summary: "A user's activity log, newest first: changes in, segments entered and exited, messages sent,
      skipped (and why) or failed"
    parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 0, maximum: 500, default: 100}}
      - {name: before_id, in: query, description: "the last id of the previous page", schema: {type: integer}}
    responses:
      200: {description: "entries, newest first", schema: {$ref: "#/components/schemas/Activity"}}
      404: {description: "no such user"}
    """
    return await _activity(request, Entity.USER, request.path_params["user_id"])


@requires_admin
async def get_account_activity(request: Request) -> JSONResponse:
    """
    summary: "An account's activity log, newest first: changes in, segments entered and exited, messages sent,
      skipped (and why) or failed"
    parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 0, maximum: 500, default: 100}}
      - {name: before_id, in: query, description: "the last id of the previous page", schema: {type: integer}}
    responses:
      200: {description: "entries, newest first", schema: {$ref: "#/components/schemas/Activity"}}
      404: {description: "no such account"}
    """
    return await _activity(request, Entity.ACCOUNT, request.path_params["account_id"])


@requires_admin
async def get_user_outgoing(request: Request) -> JSONResponse:
    """
    summary: What would be sent to Segment for this user now (identify, group), why anything would not, and what
      was last sent
    responses:
      200:
        description: "the messages the sender would build now, the reasons for what it would not send, and the
          last identify and group delivered (activity entries)"
        schema: {$ref: "#/components/schemas/Outgoing"}
      404: {description: "no such user"}
    """
    user_id = request.path_params["user_id"]
    runtime = runtime_of(request)
    settings = await runtime.settings.current()
    async with runtime.engine.connect() as conn:
        if not await profiles.exists(conn, Entity.USER, user_id):
            raise ApiError(404, "no such user")
        built = await build(conn, settings, [outbox.outbox_key(OutboxKind.USER, user_id)])
        sent = await last_sent(conn, user_id)
    not_sent = list(built.skipped.values())
    if not settings.write_key:
        not_sent.append("no write_key in settings: nothing is sent")
    return JSONResponse(
        {"messages": [outgoing.message for outgoing in built.messages], "not_sent": not_sent, "last_sent": sent}
    )


routes = [
    Route("/api/users/{user_id:id}/activity", get_user_activity, methods=["GET"]),
    Route("/api/accounts/{account_id:id}/activity", get_account_activity, methods=["GET"]),
    Route("/api/users/{user_id:id}/outgoing", get_user_outgoing, methods=["GET"]),
]
