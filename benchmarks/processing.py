"""Journal processing throughput: journal -> profiles, events, accounts -> segments -> outbox.

Two streams, each written to the journal of a fresh database as `pending` rows, then drained by
real `connector worker` processes:

- cold: N new profiles, each an anonymous page and track (anonymousId only), an identify with
  userId, the same anonymousId and traits, a group (about 10 users per account) and three tracks
  by userId: 7 messages per profile, profiles interleaved (about 50 visitors at once), timestamps
  increasing.
- warm: the profiles of a cold stream exist (that stream is processed first, not timed), then M
  messages on them: 80 % track, 15 % identify changing a trait, 5 % page.

Method. Each run has a fresh database (PostgreSQL: a connector_bench_* database, dropped afterwards;
SQLite: a temporary file). Rows are built as the inbound builds them (spec.normalise_message, then
journal_row, whose columns are taken as they come) and written in one transaction: on PostgreSQL by
a raw asyncpg COPY, on SQLite (no COPY) by one executemany INSERT. That write, timed, is the ceiling
(rows/s). The workers are started first, on the empty journal, and the write begins once each has
beaten its heartbeat: process start-up is outside the figure (a worker that found nothing waits
0.2 s before looking again, which is inside it). The clock runs from the commit of the rows until a
poll (every 0.05 s, one EXISTS) finds no `pending` row (none left in `journal_queue`). Settings: group calls handled
(handle_accounts), no Segment write key: the processor writes its outbox rows, the workers' senders
skip them (they stay queued), so the figure is processing alone. Two segments exist (a user segment
on a trait and an event count, an account segment on a trait; neither time-based, so no scheduled
recompute), so membership is refreshed in each batch (--no-segments: none).

    .venv/bin/python benchmarks/processing.py [--profiles 5000] [--warm-messages 50000]
        [--workers 1,2,4] [--backends postgresql,sqlite] [--stream cold,warm] [--repeat 1]

Not part of the test suite: it measures, it does not assert.
"""

import argparse
import asyncio
import itertools
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(__file__))
from common import running_workers, throwaway_database

from connector.core import spec
from connector.core.db import create_engine
from connector.core.environment import normalise_database_url
from connector.core.models import JournalEntry, Segment, utcnow
from connector.core.settings_store import SettingsStore
from connector.inbound.writer import API, journal_row
from connector.service.migrate import upgrade

USERS_PER_ACCOUNT = 10
VISITORS_AT_ONCE = 50  # profiles in progress at any moment of the cold stream
MESSAGES_PER_PROFILE = 7
EVENTS_PER_PROFILE = 5  # the page and the four tracks; identify and group store no event
POLL_SECONDS = 0.05
DRAIN_TIMEOUT_SECONDS = 3600
SEGMENTS = [
    (
        "Pro buyers",
        "user",
        {
            "all": [
                {"attribute": "traits.plan", "op": "eq", "value": "pro"},
                {"event": "Order Completed", "count": {"gte": 1}},
            ]
        },
    ),
    ("Pro accounts", "account", {"attribute": "traits.plan", "op": "eq", "value": "pro"}),
]
SETTINGS = {"handle_accounts": True}
PLANS = ["free", "pro", "team"]
TITLES = ["Engineer", "Founder", "Product Manager", "Designer", "Analyst"]
EVENT_NAMES = ["Order Completed", "Product Viewed", "Signed In", "Feature Used"]


# --- the streams -------------------------------------------------------------


def context(rng: random.Random, path: str) -> dict[str, Any]:
    return {
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "ip": f"203.0.113.{rng.randrange(1, 255)}",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
        "page": {"url": f"https://example.com{path}?ref=newsletter", "path": path, "title": path.strip("/").title()},
        "locale": "en-GB",
    }


def track(rng: random.Random, identity: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "track",
        **identity,
        "event": rng.choice(EVENT_NAMES),
        "properties": {
            "revenue": round(rng.random() * 100, 2),
            "currency": "EUR",
            "feature": rng.choice(["export", "search", "share"]),
            "sku": f"SKU-{rng.randrange(10_000)}",
        },
        "context": context(rng, "/app"),
    }


def page(rng: random.Random, identity: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "page",
        **identity,
        "name": "Pricing",
        "properties": {"path": "/pricing", "referrer": "https://news.example.org/", "title": "Pricing"},
        "context": context(rng, "/pricing"),
    }


