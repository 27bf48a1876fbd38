"""Full segment recompute time on PostgreSQL, for 100,000 and 1,000,000 users.

Rows are generated inside PostgreSQL (INSERT ... SELECT generate_series): users with a
`plan` trait (a third are pro), two events per user over the last 60 days. The rule is
typical: traits.plan eq pro AND at least one Order Completed within 30 days. Prints the
time of the first computation (every member enters: transitions, memberships, outbox
rows), of a recompute where nothing changed, of one after a rule change that swaps
half of the members, and the worst case: a broad rule that a third of the users enter at once.

    .venv/bin/python benchmarks/segments.py [--users 100000 1000000]

Not part of the test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import os
import sys
import time

import asyncpg
import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(__file__))
from common import throwaway_database

from connector.core.db import create_engine
from connector.core.logs import configure_logging
from connector.core.models import Segment, utcnow
from connector.segments.membership import recompute

RULE = {
    "all": [
        {"attribute": "traits.plan", "op": "eq", "value": "pro"},
        {"event": "Order Completed", "count": {"gte": 1}, "within_days": 30},
    ]
}
BROAD = {"attribute": "traits.plan", "op": "eq", "value": "pro"}
CHANGED = {
    "all": [
        {"attribute": "traits.plan", "op": "in", "value": ["pro", "team"]},
        {"event": "Order Completed", "count": {"gte": 1}, "within_days": 15},
    ]
}


async def populate(dsn: str, users: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """
            INSERT INTO users (id, traits, trait_timestamps, created_at, updated_at, last_seen_at)
            SELECT g, jsonb_build_object('plan', (ARRAY['free', 'pro', 'team'])[g % 3 + 1],
                                         'email', 'user' || g || '@example.com', 'logins', g % 50),
                   '{}'::jsonb, now() - (g % 400) * interval '1 day', now(), now()
            FROM generate_series(1, $1) AS g""",
            users,
        )
        await connection.execute("SELECT setval('users_id_seq', $1)", users)
        await connection.execute(
            """
            INSERT INTO events (user_id, message_id, type, event, source, timestamp, received_at, properties, context)
            SELECT g % $1 + 1, 'm-' || g, 'track',
                   CASE WHEN g % 4 = 0 THEN 'Order Completed' ELSE 'Product Viewed' END, 'segment',
                   now() - (g % 60) * interval '1 day', now(), '{}'::jsonb, '{}'::jsonb
            FROM generate_series(1, 2 * $1) AS g""",
            users,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def timed_recompute(engine, segment_id: int, initial: bool) -> tuple[float, str]:
    started = time.perf_counter()
    async with engine.begin() as conn:
        result = await recompute(conn, segment_id, utcnow(), initial=initial)
    return time.perf_counter() - started, f"entered {result.entered:,}, exited {result.exited:,}"


async def measure(dsn: str, users: int) -> None:
    started = time.perf_counter()
    await populate(dsn, users)
    print(f"{users:,} users, {2 * users:,} events generated in {time.perf_counter() - started:.1f} s")
    engine = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    segments = Segment.__table__
    try:
        async with engine.begin() as conn:
            segment_id = await conn.scalar(
                segments.insert()
                .values(name="Pro buyers", entity="user", rule=RULE, created_at=utcnow(), updated_at=utcnow())
                .returning(segments.c.id)
            )
        for label, initial in (("first computation", True), ("recompute, nothing changed", False)):
            seconds, counts = await timed_recompute(engine, segment_id, initial)
            print(f"  {label:<32} {seconds:6.2f} s  ({counts})")
        async with engine.begin() as conn:
            await conn.execute(sa.update(segments).where(segments.c.id == segment_id).values(rule=CHANGED))
        seconds, counts = await timed_recompute(engine, segment_id, False)
        print(f"  {'recompute after a rule change':<32} {seconds:6.2f} s  ({counts})")
        async with engine.begin() as conn:  # the worst case: a third of everyone enters at once
            broad_id = await conn.scalar(
                segments.insert()
                .values(name="Pro", entity="user", rule=BROAD, created_at=utcnow(), updated_at=utcnow())
                .returning(segments.c.id)
            )
        seconds, counts = await timed_recompute(engine, broad_id, True)
        print(f"  {'a third of the users enter':<32} {seconds:6.2f} s  ({counts})")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    configure_logging("WARNING")
    for users in args.users:
        with throwaway_database() as dsn:
            asyncio.run(measure(dsn, users))


if __name__ == "__main__":
    main()
