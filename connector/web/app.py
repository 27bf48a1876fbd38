"""The app factory: routes, lifespan (engine, API key, embedded worker)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles

from connector import __version__, worker
from connector.config import Environment, get_environment
from connector.inbound import routes as inbound
from connector.runtime import Runtime
from connector.settings import settings_json_schema
from connector.web import admin, health, insights_api, outbound_api, privacy_api, segments_api, status
from connector.web.auth import requires_admin
from connector.web.paths import MAX_ID_DIGITS, IdConvertor, http_error

STATIC = Path(__file__).with_name("static")
openapi = SchemaGenerator({"openapi": "3.0.3", "info": {"title": "Segment connector admin API", "version": __version__},
                           "components": {"securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}}},
                           "security": [{"admin": []}]})
PATH_PARAMETER_TYPES = {IntegerConvertor: {"type": "integer"}, FloatConvertor: {"type": "number"},
                        IdConvertor: {"type": "integer", "minimum": 0, "maximum": 10**MAX_ID_DIGITS - 1}}


@requires_admin
async def openapi_document(request: Request) -> JSONResponse:
    routes = [r for r in request.app.routes if r.path.startswith("/api")]
    return JSONResponse(declare_path_parameters(openapi.get_schema(routes=routes), routes))


def declare_path_parameters(document: dict[str, Any], routes: list[BaseRoute]) -> dict[str, Any]:
    """OpenAPI requires every {name} in a path to be declared; starlette leaves that to each docstring."""
    for route in routes:
        if not isinstance(route, Route) or not route.param_convertors:
            continue
        for operation in document.get("paths", {}).get(route.path_format, {}).values():
            parameters = operation.setdefault("parameters", [])
            declared = {p["name"] for p in parameters if p.get("in") == "path"}
            parameters.extend({"name": name, "in": "path", "required": True,
                               "schema": PATH_PARAMETER_TYPES.get(type(convertor), {"type": "string"})}
                              for name, convertor in route.param_convertors.items() if name not in declared)
    return document


async def settings_schema(request: Request) -> JSONResponse:
    return JSONResponse(settings_json_schema())


async def dashboard(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html")


def create_app(env: Environment | None = None) -> Starlette:
    env = env or get_environment()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await Runtime.start(env)
        app.state.runtime = runtime
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run_forever(runtime, stop)) if env.run_worker_in_web else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            await runtime.stop()

    routes = [
        *health.routes,
        *inbound.routes,
        *admin.routes,
        *segments_api.routes,
        *outbound_api.routes,
        *insights_api.routes,
        *privacy_api.routes,
        *status.routes,
        Route("/api/openapi.json", openapi_document, methods=["GET"], include_in_schema=False),
        Route("/settings.schema.json", settings_schema, methods=["GET"], include_in_schema=False),
        Route("/", dashboard, methods=["GET"], include_in_schema=False),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
