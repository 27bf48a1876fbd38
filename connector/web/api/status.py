"""GET /api/status, Hull style: a verdict (`ok`, `warning`, `error`), the messages behind it, figures.

Every condition is read from the database, so any web process gives the same answer and
a restart forgets nothing. The worst severity wins. The conditions (docs/operations.md, "Metrics and alerts"):

warnings: segments or events chosen, or outgoing messages waiting in the outbox, but no write
key; a write key but nothing chosen to send; Segment rejected the write key (401/403) on its
last answer; deliveries failing (outbox rows in backoff); dead letters of the last hour not
replayed yet; the journal falling behind (its oldest pending message waited more than 5
minutes); messages failed in processing; group calls ignored because "Handle group calls" is
off (while it is: the journal rows skipped for that reason). A message may carry a `link` to
the dashboard page that fixes it.
errors: the database unreachable (503); no worker heartbeat within 60 seconds.
PostgreSQL refusing connections (too many clients) is a warning naming the connection arithmetic (503 too:
nothing can be read).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector import __version__
from connector.core.db import sqlstate
from connector.core.kinds import MessageType
from connector.core.models import DeadLetter, OutboxItem, SegmentApiAnswer, WorkerHeartbeat, utcnow
from connector.core.settings import ConnectorSettings, mask_secret
from connector.core.spec import format_timestamp
from connector.flow.journal import FAILED, PENDING, PROCESSED, SKIPPED, journal, queue
from connector.outbound.guard import write_key_hash
from connector.web.auth import requires_admin
from connector.web.deps import runtime_of

outbox = OutboxItem.__table__
dead_letters = DeadLetter.__table__
answers = SegmentApiAnswer.__table__
heartbeats = WorkerHeartbeat.__table__

WORKER_SILENT_AFTER = timedelta(seconds=60)
JOURNAL_BEHIND_AFTER = timedelta(minutes=5)
DEAD_LETTERS_WITHIN = timedelta(hours=1)
REJECTED_KEY_STATUSES = (401, 403)
TOO_MANY_CONNECTIONS = "53300"  # PostgreSQL's "too many clients already" (and the per-role, per-database limits)
SEVERITY_ORDER = ("ok", "warning", "error")


@dataclass
class Facts:
    journal: dict[str, int]
    oldest_pending_at: datetime | None
    outbox_depth: int
    outbox_failing: int
    dead_letters_last_hour: int
    groups_skipped: dict[str, int]  # group calls skipped (still in the journal), by the reason stored with them
    last_heartbeat_at: datetime | None
    workers: int
    segment_answer: dict[str, Any] | None


async def gather(conn: AsyncConnection, write_key: str | None, now: datetime) -> Facts:
    # Counted apart: the queue alone for the pending, the partial indexes for the failed and the skipped.
    skipped_rows = (
        sa.select(journal.c.type, journal.c.skipped, sa.func.count().label("n"))
        .where(journal.c.skipped.is_not(None))
        .group_by(journal.c.type, journal.c.skipped)
    )
    skipped_by_type: dict[str, dict[str, int]] = {}
    for kind, reason, count in await conn.execute(skipped_rows):
        skipped_by_type.setdefault(kind, {})[reason] = count
    total, pending, failed = (
        await conn.execute(
            sa.select(
                sa.select(sa.func.count()).select_from(journal).scalar_subquery(),
                sa.select(sa.func.count()).select_from(queue).scalar_subquery(),
                sa.select(sa.func.count()).select_from(journal).where(journal.c.error.is_not(None)).scalar_subquery(),
            )
        )
    ).one()
    skipped = sum(sum(reasons.values()) for reasons in skipped_by_type.values())
    counts = {PENDING: pending, PROCESSED: total - pending - failed - skipped, FAILED: failed, SKIPPED: skipped}
    oldest = (
        await conn.execute(
            sa.select(sa.func.min(journal.c.received_at)).join_from(queue, journal, journal.c.id == queue.c.id)
        )
    ).scalar_one()
    depth, failing = (
        await conn.execute(sa.select(sa.func.count(), sa.func.count(outbox.c.failing_since)).select_from(outbox))
    ).one()
    dead = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(dead_letters)
            .where(dead_letters.c.created_at >= now - DEAD_LETTERS_WITHIN, dead_letters.c.replayed_at.is_(None))
        )
    ).scalar_one()
    last_beat, workers = (
        await conn.execute(
            sa.select(
                sa.func.max(heartbeats.c.beat_at),
                sa.func.count().filter(heartbeats.c.beat_at >= now - WORKER_SILENT_AFTER),
            )
        )
    ).one()
    answer = None
    if write_key:
        row = (
            await conn.execute(
                sa.select(answers.c.status_code, answers.c.reason, answers.c.answered_at).where(
                    answers.c.write_key_hash == write_key_hash(write_key)
                )
            )
        ).one_or_none()
        answer = dict(row._mapping) if row else None
    groups = skipped_by_type.get(MessageType.GROUP, {})
    return Facts(counts, _aware(oldest), depth, failing, dead, groups, _aware(last_beat), workers, answer)


def _aware(value: Any) -> datetime | None:
    """Aggregates skip the column type: SQLite's MIN/MAX come back as naive strings of UTC times."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)
    return datetime.fromisoformat(value).replace(tzinfo=utcnow().tzinfo)


