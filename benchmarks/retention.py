"""Retention: purging 1,000,000 expired journal rows while /segment takes 500 requests/s.

Prints: p50/p99 /segment latency with no purge, during the batched purge (connector.service.retention.purge,
what the worker runs), and during one `DELETE` of the same rows in a single statement (the physical
limit); the purge's and the single DELETE's duration and rows/s.

    .venv/bin/python benchmarks/retention.py [--rows 1000000] [--rate 500] [--web-concurrency 2] [--sqlite]

PostgreSQL by default; --sqlite runs the same on a SQLite file (one web process), where a single
DELETE holds the database's only write lock for its whole length.
Rows are ~1 KB journal messages processed 8 days ago, written by one INSERT ... SELECT.
The load is open-loop: one request every 1/rate s on a fixed schedule, over 16 keep-alive
connections, to 127.0.0.1 only; a phase that outlives --max-seconds is stopped. Not part of the
test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import asyncpg
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from common import percentile, running_server, throwaway_database
from ingest import AUTH
from rawhttp import RawConnection

from connector.service.migrate import upgrade

CONNECTIONS = 16
EXPIRED_ROWS = """
INSERT INTO inbound_journal (message_id, type, payload, received_at, source)
SELECT 'expired-' || g, 'track',
       jsonb_build_object('type', 'track', 'messageId', 'expired-' || g, 'userId', 'user-' || (g % 5000),
                          'event', 'Order Completed', 'timestamp', '2026-01-01T00:00:00.000Z',
                          'properties', jsonb_build_object('revenue', g % 100, 'notes', repeat('x', 800))),
       now() - interval '8 days' + g * interval '1 millisecond', 'segment'
FROM generate_series(1, $1) AS g
"""
SQLITE_EXPIRED_ROWS = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?)
INSERT INTO inbound_journal (message_id, type, payload, received_at, source)
SELECT 'expired-' || n, 'track',
       json_object('type', 'track', 'messageId', 'expired-' || n, 'userId', 'user-' || (n % 5000),
                   'event', 'Order Completed', 'timestamp', '2026-01-01T00:00:00.000Z',
                   'properties', json_object('revenue', n % 100, 'notes', hex(zeroblob(400)))),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-8 days'), 'segment'
FROM g
"""
# The expired rows are processed ones: the inserts queued them (the database does), so they leave the queue.
PROCESSED = "DELETE FROM journal_queue WHERE id IN (SELECT id FROM inbound_journal WHERE message_id LIKE 'expired-%')"


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/connector.db"
        upgrade(url.replace("sqlite://", "sqlite+aiosqlite://"))
        yield url


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


async def insert_expired(dsn: str, rows: int) -> float:
    if dsn.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(dsn)) as connection:
            started = time.perf_counter()
            connection.execute(SQLITE_EXPIRED_ROWS, (rows,))
            connection.execute(PROCESSED)
            connection.commit()
            return time.perf_counter() - started
    connection = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        async with connection.transaction():
            await connection.execute(EXPIRED_ROWS, rows)
            await connection.execute(PROCESSED)
        elapsed = time.perf_counter() - started
        await connection.execute("VACUUM ANALYZE inbound_journal")  # a table that has lived a while, not a fresh one
    finally:
        await connection.close()
    return elapsed


async def _load(url: str, rate: int, stop: "multiprocessing.synchronize.Event", max_seconds: float) -> list:
    """(sent at, latency from sending, latency from the schedule, status) per request, one every 1/rate s.

    Latency from the schedule counts the wait behind a slow answer on the same connection too
    (no coordinated omission); it runs until `stop` or max_seconds.
    """
    interval = 1 / rate
    start = time.time()
    results: list[tuple[float, float, float, int]] = []

    async def one_connection(offset: int) -> None:
        async with RawConnection(url, AUTH) as connection:
            tick = offset
            while not stop.is_set() and tick * interval < max_seconds:
                scheduled = start + tick * interval
                await asyncio.sleep(max(0.0, scheduled - time.time()))
                body = orjson.dumps(
                    {**EVENT, "messageId": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat()}
                )
                sent = time.time()
                status, _ = await connection.post("/segment", body)
                answered = time.time()
                results.append((sent, answered - sent, answered - scheduled, status))
                tick += CONNECTIONS

    await asyncio.gather(*(one_connection(i) for i in range(CONNECTIONS)))
    return results


EVENT = {
    "type": "track",
    "userId": "user-1",
    "anonymousId": "anon-1",
    "event": "Order Completed",
    "properties": {"revenue": 12.5, "currency": "EUR", "notes": "x" * 600},
    "context": {
        "library": {"name": "analytics.js", "version": "4.1.0"},
        "ip": "203.0.113.7",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    },
}


def _load_process(url: str, rate: int, stop, max_seconds: float, queue) -> None:
    queue.put(asyncio.run(_load(url, rate, stop, max_seconds)))


