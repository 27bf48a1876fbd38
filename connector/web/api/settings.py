"""The settings document in the admin API: read it (secrets masked), change it (a partial document).

A refused change answers 400 in the API's one error shape: `message` ("<field path>: <what is wrong>"), `field`
(the path of the first problem) and `errors`, each problem with its `field`, `label` (the field's title, for
people) and `message` (a sentence; core/settings.py `explain`).
"""

from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.models import Segment
from connector.core.settings import at_path, unknown_segments
from connector.core.settings_store import validation_errors
from connector.segments.rules import RuleError
from connector.service.use_cases import save_settings
from connector.web.api.names import known_names, unseen_attributes
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
      A new `icp` setting scores every account again before the answer. An attribute list entry (a name
      or a mapping's `from`) naming nothing the connector has seen is saved, and answered in `warnings`
      (`field`, `message` with the closest names seen). Segments added to `synchronized_segments` or
      `synchronized_account_segments` (or `ALL`) have their current members queued to be sent at once, in
      the same transaction: `queued` says how many users and accounts (GET /api/sync shows the progress).
    requestBody: {content: {application/json: {schema: {$ref: "/settings.schema.json"}}}}
    responses:
      200: {description: "the new version", schema: {$ref: "#/components/schemas/Settings"}}
      400: {description: "invalid document, or a segment name no segment has; `errors` lists each problem in words"}
    """
    changes = await json_body(request, MAX_SETTINGS_BODY)
    if not isinstance(changes, dict):
        raise ApiError(400, "settings must be a JSON object", field="body")
    runtime = runtime_of(request)
    try:
        before = await runtime.settings.current()
        after = await runtime.settings.proposed(changes)
        async with runtime.engine.connect() as conn:
            segments = dict((await conn.execute(sa.select(Segment.__table__.c.name, Segment.__table__.c.entity))).all())
        if unknown := unknown_segments(before, after, segments):
            raise _refused(unknown)
        saved = await save_settings(runtime.engine, runtime.settings, changes)
    except ValidationError as problem:
        raise _refused(validation_errors(problem)) from None
    except RuleError as problem:
        raise _refused([at_path(problem.path, problem.message)]) from None
    async with runtime.engine.connect() as conn:
        warnings = unseen_attributes(saved.settings, await known_names(conn))
    answer = {"version": saved.version, "settings": saved.settings.masked(), "queued": saved.queued}
    return JSONResponse({**answer, "warnings": warnings})


def _refused(errors: list[dict[str, Any]]) -> ApiError:
    return ApiError(400, f"{errors[0]['field']}: {errors[0]['message']}", field=errors[0]["field"], errors=errors)


routes = [
    Route("/api/settings", get_settings, methods=["GET"]),
    Route("/api/settings", put_settings, methods=["PUT"]),
]
