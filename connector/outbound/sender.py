"""The sender: one round claims outbox rows, builds their messages, sends them to Segment in batches, then
acknowledges.

A row is acknowledged only after Segment answered: a crash in between resends the same messageIds,
which Segment deduplicates. A round cancelled before its acknowledgement (a worker told to stop
that could not finish in time) releases its claims, so another worker need not wait out the lease;
Segment deduplicates what it may have received meanwhile. A row is retried for
transport.RETRY_FOR_SECONDS after its first failure, then dead-lettered.

What a round did to each profile (sent, skipped and why, failed, dead-lettered) goes to
the activity log in the transaction that acknowledges the round.
"""

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from connector.core.db import is_postgres
from connector.core.kinds import Entity, OutboxKind, Outcome, outgoing_action
from connector.core.logs import get_logger
from connector.core.metrics import DEAD_LETTERED, DELIVERED, RETRIED, SKIPPED_OUT
from connector.core.models import utcnow
from connector.core.runtime import Runtime
from connector.core.settings import ConnectorSettings
from connector.core.spec import MAX_MESSAGE_BYTES
from connector.flow import activity, outbox
from connector.outbound.acknowledge import Acknowledgement, acknowledge
from connector.outbound.build import UNCHANGED, Built, build
from connector.outbound.messages import Outgoing
from connector.outbound.transport import (
    REQUEST_TIMEOUT_SECONDS,
    Failure,
    batches,
    encode,
    post_batch,
    retry_budget_spent,
)

log = get_logger()

CONCURRENT_BATCHES = 4

Answer = tuple[list[Outgoing], Failure | None]  # a batch sent, and Segment's failure (None: accepted)


@dataclass
class Round:
    """What one send_once did, by message."""

    claimed: int = 0
    delivered: int = 0
    skipped: int = 0
    retried: int = 0
    dead_lettered: int = 0


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
        rows: list[Any] = []
        try:
            # One connection for the claim, the settings read after it and the build's reads (one pool checkout,
            # one pre-ping), back in the pool before the send. The acknowledgement takes a fresh one: a database
            # restarted while the round was on the wire does not cost the round.
            async with self.runtime.engine.connect() as conn:
                if is_postgres(conn) and not self.runtime.env.service_database.pooler:
                    # The claim is one statement, atomic alone, and the build's reads see each its own snapshot
                    # in a transaction too (READ COMMITTED): no BEGIN and COMMIT (or ROLLBACK) round trips. Not
                    # through a transaction-mode pooler: there asyncpg's unnamed statement takes two exchanges,
                    # which the pooler keeps on one server only within a transaction.
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                rows = await outbox.claim(conn, self.runtime.env.outbound_claim_limit, self.lease)
                if not rows:
                    return Round()
                # Read after the claim: settings that changed with these rows (a segment rename) are seen with them.
                await self.runtime.settings.reload(conn)
                settings = await self.runtime.settings.current()
                built = await build(conn, settings, [row.key for row in rows])
            return await self._send_built(settings, rows, built)
        except asyncio.CancelledError:
            if rows:
                await self._release(rows)
            raise

    async def _release(self, rows: list[Any]) -> None:
        try:
            await outbox.release(self.runtime.engine, rows)
            log.info("outgoing.release", rows=len(rows))
        except Exception as error:  # the lease still runs out
            log.error("outgoing.release.error", error=f"{type(error).__name__}: {error}"[:500])

    async def _send_built(self, settings: ConnectorSettings, rows: list[Any], built: Built) -> Round:
        round_ = Acknowledgement(built, entries=_skip_entries(built))
        # Encoded once: these bytes are measured against the limits and sent.
        encoded = {id(outgoing): encode(outgoing.message) for outgoing in built.messages}
        sendable = _set_aside_too_big(built.messages, encoded, round_)
        groups = batches(sendable, lambda outgoing: len(encoded[id(outgoing)]), settings.write_key)
        answers = await self._send(settings, groups, encoded)
        round_.answers = [failure for _, failure in answers]
        _sort_answers(rows, answers, round_)
        round_.done = [row for row in rows if row.id not in round_.retries]
        await acknowledge(self.runtime.engine, round_, settings.write_key or "")
        _count(round_, answers)
        return Round(
            claimed=len(rows),
            delivered=len(round_.delivered),
            skipped=len(built.skipped),
            retried=len(round_.retries),
            dead_lettered=len(round_.dead),
        )

    async def _send(
        self, settings: ConnectorSettings, groups: list[list[Outgoing]], encoded: dict[int, str]
    ) -> list[Answer]:
        limit = asyncio.Semaphore(CONCURRENT_BATCHES)

        async def send(group: list[Outgoing]) -> Answer:
            async with limit:
                return group, await post_batch(settings, [encoded[id(outgoing)] for outgoing in group], self.timeout)

        return list(await asyncio.gather(*(send(group) for group in groups)))


