"""Erasure and the suppression list in the admin API.

`DELETE /api/users/{id}` and `DELETE /api/users?user_id=|anonymous_id=|email=` (the lookups of
`GET /api/users`) erase a profile at once, between journal batches (`use_cases.erase_user`);
an identifier no profile holds is a 404 and suppresses nothing. The suppression list shows
hashes only: the values are not kept, so an entry is removed by giving its raw value again.
"""

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.core.models import Suppression
from connector.core.spec import format_timestamp
from connector.flow.changes import Erasure
from connector.service.use_cases import erase_user, let_in
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, find_user_by_query, query_int, query_limit, runtime_of

suppressions = Suppression.__table__


@requires_admin
async def erase_by_id(request: Request) -> JSONResponse:
    """
    summary: Erase a user and everything derived from it; its identifiers go on the suppression list
    description: >-
      Removes identifiers, events, activity, usage, audience and segment memberships (silently: no
      Segment Exited is sent for a person who asked to be forgotten), outbox rows, delivery state,
      dead letters carrying its identifiers, and the payloads of its journal messages. The account
      it was linked to stays, without the link. Later messages for its identifiers are dropped
      (reason `suppressed`) until DELETE /api/suppressions/{value}.
    responses:
      200: {description: "erased: rows removed or blanked per table; suppressed: identifiers put on the list",
            schema: {$ref: "#/components/schemas/Erasure"}}
      404: {description: "no such user"}
    """
    return await _erase(request, request.path_params["user_id"])


@requires_admin
async def erase_by_identifier(request: Request) -> JSONResponse:
    """
    summary: Erase the user holding a user_id, anonymous_id or email (give one), as DELETE /api/users/{user_id}
    parameters:
      - {name: user_id, in: query, schema: {type: string}}
      - {name: anonymous_id, in: query, schema: {type: string}}
      - {name: email, in: query, schema: {type: string}}
    responses:
      200: {description: "as DELETE /api/users/{user_id}", schema: {$ref: "#/components/schemas/Erasure"}}
      400: {description: "none of user_id, anonymous_id or email given"}
      404: {description: "no user holds that identifier"}
    """
    async with runtime_of(request).engine.connect() as conn:
        found = await find_user_by_query(request, conn)
    return await _erase(request, found)


async def _erase(request: Request, user_id: int) -> JSONResponse:
    runtime = runtime_of(request)
    erasure: Erasure | None = await erase_user(runtime.engine, await runtime.settings.current(), user_id)
    if erasure is None:
        raise ApiError(404, "no such user")
    return JSONResponse({"id": user_id, "erased": erasure.counts, "suppressed": len(erasure.claims)})


@requires_admin
async def list_suppressions(request: Request) -> JSONResponse:
    """
    summary: The suppression list, newest first (hashes only; the values are not kept)
    parameters:
      - {name: limit, in: query, schema: {type: integer, maximum: 500}}
      - {name: offset, in: query, schema: {type: integer, minimum: 0}}
    responses:
      200: {description: "the entries of this page, and the total", schema: {$ref: "#/components/schemas/Suppressions"}}
    """
    limit = query_limit(request, 100, 500)
    offset = max(0, query_int(request, "offset", 0))
    query = (
        sa.select(suppressions)
        .order_by(suppressions.c.created_at.desc(), suppressions.c.kind, suppressions.c.value_hash)
        .limit(limit)
        .offset(offset)
    )
    async with runtime_of(request).engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        total = (await conn.execute(sa.select(sa.func.count()).select_from(suppressions))).scalar_one()
    return JSONResponse(
        {
            "total": total,
            "suppressions": [
                {"kind": row.kind, "hash": row.value_hash, "created_at": format_timestamp(row.created_at)}
                for row in rows
            ],
        }
    )


@requires_admin
async def delete_suppression(request: Request) -> Response:
    """
    summary: Let an identifier's messages in again (by its raw value, which is hashed; an email in any case)
    parameters:
      - {name: value, in: path, required: true, schema: {type: string},
         description: "percent-encoded in full, a dot as %2E too: clients drop a path's . and .. segments"}
    responses:
      204: {description: "removed; later messages for it are processed again"}
      404: {description: "the value is not on the suppression list"}
    """
    if await let_in(runtime_of(request).engine, request.path_params["value"]):
        return Response(status_code=204)
    raise ApiError(404, "this value is not on the suppression list")


routes = [
    Route("/api/users/{user_id:id}", erase_by_id, methods=["DELETE"]),
    Route("/api/users", erase_by_identifier, methods=["DELETE"]),
    Route("/api/suppressions", list_suppressions, methods=["GET"]),
    Route("/api/suppressions/{value:path}", delete_suppression, methods=["DELETE"]),
]
