"""The sender: claim outbox rows, build, batch, send to Segment, then acknowledge.

Rows are claimed with a lease (`claimed_until`), through FOR UPDATE SKIP LOCKED on
PostgreSQL, so several workers never send the same row. A row is acknowledged only
after Segment answered: a crash in between resends the same messageIds, which
Segment deduplicates. A round cancelled before its acknowledgement (a worker told to
stop that could not finish in time) releases its claims, so another worker need not
wait out the lease; Segment deduplicates what it may have received meanwhile. Backoff
state (attempts, available_at, failing_since, last_error) lives in the row, so it
survives restarts; a row is retried for RETRY_FOR_SECONDS after its first failure,
then dead-lettered.

Sizes are measured on the bytes the transport sends: segment-analytics-python posts
`json.dumps(body)` (ASCII escapes for every non-ASCII character, a space after each
`,` and `:`), so a batch's size is exactly the sum of its messages' `json.dumps`
lengths, their separators and the envelope around them.

What a round did to each profile (sent, skipped and why, failed, dead-lettered) goes to
the activity log in the transaction that acknowledges the round.
"""

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any, TypeVar

import sqlalchemy as sa
from segment.analytics import request as segment_request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.db import insert
from connector.core.logs import get_logger
from connector.core.metrics import DEAD_LETTERED, DELIVERED, DELIVERY_LATENCY, RETRIED, SKIPPED_OUT
from connector.core.models import DeadLetter, DeliveryState, SegmentApiAnswer, User, utcnow
from connector.core.runtime import Runtime
from connector.core.settings import ConnectorSettings
from connector.core.spec import MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES
from connector.flow import activity, outbox
from connector.outbound import builders
from connector.outbound.guard import write_key_hash

dead_letters = DeadLetter.__table__
users = User.__table__
delivery_state = DeliveryState.__table__
segment_api_answers = SegmentApiAnswer.__table__
log = get_logger()

MAX_BATCH_BYTES = 475_000  # Segment refuses a body over 500 KB: keep a margin below it
BATCH_SEPARATOR_BYTES = len(", ")
REQUEST_TIMEOUT_SECONDS = 15.0
CONCURRENT_BATCHES = 4
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 600.0
RETRY_FOR_SECONDS = 4 * 3600
RETRYABLE_STATUSES = frozenset({408, 410, 429, 460})
NOT_RETRYABLE_SERVER_STATUSES = frozenset({501, 505})


@dataclass
class Failure:
    reason: str
    status: int | None = None
    retry: bool = False
    retry_after: float | None = None


@dataclass
class Round:
    """What one send_once did, by message."""

    claimed: int = 0
    delivered: int = 0
    skipped: int = 0
    retried: int = 0
    dead_lettered: int = 0


# --- the transport ----------------------------------------------------------


def classify(error: Exception) -> Failure:
    """Which failures are worth another try (Segment's own list), and how long Segment asks us to wait."""
    if isinstance(error, segment_request.APIError):
        status = int(error.status)
        retry = status in RETRYABLE_STATUSES or (500 <= status < 600 and status not in NOT_RETRYABLE_SERVER_STATUSES)
        retry_after = segment_request.parse_retry_after(error.response) if error.response is not None else None
        return Failure(f"HTTP {status}: {error.message}"[:1000], status, retry, retry_after)
    # Timeouts, refused connections and anything unforeseen: retried, since dropping would lose data.
    return Failure(f"{type(error).__name__}: {error}"[:1000], None, True)


async def post_batch(
    settings: ConnectorSettings, batch: list[dict[str, Any]], request_timeout: float = REQUEST_TIMEOUT_SECONDS
) -> Failure | None:
    """One POST /v1/batch with segment-analytics-python's transport; None when Segment accepted it."""
    started = perf_counter()
    try:
        await asyncio.to_thread(
            segment_request.post,
            settings.write_key,
            host=settings.segment_api_host,
            batch=batch,
            sentAt=utcnow().isoformat(),
            timeout=request_timeout,
        )
    except Exception as error:  # every failure is classified: retried or dead-lettered, never lost
        return classify(error)
    finally:
        DELIVERY_LATENCY.observe(perf_counter() - started)
    return None


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential with equal jitter (never less than half the step), at least Retry-After."""
    step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(attempts, 30))
    return max(step / 2 + random.uniform(0, step / 2), retry_after or 0.0)


def retry_budget_spent(failing_since: datetime, now: datetime) -> bool:
    """True once a row has been failing for RETRY_FOR_SECONDS."""
    return (now - failing_since).total_seconds() >= RETRY_FOR_SECONDS


def wire_size(message: dict[str, Any]) -> int:
    """The bytes a message takes in the transport's request body."""
    return len(json.dumps(message, cls=segment_request.DatetimeSerializer).encode())


