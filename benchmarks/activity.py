"""The activity log's share of processor and sender time, measured inside one run on PostgreSQL.

Robust to the machine's load, since both parts of each ratio see the same machine.

Processor: benchmarks/ingest.py's journal rows (COPY) through process_batch(500), as ingest.py's
processor phase. Sender: benchmarks/outbound.py's full outbox drained by Sender.send_once against
the fake Segment, in this process. Time spent in connector.flow.activity.append (the INSERTs) and in
building the sender's entries is summed and divided by the phase's wall time.

    .venv/bin/python benchmarks/activity.py [--messages 10000]

Not part of the test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import asyncpg
from common import throwaway_database
from ingest import JOURNAL_COLUMNS, journal_records
from outbound import SETTINGS

from connector.core.environment import Environment
from connector.core.runtime import Runtime
from connector.core.settings import ConnectorSettings
from connector.flow import activity
from connector.outbound import sender as sender_module
from connector.service.batch import process_batch
from tests.support.fake_segment import FakeSegment

spent = {"append": 0.0, "entries": 0.0, "rows": 0}
original_append = activity.append
original_outcome = sender_module.outcome_entries


async def timed_append(conn, entries, now=None):
    started = time.perf_counter()
    await original_append(conn, entries, now)
    spent["append"] += time.perf_counter() - started
    spent["rows"] += len(entries)


def timed_outcome(*args, **kwargs):
    started = time.perf_counter()
    result = original_outcome(*args, **kwargs)
    spent["entries"] += time.perf_counter() - started
    return result


activity.append = timed_append
sender_module.outcome_entries = timed_outcome


async def measure(dsn: str, messages: int) -> None:
    connection = await asyncpg.connect(dsn)
    await connection.copy_records_to_table(
        "inbound_journal", records=journal_records(messages, 3), columns=JOURNAL_COLUMNS
    )
    await connection.close()
    with FakeSegment() as fake:
        env = Environment(
            database_url=dsn.replace("postgresql://", "postgresql+asyncpg://"),
            log_level="WARNING",
            connector_api_key="bench-api-key-0123456789",
            admin_token="bench-admin-token",
        )
        runtime = await Runtime.start(env)
        await runtime.settings.save({**SETTINGS, "write_key": fake.write_key, "segment_api_host": fake.url})
        settings = ConnectorSettings(**SETTINGS)
        started = time.perf_counter()
        processed = 0
        while (
            (changes := await process_batch(runtime.engine, settings, 500)).processed + changes.failed + changes.skipped
        ):
            processed += changes.processed
        wall = time.perf_counter() - started
        print(
            f"processor {processed / wall:7.0f} events/s; activity INSERTs {spent['append'] / wall:5.1%} of the time "
            f"({spent['rows']} rows in {spent['append']:.2f} s of {wall:.1f} s)"
        )
        spent.update(append=0.0, entries=0.0, rows=0)
        sender = sender_module.Sender(runtime)
        started = time.perf_counter()
        delivered = 0
        while (result := await sender.send_once()).claimed:
            delivered += result.delivered
        wall = time.perf_counter() - started
        print(
            f"sender    {delivered / wall:7.0f} messages/s; activity INSERTs {spent['append'] / wall:5.1%}, "
            f"building entries {spent['entries'] / wall:5.1%} of the time ({spent['rows']} rows; {wall:.1f} s)"
        )
        await runtime.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    with throwaway_database() as dsn:
        asyncio.run(measure(dsn, args.messages))


if __name__ == "__main__":
    main()
