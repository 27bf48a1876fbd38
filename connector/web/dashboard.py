"""The dashboard's files: the page, its modules and styles, the vendored chart library, the settings schema.

Every file is sent with a Content-Security-Policy that lets the page load and call only the
connector's own origin ('self'): no inline script or style, no other host, no plugin, no frame.
The dashboard builds its DOM with textContent and createElement, never innerHTML with data, so
that user data (traits, events, payloads) cannot run as code; the policy is the second lock.
"""

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from connector.core.settings import settings_json_schema

STATIC = Path(__file__).with_name("static")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class DashboardFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


async def settings_schema(request: Request) -> JSONResponse:
    return JSONResponse(settings_json_schema(), headers=HEADERS)


async def page(request: Request) -> FileResponse:
    # Pages are hash routes (/#/segments): one document, so every link to a page is this file.
    return FileResponse(STATIC / "index.html", headers={**HEADERS, "Cache-Control": "no-cache"})


routes: list[Any] = [
    Route("/settings.schema.json", settings_schema, methods=["GET"], include_in_schema=False),
    Route("/", page, methods=["GET"], include_in_schema=False),
    Mount("/static", DashboardFiles(directory=STATIC), name="static"),
]
