"""The outbox: what must be sent, coalesced per user and per account, one row per event.

Rows only say *what* changed; the sender builds the message from current data when
it sends, so ten changes to one user become one identify. A change to a row that is
already waiting bumps its `version`, and the sender deletes a row only if its version
is unchanged since it was claimed: no change is lost to a race.

This module owns the outbox's SQL: enqueueing, claiming with a lease (`claimed_until`,
through FOR UPDATE SKIP LOCKED on PostgreSQL, so several workers never send the same
row), releasing, finishing and retrying later. Backoff state (attempts, available_at,
failing_since, last_error) lives in the row, so it survives restarts.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.db import any_of, insert, insert_rows, is_postgres, recordset
from connector.core.kinds import OutboxKind
from connector.core.metrics import OUTBOX_DEPTH
from connector.core.models import OutboxItem, UTCDateTime, utcnow

outbox = OutboxItem.__table__
LEASE_SECONDS = 120.0
DISCARD_CHUNK = 1000


def outbox_key(kind: OutboxKind, entity_id: int | str) -> str:
    return f"{kind}:{entity_id}"


async def enqueue(conn: AsyncConnection, kind: OutboxKind, ids: Iterable[int | str]) -> None:
    now = utcnow()
    rows = [
        {"key": outbox_key(kind, entity_id), "version": 1, "attempts": 0, "available_at": now, "created_at": now}
        for entity_id in sorted(set(ids))
    ]
    await insert_rows(conn, outbox, rows, adapt=_coalescing)


async def enqueue_select(conn: AsyncConnection, kind: OutboxKind, ids: Any) -> None:
    """enqueue for the ids a SELECT returns, without fetching them (same keys, same coalescing)."""
    selected = ids.subquery()
    now = utcnow()
    # The SELECT needs a WHERE: SQLite cannot parse INSERT ... SELECT ... ON CONFLICT without one.
    rows = (
        sa.select(
            sa.literal(outbox_key(kind, "")).concat(sa.cast(selected.c[0], sa.String)),
            sa.literal(1),
            sa.literal(0),
            sa.literal(now, UTCDateTime()),
            sa.literal(now, UTCDateTime()),
        )
        .select_from(selected)
        .where(sa.true())
    )
    statement = insert(outbox, conn.dialect.name).from_select(
        ["key", "version", "attempts", "available_at", "created_at"], rows
    )
    await conn.execute(_coalescing(statement))


def _coalescing(statement: Any) -> Any:
    """A change to a row already waiting bumps its version instead of adding a row."""
    return statement.on_conflict_do_update(index_elements=["key"], set_={"version": outbox.c.version + 1})


async def claim(conn: AsyncConnection, limit: int, lease: float = LEASE_SECONDS) -> list[Any]:
    """Lease up to `limit` rows that are due and not leased, oldest first; returned in id order. `conn` has no
    transaction open: the claim is committed when this returns."""
    now = utcnow()
    candidates = (
        sa.select(outbox.c.id)
        .where(outbox.c.available_at <= now, sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now))
        .order_by(outbox.c.available_at, outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    # Materialized: run once. As a plain IN (subquery), PostgreSQL may plan a join that runs the subquery again
    # for each row (it did after a resync filled an outbox whose statistics said empty): each run skips the rows
    # the previous ones locked, so one claim took far more than `limit` rows, in minutes.
    chosen = candidates.cte("candidates")
    if conn.dialect.name == "postgresql":
        chosen = chosen.prefix_with("MATERIALIZED")
    statement = (
        outbox.update()
        .where(outbox.c.id.in_(sa.select(chosen.c.id)))
        .values(claimed_until=now + timedelta(seconds=lease))
        .returning(
            outbox.c.id,
            outbox.c.key,
            outbox.c.version,
            outbox.c.attempts,
            outbox.c.failing_since,
            outbox.c.claimed_until,
        )
    )
    async with conn.begin():
        rows = (await conn.execute(statement)).all()
    return sorted(rows, key=lambda row: row.id)


async def release(engine: AsyncEngine, rows: list[Any]) -> None:
    """Give back claims not acknowledged, unless their lease ran out and another sender holds them."""
    async with engine.begin() as conn:
        await conn.execute(
            outbox.update()
            .where(
                outbox.c.id == sa.bindparam("row_id"),
                outbox.c.claimed_until == sa.bindparam("row_claimed_until", type_=outbox.c.claimed_until.type),
            )
            .values(claimed_until=None),
            [{"row_id": row.id, "row_claimed_until": row.claimed_until} for row in rows],
        )


async def finish(conn: AsyncConnection, rows: list[Any], now: datetime) -> None:
    """Delete claimed rows that were answered for. Only the version built from: a change that arrived meanwhile
    keeps its row, released and reset, for the next round."""
    if not rows:
        return
    if is_postgres(conn):  # one statement whatever the count: the (id, version) pairs as one parameter
        built = recordset(
            [{"id": row.id, "version": row.version} for row in rows],
            {"id": outbox.c.id.type, "version": outbox.c.version.type},
        )
        deleted = await conn.scalars(
            outbox.delete().where(outbox.c.id == built.c.id, outbox.c.version == built.c.version).returning(outbox.c.id)
        )
        # Usually every row went: the second statement only when a change arrived meanwhile.
        changed = sorted({row.id for row in rows} - set(deleted))
    else:
        await conn.execute(
            outbox.delete().where(
                outbox.c.id == sa.bindparam("row_id"), outbox.c.version == sa.bindparam("row_version")
            ),
            [{"row_id": row.id, "row_version": row.version} for row in rows],
        )
        changed = [row.id for row in rows]  # those deleted are not found
    if changed:
        await conn.execute(
            outbox.update()
            .where(any_of(conn, outbox.c.id, changed))
            .values(claimed_until=None, attempts=0, last_error=None, available_at=now, failing_since=None)
        )


@dataclass(frozen=True)
class Retry:
    """A claimed row to try again later, and the backoff state it keeps meanwhile."""

    row_id: int
    attempts: int
    error: str
    available_at: datetime
    failing_since: datetime


async def retry_later(conn: AsyncConnection, retries: list[Retry]) -> None:
    """Release claimed rows until their `available_at`, with their backoff state."""
    if not retries:
        return
    await conn.execute(
        outbox.update()
        .where(outbox.c.id == sa.bindparam("row_id"))
        .values(
            attempts=sa.bindparam("row_attempts"),
            claimed_until=None,
            last_error=sa.bindparam("row_error"),
            available_at=sa.bindparam("row_available_at", type_=outbox.c.available_at.type),
            failing_since=sa.bindparam("row_failing_since", type_=outbox.c.failing_since.type),
        ),
        [
            {
                "row_id": retry.row_id,
                "row_attempts": retry.attempts,
                "row_error": retry.error,
                "row_available_at": retry.available_at,
                "row_failing_since": retry.failing_since,
            }
            for retry in retries
        ],
    )


async def depth(engine: AsyncEngine) -> int:
    """The rows waiting, also exported as the outbox depth gauge."""
    async with engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()
    OUTBOX_DEPTH.set(count)
    return count


def member_key(segment_id: int, entity_id: int) -> str:
    """The id part of a `member:` row's key: one membership, `<segment id>-<entity id>`."""
    return f"{segment_id}-{entity_id}"


async def discard(conn: AsyncConnection, keys: list[str]) -> int:
    """Rows that must never be sent (an erased person's) go, whatever their version; returns how many."""
    count = 0
    for start in range(0, len(keys), DISCARD_CHUNK):
        chunk = keys[start : start + DISCARD_CHUNK]
        count += (await conn.execute(outbox.delete().where(outbox.c.key.in_(chunk)))).rowcount
    return count
