"""The accept path on PostgreSQL against its ceilings, measured in the same run.

1. POST /segment, one ~1 KB message a request (the Webhooks destination's shape), 8 keep-alive
   connections: the connector (one web process, no worker) against the minimal durable-accept app of
   benchmarks/durable_accept.py on the same uvicorn and database: req/s, p50/p99, and the ratio.
2. POST /v1/batch, 100 such events a request, 8 connections, no worker: events/s against a raw asyncpg
   COPY of the same rows into the journal, and the ratio.

Load from wrk (Debian: apt-get install wrk), each message with a messageId of its own. Rounds alternate
ceiling and connector, so a machine that gets busier mid-run weighs on both.

    .venv/bin/python benchmarks/accept.py [--seconds 10] [--rounds 2]      # short: --seconds 3 --rounds 1

Not part of the test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import base64
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from common import API_KEY, free_port, load_average, running_server, serving, throwaway_database
from ingest import copy_ceiling, make_event

CONNECTIONS = 8
BATCH = 100
AUTHORIZATION = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()

# wrk: each request gets fresh messageIds (MSGID in the body replaced by thread-prefix-counter); done()
# prints one machine-readable line.
LUA = """
local template = [==[%(body)s]==]
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "%(authorization)s"}
local threads, counter, prefix = 0, 0, ""
function setup(thread) threads = threads + 1; thread:set("number", threads) end
function init(args) prefix = tostring(number) .. "-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9)) end
function request()
  local body = template:gsub("MSGID", function() counter = counter + 1; return prefix .. "-" .. counter end)
  return wrk.format("POST", "%(path)s", headers, body)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %%d %%f %%f %%f %%d %%d\\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, summary.errors.status, summary.errors.timeout))
end
"""


def body(count: int) -> bytes:
    """`count` ~1 KB events (one object, or {"batch": [...]}), each messageId the placeholder MSGID."""
    rng = random.Random(1)
    events = [{**make_event(rng), "messageId": "MSGID"} for _ in range(count)]
    return orjson.dumps(events[0] if count == 1 else {"batch": events})


def wrk(url: str, path: str, payload: bytes, seconds: float, workdir: Path) -> dict[str, float]:
    script = workdir / f"{path.strip('/').replace('/', '_')}.lua"
    script.write_text(LUA % {"body": payload.decode(), "authorization": AUTHORIZATION, "path": path})
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{round(seconds)}s", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True)
    output = done.stdout + done.stderr
    match = re.search(r"RESULT (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+) (\d+)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    requests, duration, p50, p99, bad_status, timeouts = match.groups()
    if int(bad_status) or int(timeouts):
        raise RuntimeError(f"{path}: {bad_status} non-2xx answers, {timeouts} timeouts:\n{output}")
    return {"rps": int(requests) / float(duration), "p50_ms": float(p50), "p99_ms": float(p99)}


def ceiling_app(dsn: str) -> AbstractContextManager[str]:
    port = free_port()
    script = Path(__file__).with_name("durable_accept.py")
    command = [sys.executable, str(script), "--dsn", dsn, "--port", str(port)]
    return serving(
        command,
        port,
        lambda url: httpx.post(url + "/segment", content=b'{"messageId":"warm-up"}'),
        "the durable-accept app",
    )


def line(name: str, figures: dict[str, float], unit: str = "req/s") -> str:
    return f"{name:<26}{figures['rps']:>9,.0f} {unit}  p50 {figures['p50_ms']:5.1f} ms  p99 {figures['p99_ms']:5.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    print(f"machine: {os.cpu_count()} cores, load average {load_average()}; {CONNECTIONS} connections, one web process")
    single, batch = body(1), body(BATCH)
    with (
        throwaway_database() as dsn,
        tempfile.TemporaryDirectory() as workdir,
        ceiling_app(dsn) as ceiling_url,
        running_server(dsn) as url,
    ):
        ratios: dict[str, list[float]] = {"/segment": [], "/v1/batch": []}
        for round_number in range(1, args.rounds + 1):
            ceiling = wrk(ceiling_url, "/segment", single, args.seconds, Path(workdir))
            connector = wrk(url, "/segment", single, args.seconds, Path(workdir))
            batches = wrk(url, "/v1/batch", batch, args.seconds, Path(workdir))
            copy = asyncio.run(copy_ceiling(dsn, 50_000))
            events = {**batches, "rps": batches["rps"] * BATCH}
            print(f"\nround {round_number} (load average {load_average()})")
            print(line("durable-accept ceiling", ceiling))
            print(line("connector POST /segment", connector))
            print(f"{'':<26}ratio {connector['rps'] / ceiling['rps']:.2f} of the ceiling")
            print(line("connector POST /v1/batch", events, "events/s"))
            print(f"{'COPY of the same rows':<26}{copy:>9,.0f} rows/s")
            print(f"{'':<26}ratio {events['rps'] / copy:.2f} of COPY")
            ratios["/segment"].append(connector["rps"] / ceiling["rps"])
            ratios["/v1/batch"].append(events["rps"] / copy)
        print(
            f"\nmedian of {args.rounds} rounds: /segment {statistics.median(ratios['/segment']):.2f} of the ceiling, ",
            end="",
        )
        print(f"/v1/batch {statistics.median(ratios['/v1/batch']):.2f} of COPY (load average {load_average()})")


if __name__ == "__main__":
    main()
