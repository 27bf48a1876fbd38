"""Outbound throughput and latency on PostgreSQL, against the fake Segment of the tests.

Prints: messages/s delivered to the fake Segment by one `connector worker` process
draining a full outbox (identify per user, track per event), and the latency from
inbound accept (the 200 of POST /v1/batch) to delivery at the fake Segment, p50/p95/p99,
at a steady 500 events/s through a server with its embedded worker.

    .venv/bin/python benchmarks/outbound.py [--events 50000] [--seconds 20] [--rate 500]

Not part of the test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=500)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; PostgreSQL; fake Segment on localhost")
    result = throughput(args.events)
    print(
        f"throughput  {result['per_s']:>8,.0f} messages/s delivered ({result['delivered']:,} of {result['queued']:,} "
        f"queued, {result['batches']:,} batches, {result['seconds']:.1f} s from worker start; "
        f"{result['steady_per_s']:,.0f}/s first to last delivery)"
    )
    steady = latency(args.seconds, args.rate)
    print(
        f"latency     accept -> delivered at {args.rate} events/s for {args.seconds:.0f} s: "
        f"p50 {steady['p50'] * 1000:.0f} ms, p95 {steady['p95'] * 1000:.0f} ms, p99 {steady['p99'] * 1000:.0f} ms "
        f"({steady['delivered']:,} of {steady['events']:,} delivered)"
    )
    print(
        f"            of which processed -> delivered (the outbound half): p50 {steady['out_p50'] * 1000:.0f} ms, "
        f"p95 {steady['out_p95'] * 1000:.0f} ms, p99 {steady['out_p99'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
