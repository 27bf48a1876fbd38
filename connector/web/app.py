"""The app factory: routes, lifespan (engine, API key, journal writer, embedded worker)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from connector.core.environment import Environment, get_environment
from connector.core.logs import get_logger
from connector.core.runtime import Runtime
from connector.inbound import analytics_js, project_settings
from connector.inbound import routes as inbound
from connector.inbound.cors import CorsMiddleware
from connector.inbound.rate_limit import RateLimiter
from connector.inbound.writer import open_journal
from connector.service import worker
from connector.web import dashboard, health
from connector.web.api import (
    accounts,
    activity,
    api_key,
    dead_letters,
    insights,
    names,
    overview,
    privacy,
    search,
    segment_workspace,
    segments,
    settings,
    status,
    sync,
    users,
    write_keys,
)
from connector.web.deps import ApiError, api_error
from connector.web.openapi import openapi_document
from connector.web.paths import http_error

log = get_logger()


def create_app(env: Environment | None = None) -> Starlette:
    env = env or get_environment()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # On SQLite a second worker refuses to start, so the web process does not start either (uvicorn exits 3).
        with worker.sole_worker(env.database_url) if env.run_worker_in_web else contextlib.nullcontext():
            runtime = await Runtime.start(env)
            app.state.runtime = runtime
            # Only the web process appends to the journal.
            app.state.journal = journal = open_journal(runtime.engine, env.service_database.pooler)
            app.state.rate_limiter = RateLimiter()
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run_forever(runtime, stop)) if env.run_worker_in_web else None
            try:
                yield
            finally:
                stop.set()
                if task is not None:
                    await task
                await journal.close()
                await runtime.stop()
                log.info("web.stop")  # requests in flight were answered: uvicorn stops the app after them

    routes = [
        *health.routes,
        *project_settings.routes,
        *analytics_js.routes,
        *inbound.routes,
        *search.routes,
        *settings.routes,
        *users.routes,
        *accounts.routes,
        *api_key.routes,
        *write_keys.routes,
        *activity.routes,
        *segments.routes,
        *dead_letters.routes,
        *insights.routes,
        *privacy.routes,
        *status.routes,
        *overview.routes,
        *sync.routes,
        *segment_workspace.routes,
        *names.routes,
        Route("/api/openapi.json", openapi_document, methods=["GET"], include_in_schema=False),
        *dashboard.routes,
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, ApiError: api_error},
        middleware=[Middleware(CorsMiddleware)],  # /v1 only: it passes every other path through
    )
