"""Several `connector worker` processes apply one journal on PostgreSQL as one worker would (issue 9).

- Three workers applying a stream give exactly the profiles (identifier sets, traits, account,
  events), accounts (group id, domain, traits), product usage and segment memberships that one
  worker gives. The stream is built from a seed and mixes what crosses identity partitions:
  an anonymous visit and a userId's track merged later by an identify, aliases from an
  anonymousId and renames from one userId to another, users of shared accounts moved between
  them, two accounts claiming one domain, identifies and group calls older than what is stored,
  feature usage, and exact duplicates. Profiles are compared by their identifiers, never by row ids.
- A worker killed with SIGKILL mid-journal loses what it held: the other worker finishes the
  journal, nothing is `failed` and nothing is applied twice (one event, one activity entry per
  message, usage counts equal to what the messages say).
- Its connections cut (pg_terminate_backend) again and again while it works, a worker retries:
  everything ends processed, nothing `failed`, nothing applied twice.

The workers are real processes started as Heroku starts them; the test connects only to read
the tables, to append to the journal (as the inbound does) and to cut the workers' connections.
"""

import asyncio
import itertools
import os
import random
import time
from collections import Counter, defaultdict
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.core import spec
from connector.core.models import (
    Account,
    ActivityEntry,
    Event,
    FeatureUsage,
    JournalEntry,
    Segment,
    SegmentMembership,
    User,
    UserIdentifier,
    utcnow,
)
from connector.inbound.writer import journal_row
from tests.support.app import admin_auth, basic_auth, wait_until
from tests.support.database import append_to_journal, empty_tables, journal_status_counts, journal_statuses
from tests.support.processes import Process, process_env

pytestmark = pytest.mark.postgres_only

journal = JournalEntry.__table__
users = User.__table__
identifiers = UserIdentifier.__table__
accounts = Account.__table__
events = Event.__table__
feature_usage = FeatureUsage.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
activity = ActivityEntry.__table__

