"""Health (no key), readiness and Prometheus metrics."""

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.web.auth import requires_admin


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    try:
        async with request.app.state.runtime.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception as error:
        return JSONResponse({"status": "unavailable", "database": type(error).__name__}, status_code=503)
    return JSONResponse({"status": "ready"})


@requires_admin
async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
