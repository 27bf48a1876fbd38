"""Inbound throughput and latency on PostgreSQL, against the physical limit of the same rows.

Prints: events/s through POST /v1/batch (batches of 100 events of about 1 KB, 8 concurrent
clients), requests/s and p50/p99 latency through POST /segment with single events, the
same rows written by a raw asyncpg COPY into the journal (the ceiling of /v1/batch) and the ratio, and
processor throughput (journal -> profiles) in events/s. benchmarks/accept.py measures both endpoints
against their ceilings in alternating rounds, with wrk.

    .venv/bin/python benchmarks/ingest.py [--seconds 10] [--web-concurrency 2]

With --cors it measures instead what the CORS handling of /v1 costs (benchmarks/ingest.py --cors --seconds 4):
/v1/batch without an Origin (a server library: the middleware only scans the headers), with one (a browser: the
grant added to each answer), and with one and a browser write key (its lookup by hash), in alternating phases
against one server; and the middleware alone in process, per request, next to the same request without it.

Not part of the test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import base64
import multiprocessing
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from common import ADMIN_TOKEN, API_KEY, percentile, running_server, throwaway_database
from rawhttp import RawConnection

AUTH = {
    "Authorization": "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode(),
    "Content-Type": "application/json",
}
USERS = 5_000


def make_event(rng: random.Random) -> dict:
    """A realistic ~1 KB message: mostly track, some identify and page."""
    user = rng.randrange(USERS)
    kind = rng.choices(["track", "identify", "page"], weights=[80, 15, 5])[0]
    message = {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        "userId": f"user-{user}",
        "anonymousId": f"anon-{user}",
        "timestamp": datetime.now(UTC).isoformat(),
        "context": {
            "library": {"name": "analytics-python", "version": "2.4.0"},
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
            "page": {"url": "https://example.com/pricing?ref=newsletter", "title": "Pricing"},
        },
    }
    if kind == "track":
        message["event"] = rng.choice(["Order Completed", "Product Viewed", "Signed In", "Feature Used"])
        message["properties"] = {
            "revenue": round(rng.random() * 100, 2),
            "currency": "EUR",
            "feature": rng.choice(["export", "search", "share"]),
            "sku": f"SKU-{rng.randrange(10_000)}",
            "notes": "x" * 300,
        }
    elif kind == "identify":
        message["traits"] = {
            "email": f"user{user}@example.com",
            "plan": rng.choice(["free", "pro", "team"]),
            "name": f"User {user}",
            "bio": "y" * 300,
        }
    else:
        message["name"] = "Pricing"
        message["properties"] = {"path": "/pricing", "referrer": "https://news.example.org/", "pad": "z" * 300}
    return message


async def _client(
    url: str, path: str, deadline: float, concurrency: int, batch: int, seed: int, headers: dict[str, str] | None = None
) -> tuple[int, list[float]]:
    """`concurrency` clients, each on its own keep-alive connection, posting until the deadline."""
    rng = random.Random(seed)
    latencies: list[float] = []
    sent = 0

    async def one_client() -> None:
        nonlocal sent
        async with RawConnection(url, headers or AUTH) as connection:
            while time.monotonic() < deadline:
                if batch:
                    body = orjson.dumps({"batch": [make_event(rng) for _ in range(batch)]})
                else:
                    body = orjson.dumps(make_event(rng))
                started = time.perf_counter()
                status, answer = await connection.post(path, body)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"{path} answered {status}: {answer[:200]!r}")
                sent += batch or 1

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return sent, latencies


def _client_process(args: tuple) -> tuple[int, list[float]]:
    return asyncio.run(_client(*args))


def load(
    url: str, path: str, seconds: float, clients: int, batch: int, processes: int, headers: dict | None = None
) -> dict:
    """`clients` concurrent clients spread over `processes` OS processes (the load generator needs CPU too)."""
    deadline = time.monotonic() + seconds
    per_process = max(1, clients // processes)
    with multiprocessing.Pool(processes) as pool:
        started = time.monotonic()
        results = pool.map(
            _client_process, [(url, path, deadline, per_process, batch, seed, headers) for seed in range(processes)]
        )
        elapsed = time.monotonic() - started
    events = sum(count for count, _ in results)
    latencies = [value for _, values in results for value in values]
    return {
        "events": events,
        "requests": len(latencies),
        "seconds": elapsed,
        "events_per_s": events / elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


JOURNAL_COLUMNS = ["message_id", "type", "payload", "received_at"]


def journal_records(count: int, seed: int) -> list[tuple]:
    """Journal rows of `count` normalised messages, ready for COPY into inbound_journal (queued, so pending)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    records = []
    for _ in range(count):
        message = make_event(rng)
        message["receivedAt"] = message["timestamp"] = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        records.append((message["messageId"], message["type"], orjson.dumps(message).decode(), now))
    return records


async def copy_ceiling(dsn: str, rows: int) -> float:
    """Rows/s for the journal rows written by a raw asyncpg COPY: the physical limit here."""
    records = journal_records(rows, seed=7)
    connection = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        async with connection.transaction():
            await connection.copy_records_to_table("inbound_journal", records=records, columns=JOURNAL_COLUMNS)
        elapsed = time.perf_counter() - started
        await connection.execute(
            "WITH gone AS (DELETE FROM inbound_journal WHERE message_id = ANY($1::text[]) RETURNING id) "
            "DELETE FROM journal_queue WHERE id IN (SELECT id FROM gone)",
            [record[0] for record in records],
        )
    finally:
        await connection.close()
    return rows / elapsed