class Load:
    """The load generator in its own process (the server and the purge need the cores too)."""

    def __init__(self, url: str, rate: int, max_seconds: float):
        self.stop = multiprocessing.Event()
        self.queue = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=_load_process, args=(url, rate, self.stop, max_seconds, self.queue)
        )

    def __enter__(self) -> "Load":
        self.process.start()
        time.sleep(1.0)  # connections open, schedule running
        return self

    def results(self) -> list[tuple[float, float, float, int]]:
        self.stop.set()
        results = self.queue.get(timeout=120)
        self.process.join(timeout=30)
        return results

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.process.is_alive():
            self.process.join(timeout=30)
            if self.process.is_alive():
                self.process.terminate()


def latencies_between(results: list[tuple[float, float, float, int]], start: float, end: float) -> dict:
    window = [(latency, late, status) for sent, latency, late, status in results if start <= sent <= end]
    values, from_schedule = [latency for latency, _, _ in window], [late for _, late, _ in window]
    return {
        "requests": len(values),
        "failed": sum(status != 200 for _, _, status in window),
        "seconds": end - start,
        "p50_ms": percentile(values, 0.50) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": max(values, default=float("nan")) * 1000,
        "schedule_p99_ms": percentile(from_schedule, 0.99) * 1000,
    }


async def batched_purge(dsn: str, batch_size: int) -> dict:
    from connector.core.db import create_engine
    from connector.core.environment import normalise_database_url
    from connector.core.settings import ConnectorSettings
    from connector.service.retention import purge

    engine = create_engine(normalise_database_url(dsn))
    try:
        started = time.time()
        purged = await purge(engine, ConnectorSettings(), batch_size=batch_size)
        ended = time.time()
    finally:
        await engine.dispose()
    return {"rows": purged["inbound_journal"], "start": started, "end": ended}


async def single_delete(dsn: str) -> dict:
    if dsn.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(dsn), timeout=60) as connection:
            started = time.time()
            deleted = connection.execute(
                "DELETE FROM inbound_journal WHERE error IS NULL AND id NOT IN (SELECT id FROM journal_queue) "
                "AND received_at < strftime('%Y-%m-%d %H:%M:%f', 'now', '-7 days')"
            ).rowcount
            connection.commit()
            return {"rows": deleted, "start": started, "end": time.time()}
    connection = await asyncpg.connect(dsn)
    try:
        started = time.time()
        status = await connection.execute(
            "DELETE FROM inbound_journal WHERE error IS NULL AND id NOT IN (SELECT id FROM journal_queue) "
            "AND received_at < now() - interval '7 days'"
        )
        ended = time.time()
    finally:
        await connection.close()
    return {"rows": int(status.split()[-1]), "start": started, "end": ended}


def under_load(url: str, args: argparse.Namespace, work) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    with Load(url, args.rate, args.max_seconds) as load:
        done = asyncio.run(work())
        time.sleep(0.5)
        results = load.results()
    return done, latencies_between(results, done["start"], done["end"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--baseline-seconds", type=float, default=20)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--web-concurrency", type=int, default=2)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--max-seconds", type=float, default=600, help="a load phase never runs longer")
    args = parser.parse_args()
    if args.sqlite:
        args.web_concurrency = 1
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; "
        f"{'SQLite' if args.sqlite else 'PostgreSQL'}, {args.rows:,} expired rows; /segment at {args.rate} "
        f"requests/s to {args.web_concurrency} web process(es); purge batches of {args.batch_size:,}"
    )
    database = sqlite_database() if args.sqlite else throwaway_database()
    with database as dsn, running_server(dsn, web_concurrency=args.web_concurrency) as url:
        inserted = asyncio.run(insert_expired(dsn, args.rows))
        print(f"inserted {args.rows:,} expired rows in {inserted:.1f} s")

        with Load(url, args.rate, args.max_seconds) as load:
            start = time.time()
            time.sleep(args.baseline_seconds)
            end = time.time()
            baseline = latencies_between(load.results(), start, end)

        purge, during_purge = under_load(url, args, lambda: batched_purge(dsn, args.batch_size))

        asyncio.run(insert_expired(dsn, args.rows))
        delete, during_delete = under_load(url, args, lambda: single_delete(dsn))

    def line(name: str, figures: dict) -> str:
        return (
            f"{name:<22} p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
            f"max {figures['max_ms']:7.1f} ms  p99 from schedule {figures['schedule_p99_ms']:7.1f} ms  "
            f"({figures['requests']:,} requests, {figures['requests'] / figures['seconds']:,.0f}/s, "
            f"{figures['failed']} not 200)"
        )

    def speed(name: str, done: dict) -> str:
        seconds = done["end"] - done["start"]
        return f"{name:<22} {done['rows']:,} rows in {seconds:.1f} s = {done['rows'] / seconds:,.0f} rows/s"

    print(f"\nat {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f} at the end")
    print(line("/segment, no purge", baseline))
    print(line("/segment, batched", during_purge))
    print(line("/segment, one DELETE", during_delete))
    print(speed("batched purge", purge))
    print(speed("one DELETE (limit)", delete))


if __name__ == "__main__":
    main()
