"""The journal consumer: applies messages in journal order to users, accounts and events.

A batch is applied in one transaction. If anything in it fails, the batch is rolled
back and replayed message by message, so a bad message is marked failed with its
reason and never holds up the ones behind it. On PostgreSQL an advisory lock keeps
several worker processes from consuming the journal at the same time.
"""

from datetime import datetime
from time import perf_counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.db import insert
from connector.logs import get_logger
from connector.metrics import JOURNAL_LAG, PROCESS_LATENCY, PROCESSED
from connector.models import Event, JournalEntry, User, utcnow
from connector.processing import accounts, audiences, domains, identity, usage
from connector.processing.changes import Changes
from connector.processing.propagate import propagate
from connector.processing.traits import apply_traits
from connector.settings import ConnectorSettings
from connector.spec import clean_id, parse_timestamp

JOURNAL_LOCK_ID = 0x5E6E_0001
journal = JournalEntry.__table__
users = User.__table__
events = Event.__table__
log = get_logger()


async def process_batch(engine: AsyncEngine, settings: ConnectorSettings, limit: int = 500) -> Changes:
    """Process up to `limit` pending journal messages; return what changed."""
    started = perf_counter()
    try:
        async with engine.begin() as conn:
            if not await _lock(conn):
                return Changes()
            rows = (await conn.execute(
                sa.select(journal.c.id, journal.c.payload).where(journal.c.status == "pending")
                .order_by(journal.c.id).limit(limit))).all()
            changes = Changes()
            for row in rows:
                await apply_message(conn, row.payload, settings, changes)
            await propagate(conn, settings, changes)
            await _mark(conn, [row.id for row in rows], "processed")
    except Exception as error:
        log.warning("processing.batch.retry", error=str(error)[:500])
        changes = await _process_one_by_one(engine, settings, limit)
    PROCESS_LATENCY.observe(perf_counter() - started)
    return changes


async def _process_one_by_one(engine: AsyncEngine, settings: ConnectorSettings, limit: int) -> Changes:
    total = Changes()
    async with engine.connect() as conn:
        ids = (await conn.execute(sa.select(journal.c.id).where(journal.c.status == "pending")
                                  .order_by(journal.c.id).limit(limit))).scalars().all()
    for journal_id in ids:
        changes = Changes()
        try:
            async with engine.begin() as conn:
                if not await _lock(conn):
                    break
                row = (await conn.execute(sa.select(journal.c.payload).where(
                    journal.c.id == journal_id, journal.c.status == "pending"))).first()
                if row is None:
                    continue
                await apply_message(conn, row.payload, settings, changes)
                await propagate(conn, settings, changes)
                await _mark(conn, [journal_id], "processed")
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"[:2000]
            log.error("incoming.message.error", journal_id=journal_id, reason=reason)
            async with engine.begin() as conn:
                await _mark(conn, [journal_id], "failed", error=reason)
            total.failed += 1
            continue
        total.add(changes)
    return total


async def _lock(conn: AsyncConnection) -> bool:
    if conn.dialect.name != "postgresql":
        return True
    return bool(await conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(JOURNAL_LOCK_ID))))


async def _mark(conn: AsyncConnection, ids: list[int], status: str, error: str | None = None) -> None:
    if ids:
        await conn.execute(journal.update().where(journal.c.id.in_(ids)).values(
            status=status, error=error, processed_at=utcnow()))


