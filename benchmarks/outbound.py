"""Outbound throughput and latency on PostgreSQL, against the fake Segment of the tests.

Prints: the bulk push (`connector resync` of --users stored users, one `connector worker`
draining to the fake Segment) in users/s, against segment-analytics-python alone sending the
same identify calls to the same fake in the same run, and the ratio; how long `connector resync`
takes from its start to its first queued row; messages/s delivered by one `connector worker`
draining a full outbox (identify per user, track per event); and the latency from inbound
accept (the 200 of POST /v1/batch) to delivery at the fake Segment, p50/p95/p99, at a steady
500 events/s through a server with its embedded worker.

    .venv/bin/python benchmarks/outbound.py [--users 20000] [--events 50000] [--seconds 20] [--rate 500]
    .venv/bin/python benchmarks/outbound.py --only push [--short]    # the bulk push alone (--short: 5,000 users)

Not part of the test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC

import asyncpg
import httpx
import orjson

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from common import API_KEY, percentile, running_server, throwaway_database
from ingest import AUTH, JOURNAL_COLUMNS, journal_records, make_event

from tests.support.fake_segment import FakeSegment

SETTINGS = {
    "synchronized_segments": ["ALL"],
    "send_events": ["ALL"],
    "forward_events": True,
    "synchronized_properties": ["email", "plan", "name"],
}


async def save_settings(dsn: str, fake: FakeSegment) -> None:
    from connector.core.db import create_engine
    from connector.core.settings_store import SettingsStore

    engine = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    await SettingsStore(engine).save({**SETTINGS, "write_key": fake.write_key, "segment_api_host": fake.url})
    await engine.dispose()


async def fill_outbox(dsn: str, events: int) -> int:
    """Journal rows by COPY, then the processor turns them into profiles and outbox rows; returns rows queued."""
    from connector.core.db import create_engine
    from connector.core.settings import ConnectorSettings
    from connector.service.batch import process_batch

    records = journal_records(events, seed=11)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table("inbound_journal", records=records, columns=JOURNAL_COLUMNS)
    finally:
        await connection.close()
    engine = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    settings = ConnectorSettings(**SETTINGS)
    while (changes := await process_batch(engine, settings, 1000)).processed + changes.failed + changes.skipped:
        pass
    await engine.dispose()
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval("SELECT count(*) FROM outbox")
    finally:
        await connection.close()


def throughput(events: int) -> dict:
    with throwaway_database() as dsn, FakeSegment() as fake:
        asyncio.run(save_settings(dsn, fake))
        queued = asyncio.run(fill_outbox(dsn, events))
        env = {**os.environ, "DATABASE_URL": dsn, "CONNECTOR_API_KEY": API_KEY, "LOG_LEVEL": "WARNING"}
        worker = subprocess.Popen([sys.executable, "-m", "connector", "worker"], env=env, stderr=subprocess.PIPE)
        started = time.time()
        try:
            while len(fake.arrivals) < queued and time.time() - started < 600:
                if worker.poll() is not None:
                    raise RuntimeError(worker.stderr.read().decode()[-2000:])
                time.sleep(0.05)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        first, last = min(fake.arrivals.values()), max(fake.arrivals.values())
        delivered = len(fake.arrivals)
        return {
            "queued": queued,
            "delivered": delivered,
            "batches": len(fake.bodies),
            "seconds": last - started,
            "per_s": delivered / (last - started),
            "steady_per_s": delivered / max(last - first, 1e-9),
        }


async def steady_load(url: str, seconds: float, rate: int, fake: FakeSegment) -> dict[str, float]:
    """`rate` track events/s in batches of 10; returns when each was accepted (its 200), by messageId."""
    rng = random.Random(5)
    accepted: dict[str, float] = {}
    interval = 10 / rate
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as http:

        async def post(batch: list[dict]) -> None:
            response = await http.post("/v1/batch", content=orjson.dumps({"batch": batch}))
            response.raise_for_status()
            now = time.time()
            for message in batch:
                accepted[message["messageId"]] = now

        tasks = []
        start = time.monotonic()
        for tick in range(int(seconds * rate / 10)):
            await asyncio.sleep(max(0.0, start + tick * interval - time.monotonic()))
            batch = []
            for _ in range(10):
                message = make_event(rng)
                message["type"], message["event"] = "track", "Order Completed"
                message["properties"] = {"revenue": 1}
                batch.append(message)
            tasks.append(asyncio.create_task(post(batch)))
        await asyncio.gather(*tasks)
    deadline = time.monotonic() + 120
    while not set(accepted) <= set(fake.arrivals) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return accepted


async def processed_at(dsn: str) -> dict[str, float]:
    """When the processor applied each message (the time of its batch, in its activity entry): the hand-over from
    inbound to outbound."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT message_id, min(created_at) AS at FROM activity_log "
            "WHERE action = 'incoming.user.success' GROUP BY message_id"
        )
    finally:
        await connection.close()
    return {row["message_id"]: row["at"].timestamp() for row in rows}


