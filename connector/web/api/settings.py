"""The admin API under /api (bearer ADMIN_TOKEN). Each docstring is its OpenAPI entry."""

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.credentials import rotate_api_key
from connector.core.settings_store import validation_errors
from connector.segments.rules import RuleError
from connector.service.batch import save_settings
from connector.web import profiles
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, find_user_by_query, json_body, one_query, query_int, query_limit, runtime_of

MAX_SETTINGS_BODY = 64 * 1024


@requires_admin
async def get_settings(request: Request) -> JSONResponse:
    """
    summary: The settings document in force (secrets masked)
    responses:
      200: {description: "version and settings", schema: {$ref: "#/components/schemas/Settings"}}
    """
    version, settings = await runtime_of(request).settings.current_version()
    return JSONResponse({"version": version, "settings": settings.masked()})


@requires_admin
async def put_settings(request: Request) -> JSONResponse:
    """
    summary: Change settings (partial document); a rejected change names the field and stores nothing
    description: A new `icp` setting scores every account again before the answer.
    requestBody: {content: {application/json: {schema: {$ref: "/settings.schema.json"}}}}
    responses:
      200: {description: "the new version", schema: {$ref: "#/components/schemas/Settings"}}
      400: {description: "invalid document; `errors` lists each field"}
    """
    try:
        changes = await json_body(request, MAX_SETTINGS_BODY)
    except ValueError as problem:
        raise ApiError(400, f"malformed settings document: {problem}", field="body") from None
    if not isinstance(changes, dict):
        raise ApiError(400, "settings must be a JSON object", field="body")
    runtime = runtime_of(request)
    try:
        version, settings = await save_settings(runtime.engine, runtime.settings, changes)
    except ValidationError as problem:
        errors = validation_errors(problem)
        raise ApiError(400, f"invalid setting {errors[0]['field']}: {errors[0]['message']}", errors=errors) from None
    except RuleError as problem:
        errors = [{"field": problem.path, "message": problem.message}]
        raise ApiError(400, f"invalid setting {problem.path}: {problem.message}", errors=errors) from None
    return JSONResponse({"version": version, "settings": settings.masked()})


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
        if not await profiles.exists(conn, "user", user_id):
            raise ApiError(404, "no such user")
        events = await profiles.user_events(conn, user_id, limit, before_id)
    return JSONResponse({"events": events})


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
async def reveal_api_key(request: Request) -> JSONResponse:
    """
    summary: The inbound API key in full, for the dashboard's copy button (POST, never GET)
    responses:
      200: {description: "api_key", schema: {$ref: "#/components/schemas/ApiKey"}}
    """
    return JSONResponse({"api_key": await runtime_of(request).settings.api_key()})


@requires_admin
async def rotate_key(request: Request) -> JSONResponse:
    """
    summary: Replace the inbound API key; the old one stops working at once
    responses:
      200: {description: "the new api_key", schema: {$ref: "#/components/schemas/ApiKey"}}
      409: {description: "the API key is set by the CONNECTOR_API_KEY config var"}
    """
    runtime = runtime_of(request)
    if runtime.env.connector_api_key:
        raise ApiError(409, "the API key is set by CONNECTOR_API_KEY; change that config var instead")
    key = await rotate_api_key(runtime.engine)
    await runtime.settings.reload()
    return JSONResponse({"api_key": key})


routes = [
    Route("/api/settings", get_settings, methods=["GET"]),
    Route("/api/settings", put_settings, methods=["PUT"]),
    Route("/api/users", get_users, methods=["GET"]),
    Route("/api/users/{user_id:id}", get_user, methods=["GET"]),
    Route("/api/users/{user_id:id}/events", get_user_events, methods=["GET"]),
    Route("/api/accounts", get_accounts, methods=["GET"]),
    Route("/api/accounts/{account_id:id}", get_account, methods=["GET"]),
    Route("/api/api-key/reveal", reveal_api_key, methods=["POST"]),
    Route("/api/api-key/rotate", rotate_key, methods=["POST"]),
]