async def apply_message(conn: AsyncConnection, message: dict[str, Any], settings: ConnectorSettings,
                        changes: Changes) -> None:
    kind = message["type"]
    if (kind == "page" and not settings.handle_pages) or (kind == "screen" and not settings.handle_screens) \
            or (kind == "group" and not settings.handle_accounts):
        changes.skipped += 1
        PROCESSED.labels(kind, "skipped").inc()
        log.info(f"incoming.{kind}.skip", reason="disabled in settings", message_id=message["messageId"])
        return
    now = utcnow()
    claims = identity.claims_of(message, settings.identify_by_email)
    if kind == "alias":
        claims = await _alias_claims(conn, message)
    user_id, merged = await identity.resolve(conn, claims, now, message["messageId"])
    changes.users.add(user_id)
    changes.merged_away |= merged
    timestamp = parse_timestamp(message["timestamp"], "timestamp")

    if kind == "identify":
        await _apply_user_traits(conn, user_id, message.get("traits") or {}, message["timestamp"], timestamp, now)
        if settings.link_accounts_by_domain:
            await domains.link_by_domain(conn, user_id, message, message["timestamp"], now, changes)
        await audiences.apply_identify(conn, user_id, message, timestamp)
    elif kind == "group":
        account_id, changed = await accounts.upsert_account(
            conn, clean_id(message.get("groupId")), accounts.normalise_domain((message.get("traits") or {}).get("domain")),
            message.get("traits") or {}, message["timestamp"], now)
        if changed:
            changes.accounts.add(account_id)
        if await accounts.link_user(conn, user_id, account_id, "group"):
            changes.accounts.add(account_id)
        await _touch(conn, user_id, timestamp)
    elif kind in ("track", "page", "screen"):
        event_id = await _insert_event(conn, user_id, message)
        if event_id is not None:
            changes.events.append(event_id)
            await usage.record_event(conn, event_id, message, changes)
            await audiences.apply_track(conn, user_id, message, timestamp)
        await _touch(conn, user_id, timestamp)
    else:
        await _touch(conn, user_id, timestamp)
    changes.processed += 1
    PROCESSED.labels(kind, "success").inc()


async def _alias_claims(conn: AsyncConnection, message: dict[str, Any]) -> list[identity.Claim]:
    """alias merges previousId's profile into userId's: previousId may be either kind of id."""
    previous = clean_id(message.get("previousId"))
    claims: list[identity.Claim] = [(identity.USER_ID, clean_id(message["userId"]) or "")]
    if previous:
        known = await identity.lookup(conn, [(identity.USER_ID, previous), (identity.ANONYMOUS_ID, previous)])
        claims += list(known) or [(identity.ANONYMOUS_ID, previous)]
    return claims


async def _apply_user_traits(conn: AsyncConnection, user_id: int, incoming: dict[str, Any], at: str,
                             timestamp: datetime, now: datetime) -> None:
    row = (await conn.execute(sa.select(users.c.traits, users.c.trait_timestamps, users.c.last_seen_at)
                              .where(users.c.id == user_id))).one()
    traits, stamps = dict(row.traits), dict(row.trait_timestamps)
    changed = apply_traits(traits, stamps, incoming, at)
    last_seen = max(timestamp, row.last_seen_at) if row.last_seen_at else timestamp
    values: dict[str, Any] = {"last_seen_at": last_seen}
    if changed or stamps != row.trait_timestamps:
        values.update(traits=traits, trait_timestamps=stamps, updated_at=now)
    await conn.execute(users.update().where(users.c.id == user_id).values(**values))


async def _touch(conn: AsyncConnection, user_id: int, timestamp: datetime) -> None:
    await conn.execute(users.update().where(
        users.c.id == user_id, sa.or_(users.c.last_seen_at.is_(None), users.c.last_seen_at < timestamp)
    ).values(last_seen_at=timestamp))


def event_name(message: dict[str, Any]) -> str:
    return message["event"] if message["type"] == "track" else message["type"]


def event_properties(message: dict[str, Any]) -> dict[str, Any]:
    properties = dict(message.get("properties") or {})
    if message["type"] in ("page", "screen"):
        for key in ("name", "category"):
            if message.get(key) is not None:
                properties.setdefault(key, message[key])
    return properties


async def _insert_event(conn: AsyncConnection, user_id: int, message: dict[str, Any]) -> int | None:
    statement = insert(events, conn.dialect.name).values(
        user_id=user_id, message_id=message["messageId"], type=message["type"], event=event_name(message)[:255],
        source="segment", timestamp=parse_timestamp(message["timestamp"], "timestamp"),
        received_at=parse_timestamp(message["receivedAt"], "receivedAt"),
        properties=event_properties(message), context=message.get("context") or {},
        account_id=sa.select(users.c.account_id).where(users.c.id == user_id).scalar_subquery(),
    ).on_conflict_do_nothing(index_elements=["message_id"]).returning(events.c.id)
    return (await conn.execute(statement)).scalar()


async def journal_lag(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        lag = (await conn.execute(sa.select(sa.func.count()).select_from(journal)
                                  .where(journal.c.status == "pending"))).scalar_one()
    JOURNAL_LAG.set(lag)
    return lag


async def retry_failed(engine: AsyncEngine) -> int:
    """Put failed journal messages back in the queue (after a fix); returns how many."""
    async with engine.begin() as conn:
        result = await conn.execute(journal.update().where(journal.c.status == "failed").values(
            status="pending", error=None, processed_at=None))
    return result.rowcount