BASE = datetime(2024, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=7)  # a few thousand messages span weeks: usage falls on many days
FEATURES = ["search", "export", "reports", "alerts"]
FLAGS = ["positive", "negative", "neutral", None]
SHARED_ACCOUNTS = 30
STALE_PLAN = "stale"  # only identifies older than every other message carry it: it must never win
SEGMENTS = [
    {"name": "Pro", "rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}},
    {"name": "Searchers", "rule": {"event": "Feature Used", "count": {"gte": 2}}},
    {"name": "Big accounts", "entity": "account", "rule": {"attribute": "traits.employees", "op": "gte", "value": 500}},
]


# --- the stream ------------------------------------------------------------


def stream(seed: int, people: int = 300) -> list[dict[str, Any]]:
    """Messages of `people` people, the same for the same seed. Each message has its own time
    (no ties anywhere); those meant to arrive late are older than every other message."""
    rng = random.Random(seed)
    ticks = itertools.count(1)

    def now() -> str:
        return spec.format_timestamp(BASE + next(ticks) * STEP)

    def long_ago() -> str:
        return spec.format_timestamp(BASE - next(ticks) * STEP)

    def message(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "messageId": f"{kind}-{next(ticks)}-{rng.randrange(10**9)}", **fields}

    def feature_use(**ids: Any) -> dict[str, Any]:
        properties = {"feature": rng.choice(FEATURES)}
        if (flag := rng.choice(FLAGS)) is not None:
            properties["eventFlag"] = flag
        return message("track", event="Feature Used", properties=properties, timestamp=now(), **ids)

    def group(user: str, group_id: str, timestamp: str, **traits: Any) -> dict[str, Any]:
        return message("group", userId=user, groupId=group_id, traits=traits, timestamp=timestamp)

    def shared_account() -> tuple[str, dict[str, Any]]:
        number = rng.randrange(SHARED_ACCOUNTS)
        return f"g-{number}", {"name": f"Company {number}", "employees": rng.choice([10, 200, 800, 5000])}

    phases: list[list[list[dict[str, Any]]]] = [[] for _ in range(4)]
    for person in range(people):
        user, anonymous, device = f"user-{person}", f"anon-{person}", f"device-{person}"
        # 1: an anonymous visit and a signed-in track are two profiles in two partitions; an account.
        group_id, account_traits = shared_account()
        first = [
            message("page", anonymousId=anonymous, name="Home", timestamp=now()),
            message("track", anonymousId=anonymous, event="Viewed Pricing", timestamp=now()),
            message("track", userId=user, event="Signed In", timestamp=now()),
            group(user, group_id, now(), **account_traits),
        ]
        if rng.random() < 0.4:
            first.append(message("page", anonymousId=device, name="Docs", timestamp=now()))
        # 2: the identify merges them; an alias from the second device's anonymousId; product usage.
        plan = rng.choice(["free", "pro", "team"])
        traits = {"plan": plan, "seats": rng.randrange(1, 50), "email": f"{user}@example.com"}
        second = [message("identify", userId=user, anonymousId=anonymous, traits=traits, timestamp=now())]
        if rng.random() < 0.4:
            second.append(message("alias", previousId=device, userId=user, timestamp=now()))
        second += [feature_use(userId=user, anonymousId=anonymous) for _ in range(rng.randrange(1, 4))]
        # 3: moves between accounts, late (older) identifies and group calls, two accounts claiming one domain.
        third = []
        if rng.random() < 0.3:
            group_id, account_traits = shared_account()
            third.append(group(user, group_id, now(), **account_traits))
        if rng.random() < 0.2:
            third.append(group(user, f"g-{SHARED_ACCOUNTS + person}", long_ago(), name="Never linked"))
        if rng.random() < 0.3:
            stale = {"plan": STALE_PLAN, "seats": 0, "company": "Older Inc"}
            third.append(message("identify", userId=user, anonymousId=anonymous, traits=stale, timestamp=long_ago()))
        if rng.random() < 0.1:
            # Both claims come from one person, so from one partition: which account holds the domain is
            # decided by journal order, the same with any number of workers.
            domain = f"company-{person}.com"
            third.append(group(user, f"g-holder-{person}", now(), name="Holder", domain=domain))
            third.append(group(user, f"g-claimer-{person}", now(), name="Claimer", domain=domain))
        # 4: a rename (alias from the user's userId to a new one), then messages under the new userId.
        fourth = []
        if rng.random() < 0.2:
            renamed = f"{user}-renamed"
            fourth.append(message("alias", previousId=user, userId=renamed, timestamp=now()))
            fourth.append(feature_use(userId=renamed))
            fourth.append(message("identify", userId=renamed, traits={"renamed": True}, timestamp=now()))
        for phase, messages in zip(phases, [first, second, third, fourth], strict=True):
            phase.append(messages)

    ordered: list[dict[str, Any]] = []
    for phase in phases:
        ordered += interleave(rng, phase)
    duplicates = [dict(original) for original in rng.sample(ordered, k=len(ordered) // 20)]
    return ordered + duplicates


def interleave(rng: random.Random, sequences: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The sequences merged in a random order that keeps each one's own order."""
    queues = [list(reversed(sequence)) for sequence in sequences if sequence]
    merged = []
    while queues:
        queue = rng.choice(queues)
        merged.append(queue.pop())
        if not queue:
            queues.remove(queue)
    return merged


# --- processes ----------------------------------------------------------------


def start_workers(database_url: str, count: int, logs: Path, name: str, **overrides: str) -> list[Process]:
    environment = process_env(database_url, **{"LOG_LEVEL": "WARNING", **overrides})
    return [Process(["worker"], environment, logs / f"{name}-{n}.log") for n in range(count)]


async def status_counts(runtime: Any) -> Counter[str]:
    return Counter(await journal_status_counts(runtime.engine))


async def failed_rows(runtime: Any) -> list[tuple[str, str]]:
    return [(row.message_id, row.error) for row in await journal_statuses(runtime.engine) if row.status == "failed"]


async def run_until_drained(runtime: Any, workers: list[Process], seconds: float = 300) -> None:
    """Wait until no journal row is pending, then stop the workers; any that died is a failure."""
    try:

        async def drained() -> bool:
            for worker in workers:
                assert worker.popen.poll() is None, worker.output()[-3000:]
            return (await status_counts(runtime))["pending"] == 0

        await wait_until(drained, timeout=seconds, interval=0.25)
    finally:
        for worker in workers:
            worker.terminate()


async def append(runtime: Any, messages: list[dict[str, Any]]) -> None:
    """Journal the messages as the inbound does (duplicates of a stored messageId are dropped)."""
    received = utcnow()
    rows = [journal_row(spec.normalise_message(message, received), received, "api") for message in messages]
    for start in range(0, len(rows), 2000):
        await append_to_journal(runtime.engine, rows[start : start + 2000])


# --- what the tables hold, independent of row ids ---------------------------------


async def canonical(runtime: Any) -> dict[str, Any]:
    async with runtime.engine.connect() as conn:
        claims: dict[int, set[tuple[str, str]]] = defaultdict(set)
        for row in await conn.execute(sa.select(identifiers.c.user_id, identifiers.c.kind, identifiers.c.value)):
            claims[row.user_id].add((row.kind, row.value))
        ids = {user_id: frozenset(found) for user_id, found in claims.items()}
        account_keys = {
            row.id: (row.group_id, row.domain)
            for row in await conn.execute(sa.select(accounts.c.id, accounts.c.group_id, accounts.c.domain))
        }
        account_traits = {
            account_keys[row.id]: row.traits for row in await conn.execute(sa.select(accounts.c.id, accounts.c.traits))
        }
        stored_events: dict[int, set[str]] = defaultdict(set)
        for row in await conn.execute(sa.select(events.c.user_id, events.c.message_id)):
            stored_events[row.user_id].add(row.message_id)
        profiles = {}
        for row in await conn.execute(sa.select(users.c.id, users.c.traits, users.c.account_id)):
            assert ids.get(row.id), f"profile {row.id} holds no identifier"
            account = account_keys[row.account_id][0] if row.account_id is not None else None
            profiles[ids[row.id]] = (row.traits, account, frozenset(stored_events.get(row.id, ())))
        usage: dict[frozenset[tuple[str, str]], dict[tuple[str, str], tuple[int, int, int]]] = defaultdict(dict)
        for row in await conn.execute(sa.select(feature_usage).where(feature_usage.c.entity == "user")):
            usage[ids[row.entity_id]][(row.feature, row.day.isoformat())] = (row.count, row.positive, row.negative)
        members = set()
        for row in await conn.execute(
            sa.select(segments.c.name, segments.c.entity, memberships.c.entity_id).join(
                memberships, memberships.c.segment_id == segments.c.id
            )
        ):
            members.add((row.name, ids[row.entity_id] if row.entity == "user" else account_keys[row.entity_id]))
    return {"profiles": profiles, "accounts": account_traits, "usage": dict(usage), "memberships": members}


async def applied_by(runtime: Any, client: Any, messages: list[dict[str, Any]], workers: int, logs: Path) -> Any:
    """What `workers` worker processes make of the messages, from empty tables and the same settings and segments."""
    await empty_tables(runtime.engine, keep={"credentials"})
    await runtime.settings.save({"handle_accounts": True})
    for segment in SEGMENTS:
        answer = await client.post("/api/segments", headers=admin_auth(), json=segment)
        assert answer.status_code in (200, 201), answer.text
    for start in range(0, len(messages), 250):  # the real inbound: /v1/batch drops the duplicates
        answer = await client.post("/v1/batch", headers=basic_auth(), json={"batch": messages[start : start + 250]})
        assert answer.status_code == 200, answer.text
    await run_until_drained(runtime, start_workers(runtime.env.database_url, workers, logs, f"{workers}-workers"))
    assert await failed_rows(runtime) == []
    return await canonical(runtime)


def assert_what_the_stream_says(messages: list[dict[str, Any]], outcome: dict[str, Any]) -> None:
    """Every track and page stored once, no late identify or group call won, each domain with the account
    that claimed it first, aliased devices and renamed userIds on their person's profile."""
    profiles = outcome["profiles"]
    sent_events = {m["messageId"] for m in messages if m["type"] in ("track", "page")}
    assert set().union(*(stored for _, _, stored in profiles.values())) == sent_events
    assert STALE_PLAN not in {traits.get("plan") for traits, _, _ in profiles.values()}
    late_groups = {m["groupId"] for m in messages if m["type"] == "group" and m["traits"].get("name") == "Never linked"}
    assert late_groups and late_groups.isdisjoint(account for _, account, _ in profiles.values())
    claimed = {m["traits"]["domain"]: m["groupId"] for m in reversed(messages) if "domain" in m.get("traits", {})}
    assert claimed and all(outcome["accounts"].get((group_id, domain)) for domain, group_id in claimed.items())
    holder = {claim: ids for ids in profiles for claim in ids}

    def person(user: str) -> frozenset[tuple[str, str]]:
        return holder.get(("user_id", user)) or holder[("previous_user_id", user)]

    aliases = [(m["previousId"], m["userId"]) for m in messages if m["type"] == "alias"]
    for previous, user in aliases:
        if previous.startswith("device-"):
            assert holder[("anonymous_id", previous)] == person(user), previous
        else:  # a rename: the new userId, the old one kept to resolve, the anonymous visits merged before
            anonymous = previous.replace("user-", "anon-")
            assert {("user_id", user), ("previous_user_id", previous), ("anonymous_id", anonymous)} <= person(user)
    assert {previous.split("-")[0] for previous, _ in aliases} == {"device", "user"}
    assert outcome["memberships"]  # the segments have members: comparing them compares something


async def test_three_workers_give_exactly_what_one_worker_gives(client, runtime, tmp_path):
    messages = stream(seed=9)
    alone = await applied_by(runtime, client, messages, 1, tmp_path)
    together = await applied_by(runtime, client, messages, 3, tmp_path)

    assert_what_the_stream_says(messages, alone)
    for part in ("accounts", "profiles", "usage", "memberships"):
        assert together[part] == alone[part], f"{part} differ"


# --- crashes and lost connections ------------------------------------------------------


def feature_tracks(count: int, users_count: int, seed: int) -> list[dict[str, Any]]:
    """Tracks of existing-style traffic: userIds only (no merges), features on many days."""
    rng = random.Random(seed)
    tracks = []
    for n in range(count):
        properties = {"feature": rng.choice(FEATURES)}
        if (flag := rng.choice(FLAGS)) is not None:
            properties["eventFlag"] = flag
        at = BASE + timedelta(minutes=rng.randrange(60 * 24 * 20))
        tracks.append(
            {
                "type": "track",
                "userId": f"user-{rng.randrange(users_count)}",
                "event": "Feature Used",
                "properties": properties,
                "messageId": f"busy-{n}",
                "timestamp": spec.format_timestamp(at),
            }
        )
    return tracks


def expected_usage(tracks: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """(userId, feature, UTC day) -> (count, positive, negative), counted from the messages themselves."""
    sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for track in tracks:
        flag = track["properties"].get("eventFlag")
        key = (track["userId"], track["properties"]["feature"], track["timestamp"][:10])
        sums[key][0] += 1
        sums[key][1] += flag == "positive"
        sums[key][2] += flag == "negative"
    return {key: (value[0], value[1], value[2]) for key, value in sums.items()}


async def assert_applied_once(runtime: Any, tracks: list[dict[str, Any]]) -> None:
    assert await failed_rows(runtime) == []
    assert (await status_counts(runtime)) == Counter({"processed": len(tracks)})
    async with runtime.engine.connect() as conn:
        owners = dict(
            (
                await conn.execute(
                    sa.select(identifiers.c.user_id, identifiers.c.value).where(identifiers.c.kind == "user_id")
                )
            ).all()
        )
        profiles = await conn.scalar(sa.select(sa.func.count()).select_from(users))
        stored = Counter((await conn.execute(sa.select(events.c.message_id))).scalars())
        logged = Counter(
            (
                await conn.execute(
                    sa.select(activity.c.message_id).where(
                        activity.c.entity == "user", activity.c.action == "incoming.user.success"
                    )
                )
            ).scalars()
        )
        usage = {
            (owners[row.entity_id], row.feature, row.day.isoformat()): (row.count, row.positive, row.negative)
            for row in await conn.execute(sa.select(feature_usage).where(feature_usage.c.entity == "user"))
        }
    sent = {track["messageId"] for track in tracks}
    assert profiles == len(owners) == len({track["userId"] for track in tracks})  # one profile per userId
    assert stored == Counter(sent)
    assert logged == Counter(sent)  # one activity entry per message: no batch applied twice
    assert usage == expected_usage(tracks)


async def wait_for_progress(runtime: Any, workers: list[Process], at_least: int) -> None:
    async def progressed() -> bool:
        for worker in workers:
            assert worker.popen.poll() is None, worker.output()[-3000:]
        return (await status_counts(runtime))["processed"] >= at_least

    await wait_until(progressed, timeout=120, interval=0.05)


async def test_a_worker_killed_mid_journal_leaves_the_rest_to_another_with_nothing_lost_or_doubled(runtime, tmp_path):
    tracks = feature_tracks(20_000, users_count=2_000, seed=1)
    await append(runtime, tracks)
    # Batches of 500: killed after a tenth of the journal, the worker dies with batches still to come.
    doomed, survivor = start_workers(runtime.env.database_url, 2, tmp_path, "worker", JOURNAL_BATCH_SIZE="500")
    try:
        await wait_for_progress(runtime, [doomed, survivor], at_least=len(tracks) // 10)
        doomed.kill()  # SIGKILL: no chance to roll back or release anything itself
        assert (await status_counts(runtime))["pending"] > 0, "killed too late: the journal was already drained"
        await run_until_drained(runtime, [survivor])
    finally:
        doomed.kill()
        survivor.kill()
    await assert_applied_once(runtime, tracks)


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (its PostgreSQL connections among them), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def cut_connections(runtime: Any, pid: int) -> int:
    """Terminate the PostgreSQL backends serving process `pid` (found by client port); how many there were."""
    ports = sorted(local_ports(pid))
    if not ports:
        return 0
    async with runtime.engine.connect() as conn:
        cut = await conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND client_port = ANY(:ports)"
            ),
            {"ports": ports},
        )
        return len(cut.all())


async def test_a_worker_whose_connections_are_cut_retries_and_parks_nothing(runtime, tmp_path):
    tracks = feature_tracks(20_000, users_count=2_000, seed=2)
    await append(runtime, tracks)
    (worker,) = start_workers(runtime.env.database_url, 1, tmp_path, "worker")
    try:
        await wait_for_progress(runtime, [worker], at_least=1_000)
        cuts_while_busy, deadline = 0, time.monotonic() + 5
        while time.monotonic() < deadline and (await status_counts(runtime))["pending"] > 0:
            cuts_while_busy += await cut_connections(runtime, worker.popen.pid) > 0
            await asyncio.sleep(0.2)
        assert cuts_while_busy >= 3, "the worker's connections were not cut while it had work"
        await run_until_drained(runtime, [worker])
    finally:
        worker.kill()
    await assert_applied_once(runtime, tracks)


async def test_batches_side_by_side_lease_their_own_partitions_and_each_finds_work(runtime):
    """Four batches at once (two workers with two in flight each) get rows of disjoint partitions; a lease
    locks only the partitions it returns, so none of them finds the journal taken by the first."""
    from connector.flow import journal

    await append(runtime, feature_tracks(2_000, users_count=500, seed=3))
    async with AsyncExitStack() as stack:
        leased = []
        for _ in range(4):
            conn = await stack.enter_async_context(runtime.engine.connect())
            await stack.enter_async_context(conn.begin())
            leased.append({row.partition for row in await journal.lease(conn, 100)})
            held = await conn.scalar(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
            )
            assert held == len(leased[-1]) + 1, "a lease holds its partitions and the journal's shared lock only"
    assert all(leased), f"a batch found nothing to do: {leased}"
    assert sum(len(partitions) for partitions in leased) == len(set().union(*leased)), "two batches shared a partition"
