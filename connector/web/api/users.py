"""Users in the admin API: one found by an identifier or by id (its profile), and its events."""

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.kinds import Entity
from connector.web import profiles
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, find_user_by_query, query_int, query_limit, runtime_of


@requires_admin
async def get_users(request: Request) -> JSONResponse:
    """
    summary: Find one user by user_id, anonymous_id or email
    parameters:
      - {name: user_id, in: query, schema: {type: string}}
      - {name: anonymous_id, in: query, schema: {type: string}}
      - {name: email, in: query, schema: {type: string}}
    responses:
      200:
        description: "the profile: identifiers, traits, account, segments, recent events"
        schema: {$ref: "#/components/schemas/User"}
      400: {description: "none of user_id, anonymous_id, email given"}
      404: {description: "no such user"}
    """
    async with runtime_of(request).engine.connect() as conn:
        profile = await profiles.user_profile(conn, await find_user_by_query(request, conn))
    if not profile:
        raise ApiError(404, "no such user")
    return JSONResponse(profile)


@requires_admin
async def get_user(request: Request) -> JSONResponse:
    """
    summary: One user by internal id
    responses:
      200: {description: "the profile", schema: {$ref: "#/components/schemas/User"}}
      404: {description: "no such user"}
    """
    async with runtime_of(request).engine.connect() as conn:
        profile = await profiles.user_profile(conn, request.path_params["user_id"])
    if not profile:
        raise ApiError(404, "no such user")
    return JSONResponse(profile)


@requires_admin
async def get_user_events(request: Request) -> JSONResponse:
    """
    summary: A user's events, newest first
    parameters:
      - {name: limit, in: query, schema: {type: integer, maximum: 500}}
      - {name: before_id, in: query, schema: {type: integer}}
    responses:
      200: {description: "events", schema: {$ref: "#/components/schemas/Events"}}
    """
    limit = query_limit(request, 100, 500)
    before_id = query_int(request, "before_id", None)
    user_id = request.path_params["user_id"]
    async with runtime_of(request).engine.connect() as conn:
        if not await profiles.exists(conn, Entity.USER, user_id):
            raise ApiError(404, "no such user")
        events = await profiles.user_events(conn, user_id, limit, before_id)
    return JSONResponse({"events": events})


routes = [
    Route("/api/users", get_users, methods=["GET"]),
    Route("/api/users/{user_id:id}", get_user, methods=["GET"]),
    Route("/api/users/{user_id:id}/events", get_user_events, methods=["GET"]),
]