def latency(seconds: float, rate: int) -> dict:
    with throwaway_database() as dsn, FakeSegment() as fake:
        asyncio.run(save_settings(dsn, fake))
        with running_server(dsn, run_worker=True) as url:
            accepted = asyncio.run(steady_load(url, seconds, rate, fake))
        processed = asyncio.run(processed_at(dsn))
    total = [fake.arrivals[mid] - at for mid, at in accepted.items() if mid in fake.arrivals]
    outbound = [fake.arrivals[mid] - processed[mid] for mid in accepted if mid in fake.arrivals and mid in processed]
    return {
        "events": len(accepted),
        "delivered": len(total),
        **{f"p{q}": percentile(total, q / 100) for q in (50, 95, 99)},
        **{f"out_p{q}": percentile(outbound, q / 100) for q in (50, 95, 99)},
    }


async def store_users(dsn: str, count: int) -> None:
    """`count` users, each with a userId and the three synchronized traits, as the processor would have stored
    them, with nothing queued."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO users (traits, trait_timestamps, created_at, updated_at) "
            "SELECT jsonb_build_object('email', 'user' || n || '@example.com', 'plan', 'pro', 'name', 'User ' || n), "
            "'{}'::jsonb, now(), now() FROM generate_series(1, $1) AS n",
            count,
        )
        await connection.execute(
            "INSERT INTO user_identifiers (user_id, kind, value, created_at) "
            "SELECT id, 'user_id', 'bulk-' || id, now() FROM users"
        )
        await connection.execute("DELETE FROM outbox")
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


# What every command that touches the database imports before it can do anything: the stack (SQLAlchemy with
# its asyncio extension and ORM, SQLModel, asyncpg, pydantic-settings, click, structlog), none of the connector.
STACK_IMPORTS = (
    "import asyncio, click, pydantic_settings, structlog, sqlalchemy, sqlalchemy.ext.asyncio, sqlmodel, asyncpg, "
    "sqlalchemy.dialects.postgresql.asyncpg"
)


def stack_imports_floor(runs: int = 5) -> float:
    """Seconds from starting a Python process to having imported STACK_IMPORTS (the fastest of `runs`): the
    least any such command takes to its first row, whatever it does after."""
    timings = []
    for _ in range(runs):
        started = time.time()
        code = f"import gc, time; gc.disable(); {STACK_IMPORTS}; print(time.time())"
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        timings.append(float(done) - started)
    return min(timings)


def resync_first_row(dsn: str, env: dict[str, str]) -> float:
    """Seconds from starting `connector resync` (no worker running) to its first row's commit (the row's
    created_at); the rows are deleted afterwards."""
    started = time.time()
    subprocess.run([sys.executable, "-m", "connector", "resync"], env=env, check=True, capture_output=True)
    return asyncio.run(_stamp(dsn, "SELECT min(created_at) FROM outbox", "DELETE FROM outbox")) - started


async def _stamp(dsn: str, query: str, *after: str) -> float:
    """The timestamp `query` returns, in seconds since the epoch; the statements `after` run next."""
    connection = await asyncpg.connect(dsn)
    try:
        stamp = await connection.fetchval(query)
        for statement in after:
            await connection.execute(statement)
        return float(stamp.replace(tzinfo=UTC).timestamp())
    finally:
        await connection.close()


def library_alone(messages: list[dict], fake: FakeSegment) -> float:
    """Seconds segment-analytics-python takes to send these identify calls to the fake, in a process of its own
    (as the worker is): its Client, batches of up to 2,500 (its byte limit cuts them as the connector's does)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(messages, file)
    try:
        output = subprocess.run(
            [sys.executable, __file__, "--library-alone", file.name, fake.url, fake.write_key],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(file.name)
    return float(output.strip())


def _library_alone_process(path: str, host: str, write_key: str) -> None:
    from segment.analytics import Client

    with open(path) as file:
        messages = json.load(file)
    client = Client(write_key, host=host, max_queue_size=len(messages) + 1, upload_size=2500, max_retries=0)
    started = time.perf_counter()
    for message in messages:
        client.identify(
            message.get("userId"),
            message["traits"],
            message.get("context"),
            None,
            message.get("anonymousId"),
            message.get("integrations"),
            message["messageId"],
        )
    client.flush()
    print(time.perf_counter() - started)


def bulk_push(users: int) -> dict:
    """`connector resync` with one `connector worker` already running, until the fake holds every identify;
    then the library alone sends the same identify calls to a fresh fake."""
    with throwaway_database() as dsn, FakeSegment() as fake:
        asyncio.run(save_settings(dsn, fake))
        asyncio.run(store_users(dsn, users))
        env = {**os.environ, "DATABASE_URL": dsn, "CONNECTOR_API_KEY": API_KEY, "LOG_LEVEL": "WARNING"}
        queued_in = resync_first_row(dsn, env)
        worker = subprocess.Popen([sys.executable, "-m", "connector", "worker"], env=env, stderr=subprocess.PIPE)
        try:
            time.sleep(3)  # started and idle: its start is not the push's
            started = time.time()
            subprocess.run([sys.executable, "-m", "connector", "resync"], env=env, check=True, capture_output=True)
            while len(fake.arrivals) < users and time.time() - started < 600:
                if worker.poll() is not None:
                    raise RuntimeError(worker.stderr.read().decode()[-2000:])
                time.sleep(0.02)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        connector_seconds = max(fake.arrivals.values()) - started
        # From the resync's sync run, recorded just before its first rows.
        drain_seconds = max(fake.arrivals.values()) - asyncio.run(_stamp(dsn, "SELECT max(started_at) FROM sync_runs"))
        sent = [message for message in fake.messages if message["type"] == "identify"]
    with FakeSegment() as fake:
        library_seconds = library_alone(sent, fake)
        assert len(fake.arrivals) == len(sent), "the library did not deliver every call"
    return {
        "users": len(sent),
        "first_queued": queued_in,
        "stack_floor": stack_imports_floor(),
        "connector_per_s": len(sent) / connector_seconds,
        "drain_per_s": len(sent) / drain_seconds,
        "library_per_s": len(sent) / library_seconds,
    }


def print_bulk_push(users: int) -> None:
    push = bulk_push(users)
    print(
        f"bulk push   {push['connector_per_s']:>8,.0f} users/s: `connector resync` of {push['users']:,} users, "
        f"one worker, resync start to last delivery (first row queued {push['first_queued']:.2f} s after its start)"
    )
    print(
        f"            {push['library_per_s']:>8,.0f} users/s: segment-analytics-python alone, the same identify calls, "
        f"same fake; ratio {push['connector_per_s'] / push['library_per_s']:.2f}"
    )
    print(
        f"            {push['drain_per_s']:>8,.0f} users/s: the same push from the resync's first rows (its sync run) "
        f"to the last delivery, without the process start; ratio {push['drain_per_s'] / push['library_per_s']:.2f}"
    )
    print(
        f"first row   {push['first_queued']:.2f} s; importing the stack alone (no connector module, no query) takes "
        f"{push['stack_floor']:.2f} s in a fresh process"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--only", choices=("push", "throughput", "latency"))
    parser.add_argument("--short", action="store_true", help="5,000 users, 10,000 events, 5 s of steady load")
    parser.add_argument("--library-alone", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.library_alone:
        _library_alone_process(*args.library_alone)
        return
    if args.short:
        args.users, args.events, args.seconds = 5_000, 10_000, 5
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; PostgreSQL; fake Segment on localhost"
    )
    if args.only in (None, "push"):
        print_bulk_push(args.users)
    if args.only in (None, "throughput"):
        print_throughput(args.events)
    if args.only in (None, "latency"):
        print_latency(args.seconds, args.rate)


def print_throughput(events: int) -> None:
    result = throughput(events)
    print(
        f"throughput  {result['per_s']:>8,.0f} messages/s delivered ({result['delivered']:,} of {result['queued']:,} "
        f"queued, {result['batches']:,} batches, {result['seconds']:.1f} s from worker start; "
        f"{result['steady_per_s']:,.0f}/s first to last delivery)"
    )


def print_latency(seconds: float, rate: int) -> None:
    steady = latency(seconds, rate)
    print(
        f"latency     accept -> delivered at {rate} events/s for {seconds:.0f} s: "
        f"p50 {steady['p50'] * 1000:.0f} ms, p95 {steady['p95'] * 1000:.0f} ms, p99 {steady['p99'] * 1000:.0f} ms "
        f"({steady['delivered']:,} of {steady['events']:,} delivered)"
    )
    print(
        f"            of which processed -> delivered (the outbound half): p50 {steady['out_p50'] * 1000:.0f} ms, "
        f"p95 {steady['out_p95'] * 1000:.0f} ms, p99 {steady['out_p99'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
