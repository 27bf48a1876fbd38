"""The inbound journal as the workers consume it: partitions, leases, and each row's outcome.

A row is `pending` while its `journal_queue` row exists: the database inserts one with every journal row
(migration 0008), and the transaction that applies or parks the message deletes it. A `failed` row keeps
the reason it was parked in `error`; a `skipped` row was taken out of the queue unapplied, with the reason in
`skipped` (a kind of call the settings turn off); any other row is `processed` (`STATUS`).

Each row carries a partition derived from its message's identity (the anonymousId when present,
else the userId), so every message of one visitor or one known user shares a partition. A batch
applies rows only from partitions it has leased, in journal order. On PostgreSQL a lease is a
transaction-scoped advisory lock: it ends with the batch's transaction, at commit, at rollback,
and when the worker dies (the server ends a dead client's session), so another worker takes the
partition over at once and a batch is applied entirely or not at all. A batch leases at most
LEASE_SHARE partitions, chosen at random among those with pending rows, so up to
PARTITIONS / LEASE_SHARE workers apply at once and no partition waits behind the others for long.

Work that must see no batch in flight (erasing a person, rebuilding usage) takes the journal's
lock exclusively (`hold_all`); every batch holds it shared, so that work waits for the batches in
flight and new batches wait for it.

SQLite has a single writer and runs one worker: there a batch reads every partition.
"""

import zlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.db import any_of, is_postgres
from connector.core.models import JournalEntry, JournalQueueEntry
from connector.core.spec import clean_id

PARTITIONS = 64
LEASE_SHARE = 16
JOURNAL_LOCK = 0x5E6E_0001  # bigint key: batches hold it shared, hold_all exclusively
PARTITION_LOCK_CLASS = 0x5E6E_0002  # (class, partition) keys: a separate key space from the bigint one
PENDING, PROCESSED, FAILED, SKIPPED = "pending", "processed", "failed", "skipped"
SETTLE_SLICE = 30_000

journal = JournalEntry.__table__
BLANK_CHUNK = 1000
queue = JournalQueueEntry.__table__

# A row's status, `pending`, `processed` or `failed`, over JOURNAL_WITH_QUEUE: the journal outer-joined to
# the queue by id, so the status of many rows is read in one pass rather than a lookup per row.
JOURNAL_WITH_QUEUE = journal.outerjoin(queue, queue.c.id == journal.c.id)
STATUS = sa.case(
    (queue.c.id.is_not(None), PENDING),
    (journal.c.error.is_not(None), FAILED),
    (journal.c.skipped.is_not(None), SKIPPED),
    else_=PROCESSED,
)

# The candidates are materialised first: were the lock attempt a filter of the partition scan (the planner
# pushes it down into a subquery), every partition with work would be locked by one batch, and the
# others, in this worker or another, would find nothing to do. Outside the CTE, rows are pulled one by one
# through the filter, so only the partitions returned are locked. One index probe per partition finds the
# candidates, however long the backlog.
_LEASE = sa.text(
    """
    WITH candidates AS MATERIALIZED (
        SELECT p FROM generate_series(0, :last) AS p
        WHERE (SELECT true FROM journal_queue q WHERE q.partition = p LIMIT 1)
        ORDER BY random()
    )
    SELECT p FROM candidates WHERE pg_try_advisory_xact_lock(:lock_class, p) LIMIT :share
    """
)

# What processing reads of a message's context: `traits` (identity.py, privacy.py) and `personas` (audiences.py).
# On PostgreSQL a batch reads its messages with only these in their context: the rest (library, page, ip,
# userAgent...) is a third of a message and is stored only with its event, whose INSERT takes it from the
# journal row (processing/apply.py), so the worker neither decodes nor encodes it again.
PROCESSED_CONTEXT = ("traits", "personas")
_CONTEXT_KEPT = ", ".join(f"'{key}', inbound_journal.payload #> '{{context,{key}}}'" for key in PROCESSED_CONTEXT)
_PROCESSOR_PAYLOAD = sa.literal_column(
    "CASE WHEN inbound_journal.payload ? 'context' "
    f"THEN jsonb_set(inbound_journal.payload, '{{context}}', jsonb_build_object({_CONTEXT_KEPT})) "
    "ELSE inbound_journal.payload END",
    JSONB,
).label("payload")


def partition_of(message: dict[str, Any]) -> int:
    identity = clean_id(message.get("anonymousId")) or clean_id(message.get("userId")) or ""
    return zlib.crc32(identity.encode()) % PARTITIONS


async def lease(conn: AsyncConnection, limit: int) -> Sequence[Any]:
    """Up to `limit` pending rows (id, payload, source, partition) in journal order, from partitions this
    transaction now leases; empty when there is nothing to do or every partition with work is leased."""
    if not is_postgres(conn):
        return (await conn.execute(_pending_rows(conn).order_by(queue.c.id).limit(limit))).all()
    await _share_journal(conn)
    held = (
        await conn.scalars(_LEASE, {"last": PARTITIONS - 1, "lock_class": PARTITION_LOCK_CLASS, "share": LEASE_SHARE})
    ).all()
    if not held:
        return []
    # The ids first, from the narrow queue alone: each leased partition's first ones by its index, merged in
    # id order. Joined to the journal in the same statement, PostgreSQL read and sorted every pending message
    # of the leased partitions (building each one's processor payload) to keep the first `limit`.
    per_partition = sa.union_all(
        *(
            sa.select(queue.c.id).where(queue.c.partition == held_partition).order_by(queue.c.id).limit(limit)
            for held_partition in held
        )
    ).subquery()
    ids = (await conn.scalars(sa.select(per_partition.c.id).order_by(per_partition.c.id).limit(limit))).all()
    rows = _rows(conn).where(any_of(conn, journal.c.id, ids)).order_by(journal.c.id)
    return (await conn.execute(rows)).all()