Say = Callable[..., None]  # say(severity, code, message, link=None)


def messages(facts: Facts, settings: ConnectorSettings, now: datetime) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []

    def say(severity: str, code: str, message: str, link: str | None = None) -> None:
        found.append({"severity": severity, "code": code, "message": message, **({"link": link} if link else {})})

    if facts.last_heartbeat_at is None or now - facts.last_heartbeat_at > WORKER_SILENT_AFTER:
        since = "ever" if facts.last_heartbeat_at is None else f"since {format_timestamp(facts.last_heartbeat_at)}"
        say(
            "error",
            "no_worker",
            f"no worker heartbeat {since}: nothing is processed or sent; "
            "start `connector worker` (or scale the worker dyno)",
        )
    _sending(facts, settings, say)
    _processing(facts, settings, now, say)
    return found


def _counted(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _sending(facts: Facts, settings: ConnectorSettings, say: Say) -> None:
    """What stops or slows sending to Segment."""
    chosen = bool(
        settings.synchronized_segments
        or settings.synchronized_account_segments
        or settings.send_events
        or settings.segment_events
    )
    if (chosen or facts.outbox_depth) and not settings.write_key:
        waiting = (
            f"{_counted(facts.outbox_depth, 'outgoing message waits', 'outgoing messages wait')} in the outbox"
            if facts.outbox_depth
            else ""
        )
        what = " and ".join(filter(None, ["segments or events are chosen to send" if chosen else "", waiting]))
        say(
            "warning",
            "no_write_key",
            f"{what} but no write key is set: nothing is sent to Segment until you set one",
            "#/settings",
        )
    if settings.write_key and not chosen:
        say("warning", "nothing_to_send", "a write key is set but no segment or event is chosen to send")
    answer = facts.segment_answer
    if answer and answer["status_code"] in REJECTED_KEY_STATUSES:
        say(
            "warning",
            "write_key_rejected",
            f"Segment rejected the write key (HTTP {answer['status_code']}) "
            f"at {format_timestamp(answer['answered_at'])}: check the write key",
        )
    if facts.outbox_failing:
        failing = _counted(facts.outbox_failing, "outgoing message is", "outgoing messages are")
        say("warning", "deliveries_failing", f"{failing} failing and being retried")
    if facts.dead_letters_last_hour:
        dead = _counted(facts.dead_letters_last_hour, "message was", "messages were")
        say("warning", "dead_letters", f"{dead} dead-lettered in the last hour and wait for a replay", "#/deliveries")


def _processing(facts: Facts, settings: ConnectorSettings, now: datetime, say: Say) -> None:
    """What stops or slows processing what arrives, or drops it."""
    if facts.oldest_pending_at is not None and now - facts.oldest_pending_at > JOURNAL_BEHIND_AFTER:
        waited = int((now - facts.oldest_pending_at).total_seconds())
        say(
            "warning",
            "journal_lag",
            f"the oldest unprocessed message has waited {waited} s: processing is falling behind",
        )
    if failed := facts.journal.get("failed"):
        say(
            "warning",
            "processing_failed",
            f"{_counted(failed, 'message', 'messages')} failed in processing; fix the "
            "cause, then `connector journal retry-failed`",
        )
    if not settings.handle_accounts:  # once it is on, the calls skipped before are history, not a problem
        for reason, count in sorted(facts.groups_skipped.items()):
            say(
                "warning",
                "groups_ignored",
                f"{_counted(count, 'group call', 'group calls')} ignored: {reason}",
                "#/settings",
            )


def unreachable(error: Exception, max_connections: int) -> dict[str, str]:
    """Why the database could not be read: refusing connections (the processes together open more than the
    plan allows: a warning, inbound answers 503 and Segment retries), else unreachable (an error)."""
    if sqlstate(error) == TOO_MANY_CONNECTIONS:
        return {
            "severity": "warning",
            "code": "too_many_connections",
            "message": "PostgreSQL refuses new connections (too many clients): dynos x processes x "
            f"DATABASE_MAX_CONNECTIONS ({max_connections}) must stay under the plan's connection limit, or the "
            "pool size of the pooler in front (docs/operations.md, Behind a pooler); inbound answers 503 and "
            "Segment retries",
        }
    return {
        "severity": "error",
        "code": "database_unreachable",
        "message": f"the database is unreachable: {type(error).__name__}",
    }


def verdict(found: list[dict[str, str]]) -> str:
    return max((message["severity"] for message in found), key=SEVERITY_ORDER.index, default="ok")


@requires_admin
async def get_status(request: Request) -> JSONResponse:
    """
    summary: The verdict (ok, warning, error) with the messages behind it, and figures
    responses:
      200: {description: "status, messages and figures", schema: {$ref: "#/components/schemas/Status"}}
      503: {description: "the database is unreachable (status error, code database_unreachable) or refuses
        more connections (status warning, code too_many_connections)"}
    """
    runtime = runtime_of(request)
    now = utcnow()
    public_url = runtime.env.public_url.rstrip("/") if runtime.env.public_url else None
    base = {"version": __version__, "database": runtime.engine.dialect.name, "public_url": public_url}
    try:
        settings = await runtime.settings.current()
        async with runtime.engine.connect() as conn:
            facts = await gather(conn, settings.write_key, now)
    except Exception as error:  # the status must answer precisely when storage does not
        message = unreachable(error, runtime.env.database_max_connections)
        return JSONResponse({"status": message["severity"], "messages": [message], **base}, status_code=503)
    found = messages(facts, settings, now)
    return JSONResponse(
        {
            "status": verdict(found),
            "messages": found,
            **base,
            "api_key": mask_secret(await runtime.settings.api_key()),
            "journal": facts.journal,
            "journal_oldest_pending_at": _iso(facts.oldest_pending_at),
            "outbox": {"depth": facts.outbox_depth, "failing": facts.outbox_failing},
            "dead_letters_last_hour": facts.dead_letters_last_hour,
            "workers": {"alive": facts.workers, "last_heartbeat_at": _iso(facts.last_heartbeat_at)},
            "segment_api": None
            if facts.segment_answer is None
            else {**facts.segment_answer, "answered_at": _iso(facts.segment_answer["answered_at"])},
        }
    )


def _iso(value: datetime | None) -> str | None:
    return format_timestamp(value) if value else None


routes = [Route("/api/status", get_status, methods=["GET"])]
