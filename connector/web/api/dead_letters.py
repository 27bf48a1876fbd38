"""Dead letters in the admin API: list them, and send them again once the cause is fixed."""

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.models import DeadLetter
from connector.core.spec import format_timestamp
from connector.service import use_cases
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, json_body, query_int, query_limit, runtime_of

dead_letters = DeadLetter.__table__
MAX_REPLAY_BODY = 256 * 1024


@requires_admin
async def list_dead_letters(request: Request) -> JSONResponse:
    """
    summary: Messages Segment refused or that could not be delivered for hours, newest first
    parameters:
      - {name: limit, in: query, schema: {type: integer, maximum: 500}}
      - {name: before_id, in: query, schema: {type: integer}}
      - {name: include_replayed, in: query, schema: {type: boolean}}
    responses:
      200:
        description: "dead_letters: id, message, reason, status_code, created_at, replayed_at; and the total waiting"
        schema: {$ref: "#/components/schemas/DeadLetters"}
    """
    limit = query_limit(request, 100, 500)
    before_id = query_int(request, "before_id", None)
    query = sa.select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
    waiting = dead_letters.c.replayed_at.is_(None)
    if request.query_params.get("include_replayed", "").lower() not in ("1", "true", "yes"):
        query = query.where(waiting)
    if before_id is not None:
        query = query.where(dead_letters.c.id < before_id)
    async with runtime_of(request).engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        total = (await conn.execute(sa.select(sa.func.count()).select_from(dead_letters).where(waiting))).scalar_one()
    return JSONResponse(
        {
            "waiting": total,
            "dead_letters": [
                {
                    "id": row.id,
                    "message": row.message,
                    "reason": row.reason,
                    "status_code": row.status_code,
                    "created_at": format_timestamp(row.created_at),
                    "replayed_at": format_timestamp(row.replayed_at) if row.replayed_at else None,
                }
                for row in rows
            ],
        }
    )


@requires_admin
async def replay_dead_letters(request: Request) -> JSONResponse:
    """
    summary: Send dead letters to Segment again (all waiting ones, or the given ids), with their original
      messageIds
    requestBody:
      content: {application/json: {schema: {type: object, properties: {ids: {type: array, items: {type: integer}}}}}}
    responses:
      200:
        description: "replayed and failed counts; failed ones stay listed with the new reason"
        schema: {$ref: "#/components/schemas/Replayed"}
      400: {description: "malformed body"}
      409: {description: "no write key configured: nothing can be sent"}
    """
    body = await json_body(request, MAX_REPLAY_BODY, optional=True)
    if not isinstance(body, dict):
        raise ApiError(
            400, 'body must be a JSON object: {} replays every waiting letter, {"ids": [...]} some', field="body"
        )
    ids = body.get("ids")
    if ids is not None and not (
        isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise ApiError(400, "ids must be a list of integers", field="ids")
    runtime = runtime_of(request)
    try:
        counts = await use_cases.replay_dead_letters(runtime.engine, await runtime.settings.current(), ids)
    except ValueError as problem:
        raise ApiError(409, str(problem), field="write_key") from None
    return JSONResponse(counts)


routes = [
    Route("/api/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/api/dead-letters/replay", replay_dead_letters, methods=["POST"]),
]
