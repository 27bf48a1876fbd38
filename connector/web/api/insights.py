"""Product usage and audiences of one profile, shaped for the dashboard's charts.

`features` feeds a top-features chart (one bar per feature: count, and the positive /
neutral / negative split behind its score); `trend` feeds a usage-trend chart (one point
per ISO week, oldest first). Each docstring is its OpenAPI entry.
"""

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.kinds import Entity
from connector.profile import audiences, usage
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, runtime_of
from connector.web.profiles import exists

MAX_FEATURES = 100


async def _usage(request: Request, entity: Entity, entity_id: int) -> JSONResponse:
    limit = request.query_params.get("limit", "10")
    if not limit.isdecimal() or len(limit) > len(str(MAX_FEATURES)) or not 1 <= int(limit) <= MAX_FEATURES:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_FEATURES}", field="limit")
    async with runtime_of(request).engine.connect() as conn:
        if not await exists(conn, entity, entity_id):
            raise ApiError(404, f"no such {entity}")
        found = await usage.report(conn, Entity(entity), entity_id, feature_limit=int(limit))
    return JSONResponse({"entity": entity, "id": entity_id, **found})


@requires_admin
async def get_user_usage(request: Request) -> JSONResponse:
    """
    summary: A user's product usage (track events with properties.feature)
    parameters:
      - name: limit
        in: query
        description: "features listed, by count"
        schema: {type: integer, minimum: 1, maximum: 100, default: 10}
    responses:
      200:
        description: "attributes (the usage.* computed attributes), totals, features (by count, with the
          positive/neutral/negative split), trend (12 ISO weeks: week, count, score)"
        schema: {$ref: "#/components/schemas/Usage"}
      400: {description: "limit is not an integer from 1 to 100"}
      404: {description: "no such user"}
    """
    return await _usage(request, Entity.USER, request.path_params["user_id"])


@requires_admin
async def get_account_usage(request: Request) -> JSONResponse:
    """
    summary: An account's product usage (events of its users while linked to it)
    parameters:
      - name: limit
        in: query
        description: "features listed, by count"
        schema: {type: integer, minimum: 1, maximum: 100, default: 10}
    responses:
      200: {description: "same shape as a user's usage", schema: {$ref: "#/components/schemas/Usage"}}
      400: {description: "limit is not an integer from 1 to 100"}
      404: {description: "no such account"}
    """
    return await _usage(request, Entity.ACCOUNT, request.path_params["account_id"])


@requires_admin
async def get_user_audiences(request: Request) -> JSONResponse:
    """
    summary: The Engage audiences a user entered or exited
    responses:
      200:
        description: "audiences: key -> member, entered_at, exited_at (latest of each)"
        schema: {$ref: "#/components/schemas/Audiences"}
      404: {description: "no such user"}
    """
    user_id = request.path_params["user_id"]
    async with runtime_of(request).engine.connect() as conn:
        if not await exists(conn, Entity.USER, user_id):
            raise ApiError(404, "no such user")
        found = await audiences.user_audiences(conn, user_id)
    return JSONResponse({"id": user_id, "audiences": found})


routes = [
    Route("/api/users/{user_id:id}/usage", get_user_usage, methods=["GET"]),
    Route("/api/accounts/{account_id:id}/usage", get_account_usage, methods=["GET"]),
    Route("/api/users/{user_id:id}/audiences", get_user_audiences, methods=["GET"]),
]
