"""The connector under test: its environment, credentials, worker round, live servers, and polling.

Shared by tests/conftest.py (the fixtures) and the tests themselves.
"""

import asyncio
import base64
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self

import uvicorn

from connector.core.environment import Environment
from connector.core.runtime import Runtime
from connector.service.worker import run_once
from connector.web.app import create_app

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
BACKENDS = [b.strip() for b in os.environ.get("TEST_BACKENDS", "sqlite,postgresql").split(",") if b.strip()]
ADMIN_TOKEN = "test-admin-token"
API_KEY = "test-api-key-0123456789"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def make_env(database_url: str, **overrides: Any) -> Environment:
    values: dict[str, Any] = dict(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        connector_api_key=API_KEY,
        run_worker_in_web=False,
        environment="development",
        log_level="WARNING",
    )
    values.update(overrides)
    return Environment(_env_file=None, **values)


def basic_auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def admin_auth(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def drain(runtime: Runtime) -> Any:
    """Run the worker until the journal is empty (the tests' stand-in for waiting)."""
    return await run_once(runtime)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerThread:
    """An ASGI app under uvicorn on a real localhost socket, in a thread with its own event loop."""

    def __init__(self, app: Any, name: str = "server", port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class LiveServer(ServerThread):
    """The connector itself, on a real socket."""

    def __init__(self, env: Environment, port: int | None = None):
        super().__init__(create_app(env), name="live server", port=port)


async def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll an (async or sync) predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