def user_id(profile: int) -> str:
    return f"user-{profile}"


def profile_messages(rng: random.Random, profile: int) -> list[dict[str, Any]]:
    """The seven messages of one new profile, in the order its person sends them."""
    anonymous = {"anonymousId": f"anon-{profile}"}
    known = {"userId": user_id(profile)}
    account = profile // USERS_PER_ACCOUNT
    domain = f"company-{account}.example"
    identify = {
        "type": "identify",
        **known,
        **anonymous,
        "traits": {
            "email": f"person{profile}@{domain}",
            "name": f"Person {profile}",
            "firstName": "Person",
            "lastName": str(profile),
            "plan": rng.choice(PLANS),
            "title": rng.choice(TITLES),
            "createdAt": "2026-01-15T10:00:00Z",
        },
        "context": context(rng, "/signup"),
    }
    group = {
        "type": "group",
        **known,
        "groupId": f"account-{account}",
        "traits": {"name": f"Company {account}", "domain": domain, "plan": PLANS[account % 3], "employees": 40},
        "context": context(rng, "/settings/team"),
    }
    return [page(rng, anonymous), track(rng, anonymous), identify, group, *(track(rng, known) for _ in range(3))]


def cold_stream(profiles: int, seed: int = 1) -> list[dict[str, Any]]:
    """Every profile's messages in its own order, profiles interleaved as concurrent visitors."""
    rng = random.Random(seed)
    waiting = iter(range(profiles))
    active = [profile_messages(rng, profile) for profile in _take(waiting, VISITORS_AT_ONCE)]
    stream = []
    while active:
        slot = rng.randrange(len(active))
        stream.append(active[slot].pop(0))
        if not active[slot]:
            following = _take(waiting, 1)
            if following:
                active[slot] = profile_messages(rng, following[0])
            else:
                active.pop(slot)
    return stream


def _take(iterator: Iterator[int], count: int) -> list[int]:
    return list(itertools.islice(iterator, count))


def warm_stream(profiles: int, count: int, seed: int = 2) -> list[dict[str, Any]]:
    """`count` messages on the existing users: 80 % track, 15 % identify changing a trait, 5 % page."""
    rng = random.Random(seed)
    stream = []
    for _ in range(count):
        profile = rng.randrange(profiles)
        known = {"userId": user_id(profile)}
        kind = rng.choices(["track", "identify", "page"], weights=[80, 15, 5])[0]
        if kind == "track":
            stream.append(track(rng, known))
        elif kind == "identify":
            traits = {"plan": rng.choice(PLANS), "logins": rng.randrange(1, 500)}
            stream.append({"type": "identify", **known, "traits": traits, "context": context(rng, "/account")})
        else:
            stream.append(page(rng, known))
    return stream


def journal_rows(stream: list[dict[str, Any]], first_timestamp: datetime, received_at: datetime) -> list[dict]:
    """Journal rows as the inbound writes them, one second apart from `first_timestamp` on."""
    rows = []
    for position, message in enumerate(stream):
        message = {**message, "messageId": str(uuid.uuid4())}
        message["timestamp"] = (first_timestamp + timedelta(seconds=position)).isoformat()
        rows.append(journal_row(spec.normalise_message(message, received_at), received_at, API))
    return rows


