"""What privacy costs, on PostgreSQL: the suppression check per journal batch, and one erasure.

Prints: the time of the suppression lookup for a batch of 500 messages against a list of
10,000 entries, next to the time the processor takes for such a batch; and the time to
erase one profile from a journal of `--journal` rows, next to one sequential scan of the
journal that looks for a userId in its payloads (the erasure has to read the whole journal
once: that scan is its floor).

    .venv/bin/python benchmarks/privacy.py [--journal 200000] [--erasures 5]

Not part of the test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import time

import asyncpg
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from common import throwaway_database
from ingest import JOURNAL_COLUMNS, journal_records

PROCESSED_FIRST = 20_000
BATCH = 500


async def run(dsn: str, journal: int, erasures: int) -> None:
    from connector.core.db import create_engine
    from connector.core.settings import ConnectorSettings
    from connector.processing import privacy
    from connector.service.batch import process_batch
    from connector.service.use_cases import erase_user

    connection = await asyncpg.connect(dsn)
    await connection.copy_records_to_table(
        "inbound_journal", records=journal_records(PROCESSED_FIRST, 1), columns=JOURNAL_COLUMNS
    )
    last_pending = await connection.fetchval("SELECT max(id) FROM inbound_journal")
    await connection.copy_records_to_table(
        "inbound_journal", records=journal_records(journal, 2), columns=JOURNAL_COLUMNS
    )
    # The rest of the journal is history, processed: out of the queue the database put it in.
    await connection.execute("DELETE FROM journal_queue WHERE id > $1", last_pending)
    await connection.executemany(
        "INSERT INTO suppressions (kind, value_hash, created_at) VALUES ('user_id', $1, now())",
        [(hashlib.sha256(f"gone-{n}".encode()).hexdigest(),) for n in range(10_000)],
    )
    await connection.execute("ANALYZE")
    engine = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    settings = ConnectorSettings()

    batch_times = []
    while True:
        started = time.perf_counter()
        changes = await process_batch(engine, settings, BATCH)
        if changes.processed + changes.skipped + changes.failed == 0:
            break
        batch_times.append(time.perf_counter() - started)

    payloads = [
        row["payload"]
        for row in await connection.fetch(
            "SELECT payload::text AS payload FROM inbound_journal ORDER BY id LIMIT $1", BATCH
        )
    ]
    messages = [orjson.loads(payload) for payload in payloads]
    lookups = []
    async with engine.connect() as conn:
        for _ in range(50):
            started = time.perf_counter()
            await privacy.suppressed(conn, {claim for message in messages for claim in privacy.message_claims(message)})
            lookups.append(time.perf_counter() - started)

    scans, erased = [], []
    victims = await connection.fetch(
        "SELECT user_id, value FROM user_identifiers WHERE kind = 'user_id' ORDER BY id LIMIT $1", erasures
    )
    for victim in victims:
        started = time.perf_counter()
        await connection.fetchval("SELECT count(*) FROM inbound_journal WHERE payload->>'userId' = $1", victim["value"])
        scans.append(time.perf_counter() - started)
        started = time.perf_counter()
        await erase_user(engine, settings, victim["user_id"])
        erased.append(time.perf_counter() - started)
    await connection.close()
    await engine.dispose()

    total = PROCESSED_FIRST + journal
    print(
        f"suppression lookup  median {statistics.median(lookups) * 1000:6.1f} ms per batch of {BATCH} "
        f"(list of 10,000); processor batch median {statistics.median(batch_times) * 1000:6.1f} ms "
        f"-> {statistics.median(lookups) / statistics.median(batch_times):.1%} of a batch"
    )
    print(
        f"erasure             median {statistics.median(erased) * 1000:6.0f} ms (min {min(erased) * 1000:.0f}, "
        f"max {max(erased) * 1000:.0f}) with a journal of {total:,} rows"
    )
    print(
        f"journal scan floor  median {statistics.median(scans) * 1000:6.0f} ms (one payload->>'userId' scan) "
        f"-> erasure at {statistics.median(erased) / statistics.median(scans):.1f}x the floor"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journal", type=int, default=200_000)
    parser.add_argument("--erasures", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores (shared: figures vary with other load)")
    with throwaway_database() as dsn:
        asyncio.run(run(dsn, args.journal, args.erasures))


if __name__ == "__main__":
    main()
