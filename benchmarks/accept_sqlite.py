"""POST /segment on SQLite, one message a request, against a sqlite3 group commit in one thread.

Prints, from one run: requests/s and p50/p99 latency of the connector's POST /segment (one web
process, no worker, the journal in a throwaway SQLite file), the same for the ceiling, and the
ratio. The ceiling is a minimal starlette app on the same uvicorn making the same durable,
deduplicated accept: it parses the message, hands the row to one dedicated thread owning a
sqlite3 connection (the PRAGMAs of the connector's engine), which commits everything that
arrived meanwhile as one `executemany` INSERT ... ON CONFLICT (message_id) DO NOTHING, and
answers 200 once that commit returned. Its table is the journal of a second migrated file (the
same indexes and queue trigger). Load: 8 keep-alive connections, each request a distinct
~1 KB message, by wrk when installed (`apt-get install -y wrk`), else benchmarks/rawhttp.py.

    .venv/bin/python benchmarks/accept_sqlite.py [--seconds 10] [--rounds 2]    # --seconds 3 --rounds 1: a short run

Not part of the test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import os
import queue
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from common import free_port, load_average, running_server, serving
from ingest import AUTH, load, make_event

from connector.service.migrate import upgrade

CONNECTIONS = 8
INSERT = (
    "INSERT INTO inbound_journal (partition, message_id, type, payload, received_at, source) "
    "VALUES (?, ?, ?, ?, ?, 'segment') ON CONFLICT (message_id) DO NOTHING"
)


# --- the ceiling: a minimal app, run as `accept_sqlite.py --ceiling PATH --port N` in its own process ---


class GroupCommit:
    """Requests queue (row, future); one thread commits all queued rows at once and resolves them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pending: queue.SimpleQueue[tuple[tuple, asyncio.Future, asyncio.AbstractEventLoop]] = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True).start()

    async def append(self, row: tuple) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self.pending.put((row, done, loop))
        await done

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
            connection.execute(f"PRAGMA {pragma}")
        while True:
            taken = [self.pending.get()]
            while not self.pending.empty():
                taken.append(self.pending.get())
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(INSERT, [row for row, _, _ in taken])
            connection.execute("COMMIT")
            loop = taken[0][2]
            loop.call_soon_threadsafe(_resolve, [done for _, done, _ in taken])


def _resolve(futures: list[asyncio.Future]) -> None:
    for future in futures:
        future.set_result(None)


def ceiling_app(path: str):  # starlette is imported in the server process only
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    writer = GroupCommit(path)

    async def accept(request: Request) -> JSONResponse:
        message = orjson.loads(await request.body())
        received = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        payload = orjson.dumps(message).decode()
        await writer.append((0, message["messageId"], message["type"], payload, received))
        return JSONResponse({"success": True})

    return Starlette(routes=[Route("/segment", accept, methods=["POST"])])


def serve_ceiling(path: str, port: int) -> None:
    import uvicorn

    uvicorn.run(ceiling_app(path), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def running_ceiling(path: Path) -> AbstractContextManager[str]:
    port = free_port()
    command = [sys.executable, __file__, "--ceiling", str(path), "--port", str(port)]
    return serving(command, port, lambda url: httpx.get(url + "/", timeout=1), "the ceiling server")


# --- the load ---

WRK_SCRIPT = """
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = [==[AUTHORIZATION]==]
local head, tail = [==[HEAD]==], [==[TAIL]==]
function setup(thread) thread:set("prefix", "t" .. tostring(math.random(1, 1e9)) .. "-") end
function request()
  counter = counter + 1
  return wrk.format(nil, "/segment", nil, head .. prefix .. counter .. tail)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status))
end
"""


def wrk_load(url: str, seconds: float, workdir: Path) -> dict:
    """wrk, 2 threads, 8 connections, each request a distinct message (its messageId numbered per thread)."""
    message = make_event(random.Random(3))
    message["messageId"] = "MESSAGE-ID"
    head, tail = orjson.dumps(message).decode().split("MESSAGE-ID")
    script = workdir / "segment.lua"
    script.write_text(
        WRK_SCRIPT.replace("AUTHORIZATION", AUTH["Authorization"]).replace("HEAD", head).replace("TAIL", tail)
    )
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", output)
    if found is None:
        raise RuntimeError("wrk printed no result: " + output)
    requests, micros, p50, p99, bad = (int(value) for value in found.groups())
    if bad:
        raise RuntimeError(f"{bad} of {requests} answers were not 2xx")
    return {"requests_per_s": requests / (micros / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}


def measure(url: str, seconds: float, workdir: Path) -> dict:
    """The load's figures, and the server's processor time per request (user + kernel) and the kernel's share."""
    before = server_times()
    if shutil.which("wrk"):
        figures = wrk_load(url, seconds, workdir)
    else:
        figures = load(url, "/segment", seconds, clients=CONNECTIONS, batch=0, processes=2)
    user, kernel = (after - first for after, first in zip(server_times(), before, strict=True))
    requests = figures["requests_per_s"] * seconds
    figures["cpu_us"] = (user + kernel) / requests * 1e6
    figures["kernel_share"] = kernel / (user + kernel)
    return figures


def server_times() -> tuple[float, float]:
    """User and kernel seconds of this process's children (the one server running), from /proc."""
    user = kernel = 0.0
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) / os.sysconf("SC_CLK_TCK")
            kernel += int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return user, kernel


def report(round_: int, connector: dict, ceiling: dict) -> None:
    print(f"round {round_} (load average {load_average()})")
    for name, figures in (("/segment", connector), ("ceiling", ceiling)):
        print(
            f"  {name:<10} {figures['requests_per_s']:>7,.0f} req/s  "
            f"(p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms; server CPU "
            f"{figures['cpu_us']:.0f} µs a request, {figures['kernel_share']:.0%} in the kernel)"
        )
    ratio = connector["requests_per_s"] / ceiling["requests_per_s"]
    print(f"  ratio      /segment at {ratio:.2f} of the sqlite3 group commit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ceiling", help=argparse.SUPPRESS)  # run the ceiling server on this file
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling:
        serve_ceiling(args.ceiling, args.port)
        return
    client = "wrk -t2" if shutil.which("wrk") else "benchmarks/rawhttp.py"
    print(
        f"machine: {os.cpu_count()} cores, load average {load_average()}; one web process, no worker; "
        f"{CONNECTIONS} keep-alive connections ({client}); {args.seconds:.0f} s per phase"
    )
    with tempfile.TemporaryDirectory(prefix="accept-sqlite-") as directory:
        workdir = Path(directory)
        for name in ("connector.db", "ceiling.db"):
            upgrade(f"sqlite+aiosqlite:///{workdir / name}")
        for round_ in range(1, args.rounds + 1):  # alternated: a load that changes meanwhile hits both
            with running_server(f"sqlite+aiosqlite:///{workdir / 'connector.db'}") as url:
                connector = measure(url, args.seconds, workdir)
            with running_ceiling(workdir / "ceiling.db") as url:
                ceiling = measure(url, args.seconds, workdir)
            report(round_, connector, ceiling)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