# --- the databases -------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[str]:
    """A fresh, migrated SQLite file in a temporary directory; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="connector-bench-") as directory:
        url = f"sqlite:///{directory}/connector.db"
        upgrade(normalise_database_url(url))
        yield url


DATABASES = {"postgresql": throwaway_database, "sqlite": sqlite_database}


async def write_rows(url: str, rows: list[dict]) -> float:
    """Write `rows` to the journal in one transaction, the cheapest way the backend has; returns seconds."""
    if url.startswith("postgresql"):
        columns = list(rows[0])
        records = [tuple(_copy_value(row[column]) for column in columns) for row in rows]
        connection = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            async with connection.transaction():
                await connection.copy_records_to_table("inbound_journal", records=records, columns=columns)
            return time.perf_counter() - started
        finally:
            await connection.close()
    engine = sa.create_engine(url, json_serializer=lambda value: orjson.dumps(value).decode())
    try:
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(JournalEntry.__table__.insert(), rows)
        return time.perf_counter() - started
    finally:
        engine.dispose()


def _copy_value(value: Any) -> Any:
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else value


# Pending while queued, failed when parked with a reason, processed otherwise.
JOURNAL_STATUSES = sa.text(
    "SELECT CASE WHEN id IN (SELECT id FROM journal_queue) THEN 'pending' WHEN error IS NOT NULL THEN 'failed' "
    "ELSE 'processed' END, count(*) FROM inbound_journal GROUP BY 1"
)


async def scalar(engine: Any, sql: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text(sql)))


async def prepare(url: str, segments: bool) -> None:
    """What the workers find at start: the settings (group calls handled, no write key) and the segments."""
    engine = create_engine(normalise_database_url(url))
    try:
        await SettingsStore(engine).save(SETTINGS)
        if segments:
            await create_segments(engine)
    finally:
        await engine.dispose()


async def create_segments(engine: Any) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            Segment.__table__.insert(),
            [
                {"name": name, "entity": entity, "rule": rule, "created_at": now, "updated_at": now, "computed_at": now}
                for name, entity, rule in SEGMENTS
            ],
        )


# --- one run ---------------------------------------------------------------


@dataclass
class Run:
    stream: str
    backend: str
    workers: int
    messages: int
    seconds: float
    copy_seconds: float
    worker_cpu: float
    database_cpu: float
    wal_bytes: int
    checkpoints: int
    statuses: dict[str, int]
    counts: dict[str, int]
    worker_problems: int
    load: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def copy_per_second(self) -> float:
        return self.messages / self.copy_seconds


async def wait_for_workers(engine: Any, count: int, processes: list) -> None:
    """Until each worker process has written its heartbeat: started, connected, its loops running."""
    deadline = time.monotonic() + 60
    while await scalar(engine, "SELECT count(*) FROM worker_heartbeats") < count:
        exited = [process.args for process in processes if process.poll() is not None]
        if exited or time.monotonic() > deadline:
            raise RuntimeError(f"workers did not start (exited: {exited})")
        await asyncio.sleep(POLL_SECONDS)


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU time (user + system) of each process, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def backends_of(url: str) -> list[int]:
    """The PostgreSQL server processes serving connections to this benchmark's database."""
    if not url.startswith("postgresql"):
        return []
    name = url.rsplit("/", 1)[1]
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text.startswith("postgres:") and f" {name} " in text:
            pids.append(int(cmdline.parent.name))
    return pids


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@dataclass
class Drained:
    copy_seconds: float
    seconds: float
    worker_cpu: float  # CPU seconds of the workers
    database_cpu: float  # CPU seconds of the database's server processes
    wal_bytes: int  # PostgreSQL's write-ahead log written meanwhile (0 on SQLite)
    checkpoints: int  # PostgreSQL checkpoints begun meanwhile


async def server_counters(engine: Any) -> tuple[int, int]:
    """PostgreSQL's write-ahead log position and checkpoint count, server-wide; zeros on SQLite."""
    if engine.dialect.name != "postgresql":
        return 0, 0
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, checkpoints_timed + checkpoints_req "
                    "FROM pg_stat_bgwriter"
                )
            )
        ).one()
    return int(row[0]), int(row[1])


async def drain(engine: Any, url: str, rows: list[dict], processes: list) -> Drained:
    """Write the rows, then wait until none is pending; what the processing took."""
    copy_seconds = await write_rows(url, rows)
    workers = [process.pid for process in processes]
    worker_cpu, database_cpu = cpu_seconds(workers), cpu_seconds(backends_of(url))
    wal, checkpoints = await server_counters(engine)
    committed = time.perf_counter()
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    # EXISTS stops at the first queued row: a count would scan them all, and the poll must stay cheap.
    while await scalar(engine, "SELECT EXISTS (SELECT 1 FROM journal_queue)"):
        if any(process.poll() is not None for process in processes) or time.monotonic() > deadline:
            raise RuntimeError("a worker exited, or the journal did not drain in time")
        await asyncio.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - committed
    wal_after, checkpoints_after = await server_counters(engine)
    return Drained(
        copy_seconds,
        seconds,
        cpu_used(worker_cpu, cpu_seconds(workers)),
        cpu_used(database_cpu, cpu_seconds(backends_of(url))),
        wal_after - wal,
        checkpoints_after - checkpoints,
    )


