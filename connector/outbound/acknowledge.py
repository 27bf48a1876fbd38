"""What one send round did, recorded in one transaction once Segment answered: what Segment now holds
(delivery_state), the dead letters, what becomes of each claimed outbox row, and the round's activity log
entries. And Segment's last answer to the write key, which the status page shows."""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.db import any_of, insert
from connector.core.kinds import Entity
from connector.core.models import SegmentApiAnswer, User, utcnow
from connector.flow import activity, outbox
from connector.outbound import dead_letters, delivery_state
from connector.outbound.build import Built
from connector.outbound.guard import write_key_hash
from connector.outbound.messages import Outgoing
from connector.outbound.transport import Failure, backoff_seconds

users = User.__table__
segment_api_answers = SegmentApiAnswer.__table__


@dataclass
class Acknowledgement:
    """What became of one round's claimed rows and built messages."""

    built: Built = field(default_factory=Built)
    done: list[Any] = field(default_factory=list)  # the claimed rows answered for
    retries: dict[int, tuple[Any, Failure]] = field(default_factory=dict)  # claimed row id -> (row, its failure)
    delivered: list[Outgoing] = field(default_factory=list)
    dead: list[tuple[Outgoing, Failure]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)  # the round's activity entries
    answers: list[Failure | None] = field(default_factory=list)  # Segment's answer to each batch sent (None: 200)


async def acknowledge(engine: AsyncEngine, round_: Acknowledgement, write_key: str = "") -> None:
    """Record one round in one transaction: delivered hashes, the segment event states the build decided
    (baselines and exits, whatever was sent), dead letters, what happens to each row, the round's
    activity log entries, and Segment's last answer to `write_key` (record_answer: last, so that the one
    row every round writes is locked for the shortest time).

    Keys are written in sorted order so that concurrent senders never deadlock on PostgreSQL.
    A profile erased while its messages were on the wire leaves nothing here: its rows are read
    with a share lock (the erasure's first statement locks them too), and what concerns a profile
    that is gone is not written, so no dead letter brings the person's data back.
    """
    now = utcnow()
    async with engine.begin() as conn:
        erased = await _erased_profiles(conn, round_)
        kept = _without(round_, erased)
        await _record_states(conn, kept, erased, now)
        letters = [
            dead_letters.Letter(outgoing.message, failure.reason, failure.status) for outgoing, failure in kept.dead
        ]
        await dead_letters.add(conn, letters, now)
        await outbox.finish(conn, round_.done, now)
        await outbox.retry_later(conn, [_retry(row, failure, now) for row, failure in round_.retries.values()])
        await activity.append(conn, kept.entries, now)
        if round_.answers and write_key:
            await record_answer(conn, write_key, round_.answers, now)


async def _erased_profiles(conn: AsyncConnection, round_: Acknowledgement) -> set[int]:
    """The profiles the round's messages and segment-event records are about that no longer exist (erased since
    they were built)."""
    messages = [*round_.delivered, *(outgoing for outgoing, _ in round_.dead)]
    about = {outgoing.user_id for outgoing in messages if outgoing.user_id is not None}
    about |= set(round_.built.event_records.users.values())
    if not about:
        return set()
    present = await conn.execute(
        sa.select(users.c.id)
        .where(any_of(conn, users.c.id, sorted(about)))
        .order_by(users.c.id)
        .with_for_update(read=True)
    )
    return about - set(present.scalars())


def _without(round_: Acknowledgement, erased: set[int]) -> Acknowledgement:
    """The round without what concerns these profiles."""
    if not erased:
        return round_
    return replace(
        round_,
        delivered=[outgoing for outgoing in round_.delivered if outgoing.user_id not in erased],
        dead=[(outgoing, failure) for outgoing, failure in round_.dead if outgoing.user_id not in erased],
        entries=[
            entry for entry in round_.entries if not (entry["entity"] == Entity.USER and entry["entity_id"] in erased)
        ],
    )


async def _record_states(conn: AsyncConnection, round_: Acknowledgement, erased: set[int], now: datetime) -> None:
    """What Segment now holds: the identify and group payloads delivered, and the segment-event records decided."""
    records = round_.built.event_records
    decided = {key: digest for key, digest in records.digests.items() if records.users[key] not in erased}
    states = records.rows(decided)
    states.update(
        {
            outgoing.state_key: {
                "payload_hash": outgoing.payload_hash,
                "segments": outgoing.segments,
                "in_filter": outgoing.in_filter,
                "account_id": outgoing.account_id,
            }
            for outgoing in round_.delivered
            if outgoing.state_key
        }
    )
    forgotten = [key for key, digest in decided.items() if digest is None]
    await delivery_state.record(conn, states, forgotten, now)


def _retry(row: Any, failure: Failure, now: datetime) -> outbox.Retry:
    return outbox.Retry(
        row.id,
        row.attempts + 1,
        failure.reason,
        now + timedelta(seconds=backoff_seconds(row.attempts, failure.retry_after)),
        row.failing_since or now,
    )


async def record_answer(conn: AsyncConnection, write_key: str, answers: list[Failure | None], now: datetime) -> None:
    """Keep Segment's last answer for this write key (a failure wins over a success in the same round):
    the status warns when Segment rejects the key, and clears once it accepts it."""
    failure = next((answer for answer in answers if answer is not None), None)
    values = (
        {"status_code": 200, "reason": None}
        if failure is None
        else {"status_code": failure.status, "reason": failure.reason}
    )
    statement = insert(segment_api_answers, conn.dialect.name).values(
        write_key_hash=write_key_hash(write_key), answered_at=now, **values
    )
    await conn.execute(
        statement.on_conflict_do_update(index_elements=["write_key_hash"], set_={"answered_at": now, **values})
    )