def envelope_size(write_key: str | None) -> int:
    """The bytes around the messages: {"batch": [], "sentAt": ..., "writeKey": ...}, at the longest sentAt."""
    longest_sent_at = "2000-01-01T00:00:00.000000+00:00"
    return len(json.dumps({"batch": [], "sentAt": longest_sent_at, "writeKey": write_key}).encode())


Item = TypeVar("Item")


def batches(messages: Sequence[Item], size_of: Callable[[Item], int], write_key: str | None) -> list[list[Item]]:
    """Split in order into batches within Segment's limits (bytes on the wire and count)."""
    empty = envelope_size(write_key)
    result: list[list[Item]] = []
    current: list[Item] = []
    current_bytes = empty
    for item in messages:
        size = size_of(item) + (BATCH_SEPARATOR_BYTES if current else 0)
        if current and (len(current) >= MAX_BATCH_MESSAGES or current_bytes + size > MAX_BATCH_BYTES):
            result.append(current)
            current, current_bytes = [], empty
            size -= BATCH_SEPARATOR_BYTES
        current.append(item)
        current_bytes += size
    if current:
        result.append(current)
    return result


# --- claiming and acknowledging -------------------------------------------


async def acknowledge(
    engine: AsyncEngine,
    done: list[Any],
    backoff: dict[int, tuple[Any, Failure]],
    delivered: list[builders.Outgoing],
    dead: list[tuple[builders.Outgoing, Failure]],
    entries: list[dict[str, Any]] | None = None,
    built: builders.Built | None = None,
) -> None:
    """Record one round in one transaction: delivered hashes, the segment event states the build decided
    (baselines and exits, whatever was sent), dead letters, what happens to each row, and the round's
    activity log entries.

    Keys are written in sorted order so that concurrent senders never deadlock on PostgreSQL.
    A profile erased while its messages were on the wire leaves nothing here: its rows are read
    with a share lock (the erasure's first statement locks them too), and what concerns a profile
    that is gone is not written, so no dead letter brings the person's data back.
    """
    now = utcnow()
    async with engine.begin() as conn:
        built = built or builders.Built()
        erased = await _erased_profiles(
            conn, [*delivered, *(outgoing for outgoing, _ in dead)], set(built.state_users.values())
        )
        delivered = [outgoing for outgoing in delivered if outgoing.user_id not in erased]
        dead = [(outgoing, failure) for outgoing, failure in dead if outgoing.user_id not in erased]
        entries = [entry for entry in entries or [] if not (entry["entity"] == "user" and entry["entity_id"] in erased)]
        decided = {key: digest for key, digest in built.states.items() if built.state_users[key] not in erased}
        if forgotten := sorted(key for key, digest in decided.items() if digest is None):
            await conn.execute(delivery_state.delete().where(delivery_state.c.key.in_(forgotten)))
        states = built.records(decided)
        states.update(
            {
                outgoing.state_key: {
                    "payload_hash": outgoing.payload_hash,
                    "segments": outgoing.segments,
                    "in_filter": outgoing.in_filter,
                    "account_id": outgoing.account_id,
                }
                for outgoing in delivered
                if outgoing.state_key
            }
        )
        if states:
            statement = insert(delivery_state, conn.dialect.name)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["key"],
                    set_={
                        name: statement.excluded[name]
                        for name in ("payload_hash", "segments", "in_filter", "delivered_at", "account_id")
                    },
                ),
                [{"key": key, **states[key], "delivered_at": now} for key in sorted(states)],
            )
        if dead:
            await conn.execute(
                dead_letters.insert(),
                [
                    {
                        "message": outgoing.message,
                        "reason": failure.reason,
                        "status_code": failure.status,
                        "created_at": now,
                    }
                    for outgoing, failure in dead
                ],
            )
        await outbox.finish(conn, done, now)
        await outbox.retry_later(
            conn,
            [
                outbox.Retry(
                    row.id,
                    row.attempts + 1,
                    failure.reason,
                    now + timedelta(seconds=backoff_seconds(row.attempts, failure.retry_after)),
                    row.failing_since or now,
                )
                for row, failure in backoff.values()
            ],
        )
        await activity.append(conn, entries, now)


