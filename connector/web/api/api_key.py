"""The inbound API key in the admin API: revealed in full (POST, never GET) and rotated."""

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.credentials import rotate_api_key
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, runtime_of


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
    Route("/api/api-key/reveal", reveal_api_key, methods=["POST"]),
    Route("/api/api-key/rotate", rotate_key, methods=["POST"]),
]
