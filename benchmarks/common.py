"""Shared by the benchmarks: a throwaway PostgreSQL database and the server as a subprocess."""

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx

from connector.service.migrate import upgrade

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
API_KEY = "bench-api-key-0123456789"
ADMIN_TOKEN = "bench-admin-token"


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database; yields its asyncpg DSN; dropped afterwards."""
    name = f"connector_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    dsn = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://"))
        yield dsn
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(dsn: str, web_concurrency: int = 1, run_worker: bool = False, **extra_env: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "PORT": str(port),
        "CONNECTOR_API_KEY": API_KEY,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "WEB_CONCURRENCY": str(web_concurrency),
        "LOG_LEVEL": "WARNING",
        "RUN_WORKER_IN_WEB": "true" if run_worker else "false",
        **extra_env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(
                    "server did not start: " + (process.stderr.read().decode() if process.stderr else "")
                )
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def serving(command: list[str], port: int, probe: Callable[[str], object], name: str) -> Iterator[str]:
    """A server started by `command` on `port`; yields its URL once `probe(url)` raises no httpx error
    (within 30 s); terminated afterwards."""
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                probe(url)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{name} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


@contextmanager
def running_workers(database_url: str, count: int, log_dir: Path, **extra_env: str) -> Iterator[list[subprocess.Popen]]:
    """`count` `connector worker` processes on the database, each logging to log_dir/worker-<n>.log;
    stopped by SIGTERM afterwards (killed if one has not stopped within 30 s)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CONNECTOR_API_KEY": API_KEY,
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    processes = []
    try:
        for number in range(count):
            with open(log_dir / f"worker-{number}.log", "wb") as log:
                processes.append(
                    subprocess.Popen([sys.executable, "-m", "connector", "worker"], env=env, stdout=log, stderr=log)
                )
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
