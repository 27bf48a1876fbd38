"""The dashboard's overview: traffic of the last 24 hours, minute by minute, read from the database.

Every figure is counted from rows the work itself left, so any web process gives the same
answer and a restart forgets nothing (the Prometheus counters are per process):

- messages in: the inbound journal's rows by `received_at` minute, `type` and `status`
  (`pending`, `processed`, `failed`); journal rows are kept `journal_retention_days` (at least 1).
- messages out: the activity log's `outgoing.<entity>.<outcome>` entries by minute, written in
  the sender's acknowledgement of each round: `sent` (success), `skipped` (the builder's reason),
  `retried` (a failed batch in backoff, once per attempt) and `dead_lettered`. A group call is
  logged for its user and its account with one messageId and counts once; a skipped target has
  no message and counts once per entry.
- messages in per browser write key: the journal's rows of the last 24 hours by `write_key_id`, with each key's
  name (a revoked key's messages still count, under its name).
- the last errors: outgoing failures and dead letters (activity log) and messages that failed in
  processing (journal), newest first; each profile named as people know it (`name`: a user's userId, else
  its email; an account's group id, else its domain), its internal id when it has none of them.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.db import epoch_minute
from connector.core.kinds import Entity, Outcome, outgoing_action
from connector.core.models import Account, UserIdentifier, WriteKey, utcnow
from connector.core.spec import format_timestamp
from connector.flow.activity import activity_log
from connector.flow.journal import JOURNAL_WITH_QUEUE, STATUS, journal
from connector.web.auth import requires_admin
from connector.web.deps import runtime_of

identifiers = UserIdentifier.__table__
accounts = Account.__table__
write_keys = WriteKey.__table__
MINUTES = 24 * 60
LAST_ERRORS = 10
OUTCOMES = {
    Outcome.SUCCESS: "sent",
    Outcome.SKIP: "skipped",
    Outcome.ERROR: "retried",
    Outcome.DEAD_LETTER: "dead_lettered",
}
OUTGOING_ACTIONS = {outgoing_action(entity, outcome): name for entity in Entity for outcome, name in OUTCOMES.items()}


def _series(rows: Any, first: int, names: Any) -> dict[str, list[int]]:
    """Dense per-minute counts from (minute, key, count) rows: one list of MINUTES numbers per key."""
    series: dict[str, list[int]] = {name: [0] * MINUTES for name in names}
    for minute, key, count in rows:
        if 0 <= minute - first < MINUTES:
            series.setdefault(key, [0] * MINUTES)[minute - first] += int(count)
    return series


async def incoming(conn: AsyncConnection, first: int, since: datetime) -> dict[str, list[int]]:
    """Journal messages per minute, keyed `<type>.<status>` (identify.processed, track.failed, ...)."""
    minute = epoch_minute(conn, journal.c.received_at).label("minute")
    rows = await conn.execute(
        sa.select(minute, journal.c.type, STATUS, sa.func.count())
        .select_from(JOURNAL_WITH_QUEUE)
        .where(journal.c.received_at >= since)
        .group_by(minute, journal.c.type, STATUS)
    )
    return _series(((row[0], f"{row[1]}.{row[2]}", row[3]) for row in rows), first, ())


async def outgoing(conn: AsyncConnection, first: int, since: datetime) -> dict[str, list[int]]:
    """Messages out per minute by outcome (sent, skipped, retried, dead_lettered); each present, zeros or not."""
    minute = epoch_minute(conn, activity_log.c.created_at).label("minute")
    outcome = sa.case(OUTGOING_ACTIONS, value=activity_log.c.action).label("outcome")
    message = sa.func.coalesce(activity_log.c.message_id, "entry:" + sa.cast(activity_log.c.id, sa.String))
    rows = await conn.execute(
        sa.select(minute, outcome, sa.func.count(sa.distinct(message)))
        .where(activity_log.c.created_at >= since, activity_log.c.action.in_(OUTGOING_ACTIONS))
        .group_by(minute, outcome)
    )
    return _series(rows, first, OUTCOMES.values())


async def by_write_key(conn: AsyncConnection, since: datetime) -> list[dict[str, Any]]:
    """Messages each browser write key sent since `since`, most first; keys that sent none are left out."""
    count = sa.func.count().label("messages")
    rows = await conn.execute(
        sa.select(write_keys.c.id, write_keys.c.name, write_keys.c.revoked_at, count)
        .select_from(journal.join(write_keys, write_keys.c.id == journal.c.write_key_id))
        .where(journal.c.received_at >= since)
        .group_by(write_keys.c.id, write_keys.c.name, write_keys.c.revoked_at)
        .order_by(count.desc(), write_keys.c.id)
    )
    return [
        {"id": row.id, "name": row.name, "revoked": row.revoked_at is not None, "messages": row.messages}
        for row in rows
    ]


async def last_errors(conn: AsyncConnection) -> list[dict[str, Any]]:
    """The latest outgoing failures and processing failures, newest first."""
    failures = [action for action, outcome in OUTGOING_ACTIONS.items() if outcome in ("retried", "dead_lettered")]
    sent = await conn.execute(
        sa.select(activity_log)
        .where(activity_log.c.action.in_(failures))
        .order_by(activity_log.c.created_at.desc(), activity_log.c.id.desc())
        .limit(LAST_ERRORS)
    )
    found = [
        {
            "at": row.created_at,
            "kind": row.action,
            "entity": row.entity,
            "entity_id": row.entity_id,
            "message_id": row.message_id,
            "status_code": row.details.get("status"),
            "reason": row.details.get("reason") or "",
        }
        for row in sent
    ]
    processed = await conn.execute(
        sa.select(journal.c.received_at, journal.c.message_id, journal.c.error)
        .where(journal.c.error.is_not(None))
        .order_by(journal.c.id.desc())
        .limit(LAST_ERRORS)
    )
    found += [
        {
            "at": row.received_at,
            "kind": "incoming.failed",
            "entity": None,
            "entity_id": None,
            "message_id": row.message_id,
            "status_code": None,
            "reason": row.error or "",
        }
        for row in processed
    ]
    found.sort(key=lambda error: error["at"], reverse=True)
    found = found[:LAST_ERRORS]
    names = await _names(conn, found)
    return [
        {**error, "at": format_timestamp(error["at"]), "name": names.get((error["entity"], error["entity_id"]))}
        for error in found
    ]


async def _names(conn: AsyncConnection, errors: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    """What people know these profiles by: a user's userId, else its email; an account's group id, else its
    domain. A profile with none of them (or erased since) is left out."""
    user_ids = sorted({error["entity_id"] for error in errors if error["entity"] == Entity.USER})
    account_ids = sorted({error["entity_id"] for error in errors if error["entity"] == Entity.ACCOUNT})
    names: dict[tuple[str, int], str] = {}
    if user_ids:
        rows = await conn.execute(
            sa.select(identifiers.c.user_id, identifiers.c.kind, identifiers.c.value)
            .where(identifiers.c.user_id.in_(user_ids), identifiers.c.kind.in_(("user_id", "email")))
            .order_by(identifiers.c.kind, identifiers.c.id)  # user_id after email: it wins
        )
        names.update({(Entity.USER, row.user_id): row.value for row in rows})
    if account_ids:
        rows = await conn.execute(
            sa.select(accounts.c.id, sa.func.coalesce(accounts.c.group_id, accounts.c.domain)).where(
                accounts.c.id.in_(account_ids)
            )
        )
        names.update({(Entity.ACCOUNT, row[0]): row[1] for row in rows if row[1] is not None})
    return names


@requires_admin
async def get_overview(request: Request) -> JSONResponse:
    """
    summary: Traffic of the last 24 hours at one-minute resolution, from the database, and the last errors
    description: >-
      `incoming` counts journal messages by `<type>.<status>` (status pending, processed or failed),
      `outgoing` messages out by outcome (sent, skipped, retried, dead_lettered) from the activity log,
      `write_keys` the messages each browser write key sent in the 24 hours.
      Each series holds `buckets` numbers, the first for the minute starting at `start`, one per
      `step_seconds`. Journal lag, outbox depth and the verdict are in GET /api/status.
    responses:
      200: {description: "the series and the last errors", schema: {$ref: "#/components/schemas/Overview"}}
    """
    now = utcnow()
    async with runtime_of(request).engine.connect() as conn:
        last = int(now.timestamp()) // 60
        first = last - MINUTES + 1
        since = datetime.fromtimestamp(first * 60, now.tzinfo)
        body = {
            "start": format_timestamp(since),
            "step_seconds": 60,
            "buckets": MINUTES,
            "incoming": await incoming(conn, first, since),
            "outgoing": await outgoing(conn, first, since),
            "write_keys": await by_write_key(conn, since),
            "last_errors": await last_errors(conn),
        }
    return JSONResponse(body)


routes = [Route("/api/overview", get_overview, methods=["GET"])]