async def processor_throughput(dsn: str) -> dict:
    from connector.core.db import create_engine
    from connector.core.environment import Environment
    from connector.core.settings import ConnectorSettings
    from connector.service.batch import process_batch

    connection = await asyncpg.connect(dsn)
    pending = await connection.fetchval("SELECT count(*) FROM journal_queue")
    await connection.close()
    database = Environment(_env_file=None, database_url=dsn).direct_database  # DATABASE_POOLER, as a worker
    engine = create_engine(database.url, pooler=database.pooler)
    settings = ConnectorSettings()
    started = time.perf_counter()
    processed = 0
    while True:
        changes = await process_batch(engine, settings, 500)
        done = changes.processed + changes.failed + changes.skipped
        if done == 0:
            break
        processed += done
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return {"pending": pending, "processed": processed, "seconds": elapsed, "events_per_s": processed / elapsed}


ORIGIN = "https://shop.example"


def cors_phases(url: str, seconds: float, processes: int) -> dict[str, list[dict]]:
    """/v1/batch as a server library, as a browser with the API key, as a browser with a write key: the three
    alternate, twice, so that a machine slowing down in the meantime weighs on each alike."""
    created = httpx.post(
        f"{url}/api/write-keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, json={"name": "bench"}
    )
    write_key = "Basic " + base64.b64encode(f"{created.json()['key']}:".encode()).decode()
    variants = {
        "no Origin (server library)": AUTH,
        "Origin, API key": {**AUTH, "Origin": ORIGIN},
        "Origin, write key": {**AUTH, "Origin": ORIGIN, "Authorization": write_key},
    }
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(2):
        for name, headers in variants.items():
            results[name].append(load(url, "/v1/batch", seconds / 2, 8, 100, processes, headers))
    return results


def middleware_cost(requests: int = 20_000) -> tuple[float, float]:
    """Microseconds per request of a minimal ASGI answer, without and with CorsMiddleware (an Origin sent)."""
    from connector.inbound.cors import CorsMiddleware

    async def answer(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    async def discard(message: dict) -> None:
        return None

    async def timed(app: object) -> float:
        headers = [(b"authorization", b"Basic x"), (b"content-type", b"text/plain"), (b"origin", ORIGIN.encode())]
        started = time.perf_counter()
        for _ in range(requests):
            scope = {"type": "http", "path": "/v1/batch", "method": "POST", "headers": headers}
            await app(scope, None, discard)  # type: ignore[operator]
        return (time.perf_counter() - started) / requests * 1e6

    bare, wrapped = asyncio.run(timed(answer)), asyncio.run(timed(CorsMiddleware(answer)))
    return bare, wrapped


def report_cors(results: dict[str, list[dict]], bare_us: float, wrapped_us: float) -> None:
    print(f"\nload average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    base = sum(phase["events_per_s"] for phase in results["no Origin (server library)"]) / 2
    for name, phases in results.items():
        mean = sum(phase["events_per_s"] for phase in phases) / len(phases)
        runs = ", ".join(f"{phase['events_per_s']:,.0f}" for phase in phases)
        p50 = sum(phase["p50_ms"] for phase in phases) / len(phases)
        print(f"/v1/batch {name:<28} {mean:>9,.0f} events/s ({runs}; p50 {p50:.1f} ms) = {mean / base:.1%}")
    batch_us = 1e6 / (base / 100) if base else float("nan")  # one request's share of the server, at that rate
    print(
        f"CorsMiddleware in process: {wrapped_us - bare_us:.2f} µs a request ({bare_us:.2f} µs bare, "
        f"{wrapped_us:.2f} µs wrapped) = {(wrapped_us - bare_us) / batch_us:.3%} of a /v1/batch request's "
        f"{batch_us:,.0f} µs at the rate above"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--web-concurrency", type=int, default=2)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--cors", action="store_true", help="measure the CORS handling of /v1 instead")
    args = parser.parse_args()
    if args.cors:
        with throwaway_database() as dsn, running_server(dsn, web_concurrency=args.web_concurrency) as url:
            results = cors_phases(url, args.seconds, args.client_processes)
        report_cors(results, *middleware_cost())
        return
    print(
        f"machine: {os.cpu_count()} cores; server: {args.web_concurrency} web process(es); "
        f"load: 8 clients over {args.client_processes} processes; {args.seconds:.0f} s per phase"
    )
    with throwaway_database() as dsn:
        with running_server(dsn, web_concurrency=args.web_concurrency) as url:
            batch = load(url, "/v1/batch", args.seconds, clients=8, batch=100, processes=args.client_processes)
            single = load(url, "/segment", args.seconds, clients=8, batch=0, processes=args.client_processes)
        ceiling = asyncio.run(copy_ceiling(dsn, 50_000))
        processor = asyncio.run(processor_throughput(dsn))

    print(
        f"\n/v1/batch   {batch['events_per_s']:>9,.0f} events/s  ({batch['requests_per_s']:,.0f} req/s of 100 events; "
        f"p50 {batch['p50_ms']:.1f} ms, p99 {batch['p99_ms']:.1f} ms)"
    )
    print(
        f"/segment    {single['requests_per_s']:>9,.0f} requests/s "
        f"(p50 {single['p50_ms']:.1f} ms, p99 {single['p99_ms']:.1f} ms)"
    )
    print(f"COPY        {ceiling:>9,.0f} rows/s   (raw asyncpg COPY of the same journal rows: the ceiling)")
    print(
        f"ratio       /v1/batch at {batch['events_per_s'] / ceiling:.1%} of COPY "
        "(/segment against its own ceiling, a durable-accept app: benchmarks/accept.py)"
    )
    print(
        f"processor   {processor['events_per_s']:>9,.0f} events/s  ({processor['processed']:,} journal messages "
        f"-> profiles in {processor['seconds']:.1f} s)"
    )


if __name__ == "__main__":
    main()
