"""The settings document in the admin API: read it (secrets masked), change it (a partial document)."""

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.settings_store import validation_errors
from connector.segments.rules import RuleError
from connector.service.use_cases import save_settings
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, json_body, runtime_of

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
    description: >-
      A new `icp` setting scores every account again before the answer. Segments added to
      `synchronized_segments` or `synchronized_account_segments` (or `ALL`) have their current members
      queued to be sent at once, in the same transaction: `queued` says how many users and accounts
      (GET /api/sync shows the progress).
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
        saved = await save_settings(runtime.engine, runtime.settings, changes)
    except ValidationError as problem:
        errors = validation_errors(problem)
        raise ApiError(400, f"invalid setting {errors[0]['field']}: {errors[0]['message']}", errors=errors) from None
    except RuleError as problem:
        errors = [{"field": problem.path, "message": problem.message}]
        raise ApiError(400, f"invalid setting {problem.path}: {problem.message}", errors=errors) from None
    return JSONResponse({"version": saved.version, "settings": saved.settings.masked(), "queued": saved.queued})


routes = [
    Route("/api/settings", get_settings, methods=["GET"]),
    Route("/api/settings", put_settings, methods=["PUT"]),
]
