"""Accounts in the admin API: one found by group_id or domain, or by id (its profile), and its users."""

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.kinds import Entity
from connector.web import profiles
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, one_query, query_int, query_limit, runtime_of


@requires_admin
async def get_accounts(request: Request) -> JSONResponse:
    """
    summary: Find one account by group_id or domain
    parameters:
      - {name: group_id, in: query, schema: {type: string}}
      - {name: domain, in: query, schema: {type: string}}
    responses:
      200: {description: "the account", schema: {$ref: "#/components/schemas/Account"}}
      400: {description: "neither group_id nor domain given"}
      404: {description: "no such account"}
    """
    kind, value = one_query(request, ("group_id", "domain"))
    if kind is None:
        raise ApiError(400, "give one of group_id or domain", field="query")
    async with runtime_of(request).engine.connect() as conn:
        account_id = await profiles.find_account(conn, kind, value.lower() if kind == "domain" else value)
        profile = await profiles.account_profile(conn, account_id) if account_id is not None else None
    if not profile:
        raise ApiError(404, f"no account with {kind} {value!r}")
    return JSONResponse(profile)


@requires_admin
async def get_account(request: Request) -> JSONResponse:
    """
    summary: One account by internal id
    responses:
      200: {description: "the account", schema: {$ref: "#/components/schemas/Account"}}
      404: {description: "no such account"}
    """
    async with runtime_of(request).engine.connect() as conn:
        profile = await profiles.account_profile(conn, request.path_params["account_id"])
    if not profile:
        raise ApiError(404, "no such account")
    return JSONResponse(profile)


@requires_admin
async def get_account_users(request: Request) -> JSONResponse:
    """
    summary: The users linked to an account, newest profile first (pages like a user's events)
    parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 0, maximum: 500, default: 100}}
      - {name: before_id, in: query, description: "the last id of the previous page", schema: {type: integer}}
    responses:
      200: {description: "up to limit users", schema: {$ref: "#/components/schemas/UserMatches"}}
      404: {description: "no such account"}
    """
    limit = query_limit(request, 100, 500)
    before_id = query_int(request, "before_id", None)
    account_id = request.path_params["account_id"]
    async with runtime_of(request).engine.connect() as conn:
        if not await profiles.exists(conn, Entity.ACCOUNT, account_id):
            raise ApiError(404, "no such account")
        return JSONResponse({"users": await profiles.account_users(conn, account_id, limit, before_id)})


routes = [
    Route("/api/accounts", get_accounts, methods=["GET"]),
    Route("/api/accounts/{account_id:id}", get_account, methods=["GET"]),
    Route("/api/accounts/{account_id:id}/users", get_account_users, methods=["GET"]),
]