async def measure(url: str, rows: list[dict], preload: list[dict], processes: list) -> dict[str, Any]:
    engine = create_engine(normalise_database_url(url))
    try:
        await wait_for_workers(engine, len(processes), processes)
        if preload:  # the warm stream's profiles: processed first, not timed
            await drain(engine, url, preload, processes)
        before = await scalar(engine, "SELECT count(*) FROM events")
        load = os.getloadavg()[0]
        drained = await drain(engine, url, rows, processes)
        async with engine.connect() as conn:
            statuses = dict((await conn.execute(JOURNAL_STATUSES)).all())
        counts = {
            "users": await scalar(engine, "SELECT count(*) FROM users"),
            "accounts": await scalar(engine, "SELECT count(*) FROM accounts"),
            "events": await scalar(engine, "SELECT count(*) FROM events") - before,
            "outbox": await scalar(engine, "SELECT count(*) FROM outbox"),
        }
    finally:
        await engine.dispose()
    return {
        **vars(drained),
        "statuses": statuses,
        "counts": counts,
        "load": load,
    }


def run(backend: str, stream: str, workers: int, rows: list[dict], preload: list[dict], segments: bool) -> Run:
    """One measurement on a fresh database, with `workers` worker processes started before the rows arrive."""
    with DATABASES[backend]() as url, tempfile.TemporaryDirectory(prefix="connector-bench-logs-") as logs:
        asyncio.run(prepare(url, segments))
        with running_workers(url, workers, Path(logs)) as processes:
            try:
                result = asyncio.run(measure(url, rows, preload, processes))
            except RuntimeError as error:
                raise RuntimeError(f"{error}; the workers' logs end:\n{log_tails(Path(logs))}") from error
        problems = sum(1 for log in Path(logs).glob("*.log") for line in log.open() if is_problem(line))
    return Run(stream, backend, workers, len(rows), worker_problems=problems, **result)


def log_tails(directory: Path) -> str:
    return "\n".join(line for log in sorted(directory.glob("*.log")) for line in log.read_text().splitlines()[-5:])


def is_problem(line: str) -> bool:
    """A worker's warning or error, other than the sender's expected word that no write key is set."""
    return ('"level": "warning"' in line or '"level": "error"' in line) and "outgoing.skip" not in line


# --- the report ------------------------------------------------------------


def expected(stream: str, profiles: int, warm_messages: list[dict]) -> dict[str, int]:
    """What a complete run leaves: every profile one user (its anonymous visits merged), 10 users an account."""
    if stream == "cold":
        events = EVENTS_PER_PROFILE * profiles
    else:
        events = sum(1 for message in warm_messages if message["type"] in ("track", "page"))
    return {"users": profiles, "accounts": math.ceil(profiles / USERS_PER_ACCOUNT), "events": events}


def print_table(runs: list[Run]) -> None:
    print(
        f"\n{'stream':<6} {'backend':<10} {'workers':>7} {'messages':>9} {'seconds':>8} {'events/s':>9} "
        f"{'COPY rows/s':>11} {'ratio':>6} {'worker CPU':>10} {'db CPU':>7} {'WAL/msg':>8} {'ckpt':>4} {'load':>5}"
    )
    for run in runs:
        print(
            f"{run.stream:<6} {run.backend:<10} {run.workers:>7} {run.messages:>9,} {run.seconds:>8.1f} "
            f"{run.per_second:>9,.0f} {run.copy_per_second:>11,.0f} {run.per_second / run.copy_per_second:>6.1%} "
            f"{run.worker_cpu / run.messages * 1e6:>7.0f} µs {run.database_cpu / run.messages * 1e6:>4.0f} µs "
            f"{run.wal_bytes / run.messages:>6,.0f} B {run.checkpoints:>4} {run.load:>5.1f}"
        )
    print(
        "events/s: journal messages processed per second; COPY rows/s: the same rows written in one transaction "
        "(asyncpg COPY on PostgreSQL, one executemany INSERT on SQLite); ratio: events/s over COPY rows/s; "
        "worker CPU, db CPU: CPU time per message of the worker processes and of the database's server processes "
        "(PostgreSQL only; SQLite works inside the worker), which the machine's load does not change much; "
        "WAL/msg: bytes of PostgreSQL's write-ahead log written per message (server-wide); ckpt: checkpoints that "
        "began while the stream was processed (after one, each page's first change writes the whole page); "
        "load: the machine's 1-minute load average as the timed stream began"
    )