async def _erased_profiles(
    conn: AsyncConnection, messages: list[builders.Outgoing], also: set[int] | None = None
) -> set[int]:
    """The profiles these messages (and `also`) are about that no longer exist (erased since they were built)."""
    about = {outgoing.user_id for outgoing in messages if outgoing.user_id is not None} | (also or set())
    if not about:
        return set()
    present = await conn.execute(
        sa.select(users.c.id).where(users.c.id.in_(sorted(about))).order_by(users.c.id).with_for_update(read=True)
    )
    return about - set(present.scalars())


# --- one round ------------------------------------------------------------


class Sender:
    """Holds what must outlive one round: whether we already said the write key is missing."""

    def __init__(self, runtime: Runtime, lease: float = outbox.LEASE_SECONDS, timeout: float = REQUEST_TIMEOUT_SECONDS):
        self.runtime = runtime
        self.lease = lease
        self.timeout = timeout
        self._warned_no_write_key = False

    async def send_once(self) -> Round:
        settings = await self.runtime.settings.current()
        if not settings.write_key:
            if not self._warned_no_write_key:
                log.warning("outgoing.skip", reason="no write_key in settings; outbox rows stay queued")
                self._warned_no_write_key = True
            return Round()
        self._warned_no_write_key = False
        rows = await outbox.claim(self.runtime.engine, self.runtime.env.outbound_claim_limit, self.lease)
        if not rows:
            return Round()
        try:
            return await self._send_claimed(rows)
        except asyncio.CancelledError:
            try:
                await outbox.release(self.runtime.engine, rows)
                log.info("outgoing.release", rows=len(rows))
            except Exception as error:  # the lease still runs out
                log.error("outgoing.release.error", error=f"{type(error).__name__}: {error}"[:500])
            raise

    async def _send_claimed(self, rows: list[Any]) -> Round:
        result = Round(claimed=len(rows))
        # Read after the claim: settings that changed with these rows (a segment rename) are seen with them.
        await self.runtime.settings.reload()
        settings = await self.runtime.settings.current()
        async with self.runtime.engine.connect() as conn:
            built = await builders.build(conn, settings, [row.key for row in rows])
        entries = []
        for key, reason in built.skipped.items():
            SKIPPED_OUT.labels("unchanged" if reason == "unchanged" else "filtered").inc()
            if key.startswith("user:"):
                log.info("outgoing.user.skip", key=key, reason=reason)
            if (target := built.targets.get(key)) is not None:
                entries.append(
                    activity.entry(
                        target.entity,
                        target.entity_id,
                        f"outgoing.{target.entity}.skip",
                        {"reason": reason, **target.about},
                    )
                )
        result.skipped = len(built.skipped)

        dead: list[tuple[builders.Outgoing, Failure]] = []
        sizes = {id(outgoing): wire_size(outgoing.message) for outgoing in built.messages}
        sendable = []
        for outgoing in built.messages:
            if sizes[id(outgoing)] > MAX_MESSAGE_BYTES:
                too_big = Failure(
                    f"message is {sizes[id(outgoing)]} bytes as sent; Segment's limit is {MAX_MESSAGE_BYTES}"
                )
                dead.append((outgoing, too_big))
                entries += outcome_entries(outgoing, "dead_letter", too_big)
            else:
                sendable.append(outgoing)
        failures = await self._send(
            settings, batches(sendable, lambda outgoing: sizes[id(outgoing)], settings.write_key)
        )

        if failures and settings.write_key:
            await record_answer(self.runtime.engine, settings.write_key, [failure for _, failure in failures])
        by_key = {row.key: row for row in rows}
        backoff: dict[int, tuple[Any, Failure]] = {}
        delivered: list[builders.Outgoing] = []
        now = utcnow()
        for batch, failure in failures:
            if failure is None:
                delivered += batch
                for outgoing in batch:
                    entries += outcome_entries(outgoing, "success")
                continue
            for outgoing in batch:
                row = by_key[outgoing.key]
                if failure.retry and not retry_budget_spent(row.failing_since or now, now):
                    backoff[row.id] = (row, failure)
                    entries += outcome_entries(outgoing, "error", failure)
                else:
                    dead.append((outgoing, failure))
                    entries += outcome_entries(outgoing, "dead_letter", failure)
        done = [row for row in rows if row.id not in backoff]
        await acknowledge(self.runtime.engine, done, backoff, delivered, dead, entries, built)
        self._count(result, delivered, dead, backoff, failures)
        return result

    async def _send(
        self, settings: ConnectorSettings, groups: list[list[builders.Outgoing]]
    ) -> list[tuple[list[builders.Outgoing], Failure | None]]:
        limit = asyncio.Semaphore(CONCURRENT_BATCHES)

        async def send(group: list[builders.Outgoing]) -> tuple[list[builders.Outgoing], Failure | None]:
            async with limit:
                return group, await post_batch(settings, [outgoing.message for outgoing in group], self.timeout)

        return list(await asyncio.gather(*(send(group) for group in groups)))

    def _count(
        self,
        result: Round,
        delivered: list[builders.Outgoing],
        dead: list[tuple[builders.Outgoing, Failure]],
        backoff: dict[int, tuple[Any, Failure]],
        failures: list[Any],
    ) -> None:
        for outgoing in delivered:
            DELIVERED.labels(outgoing.message["type"]).inc()
        for outgoing, failure in dead:
            DEAD_LETTERED.labels(str(failure.status or "error")).inc()
            message = outgoing.message
            log.warning(
                "outgoing.message.dead_letter",
                type=message.get("type"),
                message_id=message.get("messageId"),
                reason=failure.reason,
                status=failure.status,
            )
        for _, failure in failures:
            if failure is not None and failure.retry:
                RETRIED.labels(str(failure.status or "network")).inc()
                log.warning(
                    "outgoing.batch.retry",
                    reason=failure.reason,
                    status=failure.status,
                    retry_after=failure.retry_after,
                )
        result.delivered = len(delivered)
        result.dead_lettered = len(dead)
        result.retried = len(backoff)
        if delivered:
            log.info("outgoing.batch.success", delivered=len(delivered))