async def lease_row(conn: AsyncConnection, journal_id: int) -> Sequence[Any]:
    """The row (id, payload, source, partition) if still pending, once this transaction leases its partition
    (waiting for the batch that holds it)."""
    if is_postgres(conn):
        await _share_journal(conn)
        partition = await conn.scalar(sa.select(journal.c.partition).where(journal.c.id == journal_id))
        if partition is None:
            return []
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PARTITION_LOCK_CLASS, partition)))
    return (await conn.execute(_pending_rows(conn).where(queue.c.id == journal_id))).all()


def _rows(conn: AsyncConnection) -> Any:
    """The journal's rows as a batch reads them: (id, payload, source, partition)."""
    payload = _PROCESSOR_PAYLOAD if is_postgres(conn) else journal.c.payload
    return sa.select(journal.c.id, payload, journal.c.source, journal.c.partition)


def _pending_rows(conn: AsyncConnection) -> Any:
    return _rows(conn).join_from(queue, journal, journal.c.id == queue.c.id)


async def _share_journal(conn: AsyncConnection) -> None:
    """Every batch holds the journal's lock shared: hold_all waits for them all."""
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock_shared(JOURNAL_LOCK)))


async def hold_all(conn: AsyncConnection) -> None:
    """Wait until no batch is in flight, and keep new ones out until this transaction ends."""
    if is_postgres(conn):
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(JOURNAL_LOCK)))


async def settle(conn: AsyncConnection, ids: list[int]) -> None:
    """These rows are processed once this transaction commits."""
    # In slices: SQLite takes at most 32,766 parameters a statement (an erasure may settle more rows).
    for start in range(0, len(ids), SETTLE_SLICE):
        await conn.execute(queue.delete().where(any_of(conn, queue.c.id, ids[start : start + SETTLE_SLICE])))


async def park(conn: AsyncConnection, journal_id: int, error: str) -> None:
    """The row failed for a reason not transient (a bug): out of the queue, with its reason."""
    await settle(conn, [journal_id])
    await conn.execute(journal.update().where(journal.c.id == journal_id).values(error=error))


async def mark_skipped(conn: AsyncConnection, ids: list[int], reason: str) -> None:
    """These rows, settled in this transaction, were not applied, for `reason` (they count as skipped)."""
    for start in range(0, len(ids), SETTLE_SLICE):
        chosen = any_of(conn, journal.c.id, ids[start : start + SETTLE_SLICE])
        await conn.execute(journal.update().where(chosen).values(skipped=reason))


async def has_pending(engine: AsyncEngine) -> bool:
    """Whether any message waits to be applied (one index probe, however long the queue)."""
    async with engine.connect() as conn:
        return bool(await conn.scalar(sa.select(sa.exists(sa.select(queue.c.id)))))


async def pending_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(queue))).scalar_one())


async def retry_failed(engine: AsyncEngine) -> int:
    """Put failed journal messages back in the queue (after a fix); returns how many."""
    async with engine.begin() as conn:
        failed = journal.c.error.is_not(None)
        await conn.execute(
            queue.insert().from_select(["id", "partition"], sa.select(journal.c.id, journal.c.partition).where(failed))
        )
        result = await conn.execute(journal.update().where(failed).values(error=None))
    return int(result.rowcount)


async def blank(conn: AsyncConnection, ids: list[int]) -> None:
    """Blank these messages' payloads (suppressed ones: nothing of the person is kept); the caller settles them."""
    for start in range(0, len(ids), BLANK_CHUNK):
        await conn.execute(
            journal.update().where(journal.c.id.in_(ids[start : start + BLANK_CHUNK])).values(payload={})
        )


async def blank_naming(conn: AsyncConnection, ids: list[str], emails: list[str]) -> list[str]:
    """Blank every message (pending ones too: they are never applied) whose userId, anonymousId or previousId is
    one of `ids`, or whose traits or context.traits email (lower-cased) is one of `emails`, and settle them.
    Returns their messageIds."""
    payload = journal.c.payload
    text = [payload["userId"].as_string(), payload["anonymousId"].as_string(), payload["previousId"].as_string()]
    mail = [
        sa.func.lower(payload["traits"]["email"].as_string()),
        sa.func.lower(payload["context"]["traits"]["email"].as_string()),
    ]
    conditions = [column.in_(ids) for column in text if ids] + [column.in_(emails) for column in mail if emails]
    if not conditions:
        return []
    blanked = (
        await conn.execute(
            journal.update()
            .where(sa.or_(*conditions))
            .values(payload={}, error=None)
            .returning(journal.c.id, journal.c.message_id)
        )
    ).all()
    await settle(conn, [row.id for row in blanked])
    return [row.message_id for row in blanked]