def print_spread(runs: list[Run]) -> None:
    """Per stream, backend and worker count: the median run and the range (the machine's load moves them)."""
    print("\nspread over the repeated runs (events/s):")
    groups: dict[tuple[str, str, int], list[float]] = {}
    for run in runs:
        groups.setdefault((run.stream, run.backend, run.workers), []).append(run.per_second)
    for (stream, backend, workers), rates in groups.items():
        print(
            f"  {stream:<5} {backend:<10} {workers} worker(s): median {statistics.median(rates):,.0f}, "
            f"{min(rates):,.0f} to {max(rates):,.0f} over {len(rates)} runs"
        )


def print_checks(runs: list[Run], wanted: dict[str, dict[str, int]]) -> None:
    print(
        "\ncompleteness: the journal's statuses (preload included); users and accounts in the database and "
        "events stored by the timed stream, against what a complete run leaves"
    )
    for run in runs:
        statuses = ", ".join(f"{status} {count:,}" for status, count in sorted(run.statuses.items()))
        failed = sum(count for status, count in run.statuses.items() if status != "processed")
        created = ", ".join(
            f"{name} {run.counts[name]:,}/{wanted[run.stream][name]:,}" for name in ("users", "accounts", "events")
        )
        verdict = (
            "complete"
            if failed == 0 and all(run.counts[n] == v for n, v in wanted[run.stream].items())
            else "INCOMPLETE"
        )
        print(
            f"  {run.stream:<5} {run.backend:<10} {run.workers} worker(s): {verdict}; journal: {statuses} "
            f"(failed or parked: {failed:,}); {created}; outbox rows queued {run.counts['outbox']:,}; "
            f"worker warnings and errors {run.worker_problems}"
        )


def listed(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def numbers(text: str) -> list[int]:
    return [int(item) for item in listed(text)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=5_000, help="new profiles of the cold stream (7 messages each)")
    parser.add_argument("--warm-messages", type=int, default=50_000, help="messages of the warm stream")
    parser.add_argument("--workers", type=numbers, default=[1, 2, 4], help="worker processes, PostgreSQL")
    parser.add_argument("--backends", type=listed, default=["postgresql", "sqlite"])
    parser.add_argument("--stream", type=listed, default=["cold", "warm"])
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each stream and worker count, each on a fresh database"
    )
    parser.add_argument(
        "--segments", action=argparse.BooleanOptionalAction, default=True, help="the two segments (--no-segments: none)"
    )
    args = parser.parse_args()
    if not set(args.backends) <= set(DATABASES) or not set(args.stream) <= {"cold", "warm"}:
        parser.error("--backends takes postgresql,sqlite and --stream takes cold,warm")

    now = datetime.now(UTC).replace(microsecond=0)
    cold = cold_stream(args.profiles)
    warm = warm_stream(args.profiles, args.warm_messages)
    # The warm stream comes after its profiles' history; both end before they are received.
    cold_rows = journal_rows(cold, now - timedelta(seconds=len(cold) + len(warm) + 60), now)
    streams = {
        "cold": (cold_rows, []),
        "warm": (journal_rows(warm, now - timedelta(seconds=len(warm)), now), cold_rows),
    }
    wanted = {"cold": expected("cold", args.profiles, warm), "warm": expected("warm", args.profiles, warm)}
    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; cold: {args.profiles:,} profiles "
        f"({len(cold):,} messages); warm: {len(warm):,} messages on {args.profiles:,} existing profiles; "
        f"{'two segments' if args.segments else 'no segments'}"
    )

    runs = []
    for backend in args.backends:
        # SQLite runs one worker: the embedded default, a single writer.
        for workers in args.workers if backend == "postgresql" else [1]:
            for stream in args.stream:
                rows, preload = streams[stream]
                for _ in range(args.repeat):
                    runs.append(run(backend, stream, workers, rows, preload, args.segments))
                    last = runs[-1]
                    print(f"  {stream} on {backend}, {workers} worker(s): {last.per_second:,.0f} events/s", flush=True)
    print_table(runs)
    if args.repeat > 1:
        print_spread(runs)
    print_checks(runs, wanted)


if __name__ == "__main__":
    main()