def _skip_entries(built: Built) -> list[dict[str, Any]]:
    """The activity entries of the rows that sent nothing, with why (and their metrics and log lines)."""
    entries = []
    for label, count in Counter(
        "unchanged" if reason == UNCHANGED else "filtered" for reason in built.skipped.values()
    ).items():
        SKIPPED_OUT.labels(label).inc(count)
    for key, reason in built.skipped.items():
        if key.partition(":")[0] == OutboxKind.USER:
            log.info("outgoing.user.skip", key=key, reason=reason)
        if (target := built.targets.get(key)) is not None:
            action = outgoing_action(Entity(target.entity), Outcome.SKIP)
            entries.append(activity.entry(target.entity, target.entity_id, action, {"reason": reason, **target.about}))
    return entries


def _set_aside_too_big(messages: list[Outgoing], encoded: dict[int, str], round_: Acknowledgement) -> list[Outgoing]:
    """The messages Segment would take; each one over its size limit is dead-lettered without a try."""
    sendable = []
    for outgoing in messages:
        if (size := len(encoded[id(outgoing)])) > MAX_MESSAGE_BYTES:
            too_big = Failure(f"message is {size} bytes as sent; Segment's limit is {MAX_MESSAGE_BYTES}")
            round_.dead.append((outgoing, too_big))
            round_.entries += outcome_entries(outgoing, Outcome.DEAD_LETTER, too_big)
        else:
            sendable.append(outgoing)
    return sendable


def _sort_answers(rows: list[Any], answers: list[Answer], round_: Acknowledgement) -> None:
    """Each message sent is delivered, retried later with its row, or dead-lettered once retrying is pointless
    or its row has been failing for too long."""
    by_key = {row.key: row for row in rows}
    now = utcnow()
    for batch, failure in answers:
        if failure is None:
            round_.delivered += batch
            for outgoing in batch:
                round_.entries += outcome_entries(outgoing, Outcome.SUCCESS)
            continue
        for outgoing in batch:
            row = by_key[outgoing.key]
            if failure.retry and not retry_budget_spent(row.failing_since or now, now):
                round_.retries[row.id] = (row, failure)
                round_.entries += outcome_entries(outgoing, Outcome.ERROR, failure)
            else:
                round_.dead.append((outgoing, failure))
                round_.entries += outcome_entries(outgoing, Outcome.DEAD_LETTER, failure)


def _count(round_: Acknowledgement, answers: list[Answer]) -> None:
    """The round's metrics and log lines."""
    # One increment per label a round, not one per message.
    for kind, count in Counter(outgoing.message["type"] for outgoing in round_.delivered).items():
        DELIVERED.labels(kind).inc(count)
    for status, count in Counter(str(failure.status or "error") for _, failure in round_.dead).items():
        DEAD_LETTERED.labels(status).inc(count)
    for outgoing, failure in round_.dead:
        message = outgoing.message
        log.warning(
            "outgoing.message.dead_letter",
            type=message.get("type"),
            message_id=message.get("messageId"),
            reason=failure.reason,
            status=failure.status,
        )
    for _, answer in answers:
        if answer is not None and answer.retry:
            RETRIED.labels(str(answer.status or "network")).inc()
            log.warning(
                "outgoing.batch.retry", reason=answer.reason, status=answer.status, retry_after=answer.retry_after
            )
    if round_.delivered:
        log.info("outgoing.batch.success", delivered=len(round_.delivered))


def outcome_entries(outgoing: Outgoing, outcome: Outcome, failure: Failure | None = None) -> list[dict[str, Any]]:
    """Activity entries `outgoing.<entity>.<outcome>` for the user a message is about, and for a group its
    account: what was sent (type, messageId, traits or event) and, for a failure, Segment's answer."""
    message = outgoing.message
    details = {"type": message["type"], "messageId": message["messageId"]}
    for name in ("groupId", "event", "name", "traits"):
        if name in message:
            details[name] = message[name]
    if failure is not None:
        details.update(status=failure.status, reason=failure.reason)
    targets = [(Entity.USER, outgoing.user_id), (Entity.ACCOUNT, outgoing.account_id)]
    return [
        activity.entry(entity, entity_id, outgoing_action(entity, outcome), details, message["messageId"])
        for entity, entity_id in targets
        if entity_id is not None
    ]