def outcome_entries(outgoing: builders.Outgoing, outcome: str, failure: Failure | None = None) -> list[dict[str, Any]]:
    """Activity entries `outgoing.<entity>.<outcome>` for the user a message is about, and for a group its
    account: what was sent (type, messageId, traits or event) and, for a failure, Segment's answer."""
    message = outgoing.message
    details = {"type": message["type"], "messageId": message["messageId"]}
    for name in ("groupId", "event", "name", "traits"):
        if name in message:
            details[name] = message[name]
    if failure is not None:
        details.update(status=failure.status, reason=failure.reason)
    targets = [(activity.USER, outgoing.user_id), (activity.ACCOUNT, outgoing.account_id)]
    return [
        activity.entry(entity, entity_id, f"outgoing.{entity}.{outcome}", details, message["messageId"])
        for entity, entity_id in targets
        if entity_id is not None
    ]


async def record_answer(engine: AsyncEngine, write_key: str, answers: list[Failure | None]) -> None:
    """Keep Segment's last answer for this write key (a failure wins over a success in the same round):
    the status warns when Segment rejects the key, and clears once it accepts it."""
    failure = next((answer for answer in answers if answer is not None), None)
    values = (
        {"status_code": 200, "reason": None}
        if failure is None
        else {"status_code": failure.status, "reason": failure.reason}
    )
    now = utcnow()
    statement = insert(segment_api_answers, engine.dialect.name).values(
        write_key_hash=write_key_hash(write_key), answered_at=now, **values
    )
    async with engine.begin() as conn:
        await conn.execute(
            statement.on_conflict_do_update(index_elements=["write_key_hash"], set_={"answered_at": now, **values})
        )


# --- dead letters ----------------------------------------------------------


async def replay(engine: AsyncEngine, settings: ConnectorSettings, ids: list[int] | None = None) -> dict[str, int]:
    """Send dead letters again (all waiting ones, or these ids); the same messageIds, so no duplicates."""
    if not settings.write_key:
        raise ValueError("no write_key in settings: nothing can be sent")
    query = sa.select(dead_letters.c.id, dead_letters.c.message).where(dead_letters.c.replayed_at.is_(None))
    if ids is not None:
        query = query.where(dead_letters.c.id.in_(ids))
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(dead_letters.c.id))).all()
    replayed = failed = 0
    for group in batches(rows, lambda row: wire_size(row.message), settings.write_key):
        failure = await post_batch(settings, [row.message for row in group])
        async with engine.begin() as conn:
            await _record_replay(conn, [row.id for row in group], failure)
        if failure is None:
            replayed += len(group)
        else:
            failed += len(group)
            log.warning("outgoing.replay.error", reason=failure.reason, status=failure.status, count=len(group))
    log.info("outgoing.replay.done", replayed=replayed, failed=failed)
    return {"replayed": replayed, "failed": failed}


async def _record_replay(conn: AsyncConnection, ids: list[int], failure: Failure | None) -> None:
    where = dead_letters.c.id.in_(ids)
    if failure is None:
        await conn.execute(dead_letters.update().where(where).values(replayed_at=utcnow()))
    else:
        await conn.execute(dead_letters.update().where(where).values(reason=failure.reason, status_code=failure.status))
