"""The Segment workspace setup in the admin API (service/workspace.py, service/round_trip.py): connect (or
repair), status, disconnect, the workspace's sources to choose from, and the round-trip test.

The Public API token comes in a body, never a query string (query strings reach access logs), and goes out
masked.
"""

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.flow import round_trips
from connector.service import round_trip, workspace
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, json_body, runtime_of

MAX_BODY = 64_000
LONGEST_WAIT_SECONDS = 120.0


def _refusal(error: workspace.WorkspaceError) -> ApiError:
    details: dict[str, Any] = {"done": error.done}
    if error.field:
        details["field"] = error.field
    return ApiError(error.status, error.message, **details)


async def _body(request: Request) -> dict[str, Any]:
    body = await json_body(request, MAX_BODY, optional=True)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object", field="body")
    for name in ("token", "region", "cursor"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise ApiError(400, f"{name} must be a string", field=name)
    return body


@requires_admin
async def connect(request: Request) -> JSONResponse:
    """
    summary: Connect a Segment workspace through its Public API (again to repair what drifted)
    description: >-
      Checks the token, puts one Webhooks destination pointing at <PUBLIC_URL>/segment on each chosen source
      (and on the HTTP API source the connector sends back through), finds or creates that source and takes its
      write key and the region's tracking host into the settings. Running it again changes only what differs.
      `token` may be left out once connected (the stored one is used).
    requestBody:
      content:
        application/json:
          schema:
            type: object
            required: [source_ids]
            properties:
              token: {type: string}
              region: {type: string, enum: [us, eu]}
              source_ids: {type: array, items: {type: string}}
    responses:
      200:
        description: "what was found, created and changed"
        schema: {$ref: "#/components/schemas/WorkspaceConnected"}
      400: {description: "a bad token, a missing scope, an unknown source: nothing saved; `done`: what changed"}
      409: {description: "PUBLIC_URL is not set, or another connect or disconnect is under way"}
      502: {description: "Segment failed or did not answer: nothing saved in the settings; `done`: what changed"}
    """
    body = await _body(request)
    source_ids = body.get("source_ids")
    if not isinstance(source_ids, list) or not all(isinstance(s, str) and s for s in source_ids):
        raise ApiError(400, "source_ids must be a list of Segment source ids", field="source_ids")
    try:
        answer = await workspace.connect(runtime_of(request), body.get("token"), body.get("region"), source_ids)
    except workspace.WorkspaceError as error:
        raise _refusal(error) from None
    return JSONResponse(answer)


@requires_admin
async def get_status(request: Request) -> JSONResponse:
    """
    summary: The connected Segment workspace, re-read from its Public API, and the last round-trip test
    description: >-
      Whether each managed destination and the source still match (`problems` says what drifted: disabled,
      edited, deleted); when the Public API could not be read, `error` says why and the rest is what the last
      connect saved, unchecked (no `matches`).
    responses:
      200: {description: "connected or not", schema: {$ref: "#/components/schemas/WorkspaceStatus"}}
    """
    runtime = runtime_of(request)
    try:
        answer = await workspace.status(runtime)
    except workspace.WorkspaceError as error:
        answer = {**await workspace.unchecked(runtime), "error": error.message}
    latest = round_trip.verdict(await round_trips.read(runtime.engine))
    return JSONResponse({**answer, "round_trip": latest})


@requires_admin
async def disconnect(request: Request) -> JSONResponse:
    """
    summary: Disconnect the Segment workspace (delete the destinations the connector manages, forget the token)
    description: >-
      The HTTP API source and the write key stay; an adopted destination (set up by hand) that holds other hooks
      only loses the connector's hook (`unhooked`).
    responses:
      200: {description: "what was deleted and kept", schema: {$ref: "#/components/schemas/WorkspaceDisconnected"}}
      400: {description: "Segment refused the stored token"}
      409: {description: "no workspace is connected, or another connect or disconnect is under way"}
      502: {description: "Segment failed: the token is kept, so disconnecting again completes it"}
    """
    try:
        return JSONResponse(await workspace.disconnect(runtime_of(request)))
    except workspace.WorkspaceError as error:
        raise _refusal(error) from None


@requires_admin
async def list_sources(request: Request) -> JSONResponse:
    """
    summary: One page of the workspace's sources, to choose which deliver to the connector
    requestBody:
      content:
        application/json:
          schema:
            type: object
            properties: {token: {type: string}, region: {type: string, enum: [us, eu]}, cursor: {type: string}}
    responses:
      200: {description: "sources and the next page's cursor", schema: {$ref: "#/components/schemas/WorkspaceSources"}}
      400: {description: "a bad token or a missing scope"}
      502: {description: "Segment failed or did not answer"}
    """
    body = await _body(request)
    try:
        answer = await workspace.sources_page(
            runtime_of(request), body.get("token"), body.get("region"), body.get("cursor")
        )
    except workspace.WorkspaceError as error:
        raise _refusal(error) from None
    return JSONResponse(answer)


@requires_admin
async def test_round_trip(request: Request) -> JSONResponse:
    """
    summary: Send one test event through the write key and wait for Segment to deliver it back to /segment
    requestBody:
      content:
        application/json:
          schema: {type: object, properties: {wait_seconds: {type: number, minimum: 1, maximum: 120}}}
    responses:
      200:
        description: "works (with seconds), refused (the write key's half) or lost (the destination's half)"
        schema: {$ref: "#/components/schemas/RoundTrip"}
      400: {description: "malformed body"}
    """
    body = await _body(request)
    wait = body.get("wait_seconds", round_trip.WAIT_SECONDS)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 1 <= wait <= LONGEST_WAIT_SECONDS:
        raise ApiError(400, f"wait_seconds must be a number from 1 to {LONGEST_WAIT_SECONDS:g}", field="wait_seconds")
    runtime = runtime_of(request)
    return JSONResponse(await round_trip.run(runtime.engine, await runtime.settings.current(), float(wait)))


routes = [
    Route("/api/segment-workspace", get_status, methods=["GET"]),
    Route("/api/segment-workspace", connect, methods=["POST"]),
    Route("/api/segment-workspace", disconnect, methods=["DELETE"]),
    Route("/api/segment-workspace/sources", list_sources, methods=["POST"]),
    Route("/api/segment-workspace/round-trip", test_round_trip, methods=["POST"]),
]
